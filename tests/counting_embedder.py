"""An in-process embedder for the freshness tests: deterministic vectors (those of
`ingest.rehearsal.tei.deterministic_vector`, so a stored vector can be checked), every
passage it embeds recorded, and hooks to fail or act at a chosen call."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ingest.embedders.base import PassageEmbeddings
from schemas import ModelSpec
from ingest.rehearsal.tei import deterministic_vectors

SPEC = ModelSpec("test/deterministic", 384, 512)


class CountingEmbedder:
    """`calls` counts `embed_passages` calls, `passages` holds every text embedded.
    `before_call(n)` runs before call n (1-based); `fail_at` makes call n raise."""

    def __init__(self, spec: ModelSpec = SPEC, *, fail_at: int | None = None,
                 before_call: Callable[[int], None] | None = None) -> None:
        self.spec = spec
        self.fail_at = fail_at
        self.before_call = before_call
        self.calls = 0
        self.passages: list[str] = []

    def embed_passages(self, texts: Sequence[str]) -> PassageEmbeddings:
        self.calls += 1
        if self.before_call is not None:
            self.before_call(self.calls)
        if self.fail_at == self.calls:
            raise RuntimeError("the embedding server went away")
        self.passages.extend(texts)
        return PassageEmbeddings(deterministic_vectors(list(texts), self.spec.dimension))

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return deterministic_vectors([self.spec.query_instruction + t for t in texts], self.spec.dimension)

    def count_tokens(self, texts: Sequence[str]) -> list[int] | None:
        return None

    def close(self) -> None:
        pass

    def reset(self) -> None:
        self.calls, self.passages = 0, []
