"""The embedder boundary: texts in, float32 `(n, dim)` array out.

Every backend (in-process model, TEI server, deployed Modal class) implements
`Embedder`. Passages and queries are separate entry points so that a model's
query instruction is applied in exactly one place (`ModelSpec.query_instruction`)
and never to passages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from ingest.errors import EmbedderError, InputRejected
from schemas import ModelSpec


@dataclass(frozen=True, slots=True)
class Rejection:
    """One input the backend refused for good (after isolating it from its batch)."""

    index: int
    status: int
    message: str


@dataclass(slots=True)
class PassageEmbeddings:
    """Vectors for a list of passages. Rows listed in `rejected` are zeros and
    must not be stored; every other row is a real vector."""

    vectors: np.ndarray
    rejected: list[Rejection] = field(default_factory=list)


@runtime_checkable
class Embedder(Protocol):
    spec: ModelSpec

    def embed_passages(self, texts: Sequence[str]) -> PassageEmbeddings:
        """Embed passages (no instruction). Permanent per-input failures are
        returned as `rejected`, transient ones retried by the backend."""
        ...

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed queries, with the model's query instruction prepended."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int] | None:
        """Tokens per text without special tokens, or None when the backend has
        no tokenizer at hand (the chunker then budgets by characters)."""
        ...

    def close(self) -> None: ...


def with_query_instruction(spec: ModelSpec, texts: Sequence[str]) -> list[str]:
    return [spec.query_instruction + t for t in texts]


def as_float32_matrix(vectors: object, n: int, dim: int) -> np.ndarray:
    """Check a backend's output shape and dtype at the boundary."""
    array = np.asarray(vectors, dtype=np.float32)
    if array.shape != (n, dim):
        raise EmbedderError(f"backend returned shape {array.shape}, expected ({n}, {dim})")
    return array


def all_vectors(result: PassageEmbeddings, *, where: str, what: str = "input") -> np.ndarray:
    """The vectors of a call whose every input must be embedded (queries, the Modal
    `embed` method): `InputRejected` for the first refused input, so that no zero row
    ever passes for a vector."""
    if result.rejected:
        first = result.rejected[0]
        raise InputRejected(first.index, first.status, first.message, where, what)
    return result.vectors


def load_token_counter(path: str):
    """A `tokenizers.Tokenizer` from a `tokenizer.json`, with no padding and no
    truncation: for counting tokens, as the chunker does."""
    try:
        from tokenizers import (
            Tokenizer,  # not a core dependency: only for a served model's tokenizer.json
        )

        tokenizer = Tokenizer.from_file(path)
    except Exception as exc:  # ImportError, or an unreadable file
        raise EmbedderError(f"cannot load the tokenizer {path}: {type(exc).__name__}: {exc}") from exc
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer
