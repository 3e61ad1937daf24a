"""Vectors with real structure for the store benchmarks, from the bundled model.

The instant TEI server's plain rows are 1,024 random unit vectors served in turn: right
for timing the wire, wrong for an HNSW graph, where a million points would be a thousand
copies of each and uniform random directions are the graph's worst case, not an
encyclopedia's. `Structured` gives each input the real vector (the bundled
all-MiniLM-L6-v2, computed once and cached) of the sample lead its first line names (the
title, which the default chunking puts first; bench articles past the sample's 10,033
are titled "Title (k)") plus noise drawn from a seed of the whole input, so that every
input has its own vector and the k copies of one lead are a topic's cluster: with the
noise as long as the unit base vector, two copies meet at a cosine near 0.5 and a copy
stays nearer its own lead than any other lead, as passages of one subject do.

    >>> vectors = Structured(["Paris", "Rome"], np.eye(2, 384, dtype=np.float32))
    >>> rows = vectors.rows(["Paris\\nThe capital of France.", "Paris (3)\\nThe capital of France."])
    >>> rows.shape, bool(rows[0] @ rows[1] < 0.99), bool(rows[0] @ np.eye(1, 384)[0] > 0.5)
    ((2, 384), True, True)
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from ingest.chunking import embed_text
from ingest.embedders import make_embedder
from ingest.settings import EmbedderSettings
from ingest.sources import sample_rows

NOISE = 1.0  # the noise vector's length against the unit base vector (see the module docstring)
POOL = 1 << 16  # noise rows drawn once; each input mixes two, picked by its hash
PASSAGE_CHARS = 500  # what the bench articles keep of each lead (ingest.bench.store.write_articles)
_COPY = re.compile(r" \(\d+\)$")
log = logging.getLogger(__name__)


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "wiki-vector-index" / "bench"


class Structured:
    """Input text -> its lead's real vector plus the input's own noise, unit length."""

    def __init__(self, titles: Sequence[str], base: np.ndarray, *, noise: float = NOISE, seed: int = 0) -> None:
        self.base = np.asarray(base, dtype=np.float32)
        self.index = {title: i for i, title in enumerate(titles)}
        dimension = self.base.shape[1]
        pool = np.random.default_rng(seed).standard_normal((POOL, dimension)).astype(np.float32)
        self.pool = pool * np.float32(noise / np.sqrt(2 * dimension))  # two rows summed: length ~`noise`

    def rows(self, texts: Sequence[str]) -> np.ndarray:
        lead = np.empty(len(texts), dtype=np.int64)
        mix = np.empty((len(texts), 2), dtype=np.int64)
        for i, text in enumerate(texts):
            digest = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")
            title = _COPY.sub("", text.split("\n", 1)[0])
            lead[i] = self.index.get(title, digest % len(self.base))
            mix[i] = digest % POOL, (digest >> 16) % POOL
        rows = self.base[lead] + self.pool[mix[:, 0]] + self.pool[mix[:, 1]]
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        return rows


def sample_vectors(count: int) -> tuple[list[str], np.ndarray]:
    """The first `count` sample leads' titles and real vectors (cut as the bench articles
    cut them, title first), computed with the bundled model once and cached."""
    rows = sample_rows()[:count]
    titles = [row["title"] for row in rows]
    path = cache_dir() / "sample-vectors.npy"
    if path.is_file():
        cached = np.load(path)
        if len(cached) >= len(rows):
            return titles, cached[: len(rows)]
    embedder = make_embedder(EmbedderSettings(embedder="local"))  # the bundled model, loaded only here
    log.warning(
        "computing the real vectors of %d sample leads with %s (once; cached in %s)",
        len(rows),
        embedder.spec.name,
        path,
    )
    try:
        texts = [embed_text(row["title"], row["text"][:PASSAGE_CHARS] or "empty", True) for row in rows]
        vectors = embedder.embed_passages(texts).vectors.astype(np.float32)
    finally:
        embedder.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.npy")
    np.save(partial, vectors)
    os.replace(partial, path)
    return titles, vectors
