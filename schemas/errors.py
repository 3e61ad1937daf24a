"""Errors raised when data breaks a contract.

SchemaError
└── ValidationError   a record field is missing or has the wrong type/value
"""

from __future__ import annotations


class SchemaError(Exception):
    """Base of every contract violation."""


class ValidationError(SchemaError, ValueError):
    """A record field is invalid; the message names the field and the record."""

    def __init__(self, record: str, field: str, problem: str) -> None:
        self.record = record
        self.field = field
        self.problem = problem
        super().__init__(f"{record}: field {field!r} {problem}")
