"""`python -m ingest bench-quantization`: what int8 quantization costs in recall.

A server collection keeps int8 vectors in RAM and the float32 originals on disk
(`ingest.store.server`). This measures, on a collection's real vectors and real
queries, how many of the exact top 10 each way of searching finds: Qdrant's own
engine in process (Qdrant Edge: the server's segment code, HNSW and scalar
quantization included), with the server collection's settings (int8, quantile
0.99, HNSW m=16), side by side in one run:

- HNSW over float32 (quantization ignored),
- HNSW over int8, without rescoring,
- HNSW over int8, rescored with the originals from twice the candidates (what
  `ingest.store.server` asks for),

each against exact float32 search (numpy, brute force). Needs `qdrant-edge-py`
(the `local` extra has it).

  python -m ingest bench-quantization                 # ./qdrant_data, collection wikipedia, the shipped questions
  python -m ingest bench-quantization --queries 100 -k 10

Exit codes: 0 measured; 1 failed; 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from ingest.edge import command
from ingest.embedders import make_embedder
from ingest.errors import SettingsError
from ingest.settings import (
    add_embedder_args,
    add_store_args,
    embedder_settings,
    store_settings,
)
from ingest.store import open_live
from schemas import point_id

PROG = "python -m ingest bench-quantization"
QUESTIONS = Path(__file__).resolve().parents[2] / "search" / "questions" / "sample.jsonl"


def collection_vectors(settings) -> tuple[np.ndarray, object]:
    """Every stored dense vector of the collection the settings name, and its spec."""
    store = open_live(settings)
    try:
        spec = store.read_spec()
        if spec is None:
            raise SettingsError(f"no collection {settings.collection!r} at {settings.location}: run python -m ingest")
        ids = [
            point_id(ref.article_id, ref.chunk_index)
            for page in store.scan_chunks()
            for ref in page
            if ref.chunk_index >= 0
        ]
        found = store.stored_vectors(ids)
    finally:
        store.close()
    vectors = np.stack([stored.vector for stored in found.values()]).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True), spec


def read_questions(path: Path) -> list[str]:
    """The "question" of each line of a JSON-lines file (`search/questions/` has the format)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line)["question"] for line in lines if line.strip()]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SettingsError(f"cannot read questions from {path}: {exc}") from exc


def recall(found: Sequence[Sequence[int]], exact: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact)]))


def measure(vectors: np.ndarray, queries: np.ndarray, k: int) -> list[tuple[str, float, float]]:
    """(way of searching, recall@k against exact, median ms) for each way, one shard."""
    try:
        import qdrant_edge as q  # only this benchmark needs it: pip install '.[local]'
    except ImportError as exc:
        raise SettingsError(f"{PROG} needs qdrant-edge-py: pip install '.[local]'") from exc
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :k]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-quantization-") as folder:
        config = q.EdgeConfig(
            vectors=q.EdgeVectorParams(size=vectors.shape[1], distance=q.Distance.Cosine),
            quantization_config=q.ScalarQuantizationConfig(type=q.ScalarType.Int8, quantile=0.99, always_ram=True),
            hnsw_config=q.HnswIndexConfig(m=16, ef_construct=100, full_scan_threshold=1),
            optimizers=q.EdgeOptimizersConfig(indexing_threshold=1, default_segment_number=1),
        )
        shard = q.EdgeShard.create(str(Path(folder) / "shard"), config)
        for start in range(0, len(vectors), 1024):
            shard.update(
                q.UpdateOperation.upsert_points(
                    [q.Point(i, {"": vectors[i].tolist()}, {}) for i in range(start, min(start + 1024, len(vectors)))]
                )
            )
        started = time.perf_counter()
        shard.optimize()  # builds the graph and the int8 copy, as a server's optimizer does
        built = time.perf_counter() - started
        ways = {
            "HNSW, float32 (quantization ignored)": q.QuantizationSearchParams(ignore=True),
            "HNSW, int8, no rescoring": q.QuantizationSearchParams(rescore=False),
            "HNSW, int8, rescored from 2x candidates (the server's setting)": q.QuantizationSearchParams(
                rescore=True, oversampling=2.0
            ),
        }
        for name, params in ways.items():
            found, seconds = [], []
            for query in queries:
                t0 = time.perf_counter()
                hits = shard.query(
                    q.QueryRequest(
                        limit=k, query=q.Query.Nearest(query.tolist()), params=q.SearchParams(quantization=params)
                    )
                )
                seconds.append(time.perf_counter() - t0)
                found.append([int(str(hit.id)) for hit in hits])
            results.append((name, recall(found, exact), 1000 * float(np.median(seconds))))
        shard.close()
    results.append((f"(graph and int8 copy built in {built:,.1f} s)", float("nan"), float("nan")))
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--questions", type=Path, default=QUESTIONS, help="JSON-lines questions (default: the shipped set)"
    )
    parser.add_argument("--queries", type=int, default=None, help="the first N questions (default: all)")
    parser.add_argument("-k", type=int, default=10, help="recall at k (default %(default)s)")
    add_embedder_args(parser)
    add_store_args(parser)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    return parser


def _check(args: argparse.Namespace) -> None:
    if args.k < 1 or (args.queries is not None and args.queries < 1):
        raise SettingsError("-k and --queries must be at least 1")
    store_settings(args), embedder_settings(args)  # a bad flag or variable is a usage error


def _bench(args: argparse.Namespace) -> int:
    stores, embedders = store_settings(args), embedder_settings(args)
    questions = read_questions(args.questions)[: args.queries]
    vectors, spec = collection_vectors(stores)
    embedder = make_embedder(embedders, model=spec.model.name, query_instruction=spec.model.query_instruction)
    try:
        queries = embedder.embed_queries(questions)
    finally:
        embedder.close()
    queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    rows = measure(vectors, queries, args.k)
    print(
        f"{len(vectors):,} vectors of {spec.model.name} ({vectors.shape[1]} dims), {len(queries):,} questions, "
        f"recall@{args.k} against exact float32 search"
    )
    for name, value, ms in rows:
        print(name if np.isnan(value) else f"{name:<64} recall@{args.k} {value:.4f}   median {ms:.2f} ms")
    return 0


def _qdrant(args: argparse.Namespace) -> str | None:
    stores = store_settings(args)
    return stores.address if stores.qdrant_url else None


main = command(PROG, build_parser, _bench, check=_check, qdrant=_qdrant)
