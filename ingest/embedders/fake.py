"""`FakeEmbedder`: the `Embedder` interface with no model, for tests.

A public test backend, as httpx's `MockTransport` is: deterministic vectors, so a
stored vector can be checked (`deterministic_vector(text)`, the same rows the TEI
stand-in `ingest.rehearsal.tei` serves), and counts of what it was asked, so a test
can say "a re-run embeds nothing" or "1,000 chunks make exactly 2 batches". Hooks
make a chosen call fail (`fail_at`), act before a call (`before_call`, e.g. to stop
a run half-way), or refuse chosen inputs for good (`reject`, as a server answers 413
or 422 to a too-long input), which the pipeline dead-letters.

    >>> embedder = FakeEmbedder(reject=lambda text: "poison" in text)
    >>> result = embedder.embed_passages(["Paris", "poison pill"])
    >>> result.vectors.shape, [r.index for r in result.rejected], embedder.calls
    ((2, 384), [1], 1)
"""

from __future__ import annotations

import hashlib
from typing import Callable, Sequence

import numpy as np

from ingest.embedders.base import PassageEmbeddings, Rejection, with_query_instruction
from ingest.errors import EmbedderError
from schemas import ModelSpec

DIMENSION = 384
SPEC = ModelSpec("test/deterministic", DIMENSION, 512)  # TEI stand-in's model id, a bge-small's shape
REJECTED_STATUS = 413  # what a server answers to an input it will never take


def deterministic_vector(text: str, dimension: int = DIMENSION) -> np.ndarray:
    """A unit float32 vector seeded by a hash of `text`: the same for the same text, in any process."""
    seed = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")
    vector = np.random.default_rng(seed).standard_normal(dimension)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def deterministic_vectors(texts: Sequence[str], dimension: int = DIMENSION) -> np.ndarray:
    if not texts:
        return np.zeros((0, dimension), np.float32)
    return np.stack([deterministic_vector(t, dimension) for t in texts])


class FakeEmbedder:
    """Deterministic vectors, counted (see the module docstring).

    `calls` counts `embed_passages` calls (one per batch the pipeline sends),
    `batch_sizes` their sizes and `passages` every text embedded, in order; `queries`
    the query texts. `fail_at=n` makes call n (1-based) raise `EmbedderError`;
    `before_call(n)` runs before call n; `reject(text)` True refuses that input (its
    row is zeros and it is listed in `rejected`, as `PassageEmbeddings` says)."""

    def __init__(
        self,
        spec: ModelSpec = SPEC,
        *,
        fail_at: int | None = None,
        before_call: Callable[[int], None] | None = None,
        reject: Callable[[str], bool] | None = None,
    ) -> None:
        self.spec = spec
        self.fail_at, self.before_call, self.reject = fail_at, before_call, reject
        self.calls = 0
        self.batch_sizes: list[int] = []
        self.passages: list[str] = []
        self.queries: list[str] = []
        self.closed = False

    def embed_passages(self, texts: Sequence[str]) -> PassageEmbeddings:
        self.calls += 1
        if self.before_call is not None:
            self.before_call(self.calls)
        if self.fail_at == self.calls:
            raise EmbedderError("the embedding server went away")
        self.batch_sizes.append(len(texts))
        self.passages.extend(texts)
        vectors = deterministic_vectors(list(texts), self.spec.dimension)
        rejected = [
            Rejection(i, REJECTED_STATUS, "input is too long")
            for i, text in enumerate(texts)
            if self.reject is not None and self.reject(text)
        ]
        for rejection in rejected:
            vectors[rejection.index] = 0.0
        return PassageEmbeddings(vectors, rejected)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        self.queries.extend(texts)
        return deterministic_vectors(with_query_instruction(self.spec, texts), self.spec.dimension)

    def count_tokens(self, texts: Sequence[str]) -> list[int] | None:
        return None  # no tokenizer: the chunker budgets by characters

    def close(self) -> None:
        self.closed = True

    def reset(self) -> None:
        """Forget the counts (between the runs of one test)."""
        self.calls, self.batch_sizes, self.passages, self.queries = 0, [], [], []
