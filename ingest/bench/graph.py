"""`python -m ingest bench-graph`: the embedded store's HNSW parameters, chosen by measurement.

Writes N points with real structure (`ingest.bench.vectors`: the bundled model's vectors
of the sample's leads plus each point's own noise; ids only, no payload) into a fresh
Qdrant Edge shard configured as the embedded store configures it, except for the
graph's parameters given here, builds the graph (`optimize()`, in this process: nothing
else runs here), and measures top-10 dense recall against exact search of 200 queries
(other noisy copies of the leads) at several search widths (`hnsw_ef`), with the int8
ranking used as it is or rescored with the originals from twice the candidates.

    python -m ingest bench-graph --points 200000
    python -m ingest bench-graph --points 200000 --m 12 --ef-construct 64 --float32

Exit codes: 0 measured; 1 failed; 2 bad usage.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

import numpy as np

from ingest.bench.vectors import Structured, sample_vectors
from ingest.edge import command
from ingest.errors import SettingsError
from ingest.store.base import OVERSAMPLING
from ingest.store.edge_index import FULL_SCAN_KB, HNSW_EF_CONSTRUCT, HNSW_M, int8_config

try:
    import qdrant_edge as q
except ImportError:  # pragma: no cover - depends on the install
    q = None

PROG = "python -m ingest bench-graph"
QUERIES = 200
WIDTHS = (64, 128, 256, 512)
BATCH = 2048


def copy_text(titles: list[str], i: int, label: str = "") -> str:
    """The input text of copy `i` (copy 0 of each lead is the lead itself, titled alone)."""
    title = titles[i % len(titles)]
    return f"{title} ({label}{i // len(titles)})\n" if label or i >= len(titles) else f"{title}\n"


def measure(points: int, m: int, ef_construct: int, int8: bool) -> dict:
    titles, base = sample_vectors(min(points, 10_033))
    shaped = Structured(titles, base)
    config = q.EdgeConfig(
        vectors=q.EdgeVectorParams(size=base.shape[1], distance=q.Distance.Cosine),
        hnsw_config=q.HnswIndexConfig(m=m, ef_construct=ef_construct, full_scan_threshold=FULL_SCAN_KB),
        quantization_config=int8_config() if int8 else None,
        optimizers=q.EdgeOptimizersConfig(indexing_threshold=1),
    )
    with tempfile.TemporaryDirectory(prefix="bench-graph-") as folder:
        shard = q.EdgeShard.create(f"{folder}/shard", config)
        try:
            for start in range(0, points, BATCH):
                ids = range(start, min(start + BATCH, points))
                rows = shaped.rows([copy_text(titles, i) for i in ids])
                shard.update(q.UpdateOperation.upsert_points([q.Point(i, {"": r.tolist()}) for i, r in zip(ids, rows)]))
            queries = shaped.rows([copy_text(titles, 7919 * k, "query ") for k in range(QUERIES)])

            def top10(params) -> tuple[list[set], float]:
                found, took = [], []
                for vector in queries:
                    t0 = time.perf_counter()
                    hits = shard.query(q.QueryRequest(limit=10, query=q.Query.Nearest(vector.tolist()), params=params))
                    took.append(time.perf_counter() - t0)
                    found.append({hit.id for hit in hits})
                return found, 1000 * float(np.median(took))

            exact, exact_ms = top10(q.SearchParams(exact=True))
            started = time.perf_counter()
            shard.optimize()
            row = {"build_s": time.perf_counter() - started, "exact_ms": exact_ms, "widths": {}}
            for ef in WIDTHS:
                for rescore in (False, True) if int8 else (False,):
                    quant = q.QuantizationSearchParams(rescore=rescore, oversampling=OVERSAMPLING if rescore else None)
                    got, ms = top10(q.SearchParams(hnsw_ef=ef, quantization=quant))
                    recall = float(np.mean([len(a & b) / 10 for a, b in zip(got, exact)]))
                    row["widths"][(ef, rescore)] = (recall, ms)
        finally:
            shard.close()
    row["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return row


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, default=200_000, help="points in the graph (default %(default)s)")
    parser.add_argument("--m", type=int, default=HNSW_M, help="graph edges per point (default %(default)s)")
    parser.add_argument(
        "--ef-construct", type=int, default=HNSW_EF_CONSTRUCT, help="candidates per insertion (default %(default)s)"
    )
    parser.add_argument("--float32", action="store_true", help="build over the float32 vectors, no int8 copies")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    return parser


def _check(args: argparse.Namespace) -> None:
    if args.points < 1_000 or args.m < 4 or args.ef_construct < 4:
        raise SettingsError("--points must be at least 1000, --m and --ef-construct at least 4")


def _bench(args: argparse.Namespace) -> int:
    row = measure(args.points, args.m, args.ef_construct, not args.float32)
    kind = "float32" if args.float32 else "int8"
    print(
        f"{args.points:,} points (real vectors of the sample's leads plus noise), m {args.m}, ef_construct "
        f"{args.ef_construct}, {kind}: graph built in {row['build_s']:.1f} s, peak RSS "
        f"{row['peak_rss_bytes'] / 2**30:.2f} GiB; exact search {row['exact_ms']:.2f} ms"
    )
    print("hnsw_ef  int8 ranking  recall@10  p50 ms")
    for (ef, rescore), (recall, ms) in row["widths"].items():
        ranking = "rescored" if rescore else ("as it is" if kind == "int8" else "float32")
        print(f"{ef:>7}  {ranking:>12}  {recall:>9.4f}  {ms:>6.2f}")
    return 0


main = command(PROG, build_parser, _bench, check=_check)
