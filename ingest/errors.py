"""Errors of the ingest service. Each boundary translates its dependency's
exceptions into one of these, chained, with a message that says what to fix.

    IngestError
    ├── SettingsError            a flag or environment variable has a bad value
    ├── SourceError              a source cannot be read, or lacks a column
    ├── EmbedderError            a model or embedding server cannot be used
    ├── StoreError               Qdrant cannot be used
    │   ├── StoreLockedError     a local storage folder is held by another process
    │   ├── CollectionMismatchError  the collection was built with another model/chunking
    │   └── RebuildError         a new collection cannot replace the live one (yet)
    └── StateError               the manifest (what is indexed) cannot be used
        ├── RunLockedError       another run is writing the same collection
        └── MassDeleteError      a snapshot lacks too many indexed articles to delete them
"""

from __future__ import annotations


class IngestError(Exception):
    """Base of every error this service reports to its user."""


class SettingsError(IngestError, ValueError):
    pass


class SourceError(IngestError):
    pass


class EmbedderError(IngestError):
    pass


class StoreError(IngestError):
    pass


class StoreLockedError(StoreError):
    pass


class CollectionMismatchError(StoreError):
    pass


class RebuildError(StoreError):
    pass


class StateError(IngestError):
    pass


class RunLockedError(StateError):
    pass


class MassDeleteError(StateError):
    pass
