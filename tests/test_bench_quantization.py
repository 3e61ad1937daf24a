"""python -m ingest bench-quantization: int8 recall against exact search, measured
with Qdrant's own engine (Qdrant Edge) on vectors with the sample's shape."""

from __future__ import annotations

import numpy as np

from ingest.bench.quantization import measure, recall


def test_recall_counts_the_exact_top_k_found():
    exact = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    assert recall([[1, 2, 9, 9], [5, 6, 7, 8]], exact) == 0.75


def test_int8_with_rescoring_finds_what_exact_search_finds_and_without_it_a_little_less():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((40, 64))
    vectors = (centres[rng.integers(0, 40, 3000)] + 0.35 * rng.standard_normal((3000, 64))).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = vectors[rng.choice(3000, 60, replace=False)] + 0.05 * rng.standard_normal((60, 64)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    rows = {name: value for name, value, _ in measure(vectors, queries.astype(np.float32), 10)}
    plain, int8, rescored = (rows[name] for name in list(rows)[:3])
    assert plain >= 0.95 and rescored >= 0.95
    assert int8 <= rescored  # the int8 ranking alone loses some of the exact top 10; rescoring wins them back
