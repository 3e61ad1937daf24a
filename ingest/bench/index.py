"""`python -m ingest bench-index`: how fast Qdrant's engine builds a collection's index.

Writes N points shaped like a load's (384-dimension vectors with structure: unit
vectors around 500 cluster centres, not uniform noise, which is HNSW's worst case;
the sample's articles as payloads with their BM25 vectors) into a fresh embedded store
(Qdrant Edge, Qdrant's own engine), then times `optimize()`, which builds the HNSW
graph (m=16, over int8 copies) and the sparse and payload indexes over them in one
go, as a server's optimizer does after a bulk load. Points/s per core is what `python -m
ingest plan --index-points-per-s` takes (a server's segments are larger than one
run of this, and the graph's cost grows with them: read it as an upper bound).

  python -m ingest bench-index                  # 60,000 points
  python -m ingest bench-index --points 200000

Exit codes: 0 measured; 2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Sequence

import numpy as np

from ingest import lexical
from ingest.chunking import Chunker, ChunkingSettings
from ingest.edge import Edge, run_command
from ingest.errors import SettingsError
from ingest.sources import sample_rows
from ingest.store import edge_index
from ingest.store.edge import EdgeStore
from schemas import KNOWN_MODELS, Article, CollectionSpec

PROG = "python -m ingest bench-index"
CENTRES = 500
NOISE = 0.6  # per dimension, around a unit-scale centre: neighbours are near, not identical


def clustered_vectors(n: int, dimension: int = 384, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((CENTRES, dimension)).astype(np.float32)
    vectors = centres[rng.integers(0, CENTRES, n)] + NOISE * rng.standard_normal((n, dimension)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def measure(points: int) -> dict[str, float]:
    spec = CollectionSpec(
        model=KNOWN_MODELS["BAAI/bge-small-en-v1.5"], chunking={"max_chars": 1000}, sparse=lexical.default_spec()
    )
    chunker = Chunker(ChunkingSettings(max_chars=1000), max_tokens=512)
    rows = sample_rows()
    vectors = clustered_vectors(points)
    segment_points, edge_index.SEGMENT_POINTS = edge_index.SEGMENT_POINTS, points + 1  # one build, timed below
    with tempfile.TemporaryDirectory(prefix="bench-index-") as folder:
        store = EdgeStore.open(folder, collection="bench")
        try:
            store.ensure_collection(spec)
            started = time.perf_counter()
            for start in range(0, points, 512):
                pairs = []
                for i in range(start, min(start + 512, points)):
                    article = Article.from_row({**rows[i % len(rows)], "id": f"a{i}"})
                    pairs.append((article, next(iter(chunker.chunks(article)))))
                store.upsert_pairs(pairs, vectors[start : start + len(pairs)])
            store.flush()
            written = time.perf_counter() - started
            started = time.perf_counter()
            store.optimize()
            built = time.perf_counter() - started
        finally:
            store.close()
            edge_index.SEGMENT_POINTS = segment_points
    return {"write_s": written, "index_s": built}


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(PROG, lambda edge: _bench(edge, argv))


def _bench(edge: Edge, argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, default=60_000, help="points to index (default %(default)s)")
    args = parser.parse_args(argv)
    if args.points < 1_000:
        raise SettingsError("--points must be at least 1000")
    edge.ready()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    row = measure(args.points)
    rate = args.points / row["index_s"]
    print(
        f"{args.points:,} points (384 dimensions, clustered; BM25 and payload indexes) written in "
        f"{row['write_s']:.1f} s; optimize() built the index in {row['index_s']:.1f} s = {rate:,.0f} points/s "
        f"on {cores} cores, {rate / cores:,.0f} per core"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
