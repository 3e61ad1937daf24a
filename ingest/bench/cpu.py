"""What the CPU side of a GPU container costs per core: everything between the dataset
and the upsert, stage by stage, on real articles.

A GPU container reads rows, chunks them with the served model's tokenizer (counting
tokens), sends the chunks to its TEI server and decodes the vectors, builds the points
(payloads, BM25 vectors) and hands them to Qdrant; TEI meanwhile tokenizes the same
text again on its own threads. Each stage runs here alone, in this process, and is
timed in CPU seconds (`time.process_time`: every thread of this process), so a stage's
figure is characters of article text per second of one core, whatever the machine's
load. TEI is an instant server in a process of its own (`ingest.bench.tei_client`): its
CPU is not counted, only the client's.

    python -m ingest bench-cpu                      # the bundled sample, its model's tokenizer
    python -m ingest bench-cpu --articles 2000 --tokenizer /weights/tokenizer.json

The last lines say how many cores feed one GPU at `--gpu-chars-per-s` (default the
project's aim, 1M characters/s per A10G): ours (the pipeline) and TEI's tokenizer.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from qdrant_client import grpc, models
from qdrant_client.conversions.conversion import RestToGrpc

from ingest.bench.tei_client import InstantServer
from ingest.chunking import Chunker
from ingest.definitions import definition_text
from ingest.edge import command
from ingest.embedders.base import load_token_counter
from ingest.embedders.local import DEFAULT_MODEL, resolve_model
from ingest.embedders.tei import TEIEmbedder
from ingest.errors import SettingsError
from ingest.lexical import default_spec, passage_text, passage_vector
from ingest.settings import ChunkingSettings
from ingest.sources import open_source
from ingest.store.points import build_batch
from schemas import Article

PROG = "python -m ingest bench-cpu"
MAX_TOKENS = 512  # bge-small-en-v1.5's, and all-MiniLM-L6-v2's
WINDOW = 2048  # chunks per embedder call on the GPU workers (ingest.modal_app.WINDOW)
POINTS_BATCH = 256  # points per upsert body
DIMENSION = 384


@dataclass(frozen=True, slots=True)
class Stage:
    name: str
    cpu_seconds: float
    characters: int  # of article text the stage handled
    ours: bool = True  # our pipeline's work (else TEI's own, on its threads)

    @property
    def rate(self) -> float:
        """Characters of article text per CPU-second."""
        return self.characters / max(self.cpu_seconds, 1e-9)


def cpu_timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.process_time()
    result = fn()
    return time.process_time() - started, result


def measure(rows: Sequence[dict], tokenizer_path: str, server_url: str) -> list[Stage]:
    """Each stage of the CPU side alone, over `rows`, in CPU seconds."""
    seconds, articles = cpu_timed(lambda: [Article.from_row(row) for row in rows])
    characters = sum(len(article.text) for article in articles)
    stages = [Stage("read rows (Article.from_row)", seconds, characters)]
    tokenizer = load_token_counter(tokenizer_path)

    def count_tokens(texts: Sequence[str]) -> list[int]:  # as TEIEmbedder.count_tokens counts
        return [len(e.ids) for e in tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    chunker = Chunker(ChunkingSettings(), max_tokens=MAX_TOKENS, count_tokens=count_tokens)
    seconds, pairs = cpu_timed(lambda: [(a, chunk) for a in articles for chunk in chunker.chunks(a)])
    stages.append(Stage("chunk, counting tokens with the tokenizer", seconds, characters))
    seconds, defined = cpu_timed(
        lambda: {i: definition_text(c.text) for i, (_, c) in enumerate(pairs) if not c.chunk_index}
    )
    stages.append(Stage("definitions (first sentences cut)", seconds, characters))
    texts = [chunk.embed_text for _, chunk in pairs]
    read = texts + list(defined.values())  # a window's chunks and its first chunks' definitions, as the pipeline sends
    with TEIEmbedder(server_url, wire="base64", max_concurrency=8, batch_size=256) as embedder:
        seconds, embedded = cpu_timed(
            lambda: np.concatenate(
                [embedder.embed_passages(read[i : i + WINDOW]).vectors for i in range(0, len(read), WINDOW)]
            )
        )
    stages.append(Stage("TEI client (HTTP, base64 vectors decoded)", seconds, characters))
    vectors = embedded[: len(texts)]
    definitions = dict(zip(defined, embedded[len(texts) :]))

    def batch(i: int, sparse: Any = None) -> Any:
        part = range(i, min(i + POINTS_BATCH, len(pairs)))
        ours = {n: definitions[j] for n, j in enumerate(part) if j in definitions}
        return build_batch(pairs[i : i + POINTS_BATCH], vectors[i : i + POINTS_BATCH], sparse, ours)

    spec = default_spec()
    seconds, _ = cpu_timed(lambda: [passage_vector(passage_text(c.embed_text, c.text, spec), spec) for _, c in pairs])
    stages.append(Stage("BM25 vectors (Qdrant's analyser)", seconds, characters))
    seconds, _ = cpu_timed(lambda: [batch(i) for i in range(0, len(pairs), POINTS_BATCH)])
    stages.append(Stage("points (ids, payloads, dense and definition vectors)", seconds, characters))
    batches = [batch(i, spec) for i in range(0, len(pairs), POINTS_BATCH)]
    seconds, _ = cpu_timed(lambda: [grpc_upsert_body(batch) for batch in batches])
    stages.append(Stage("gRPC upsert bodies (qdrant-client's conversion)", seconds, characters))
    seconds, _ = cpu_timed(lambda: tokenizer.encode_batch(texts))
    stages.append(Stage("TEI's own tokenization (same tokenizer, Rust)", seconds, characters, ours=False))
    return stages


def grpc_upsert_body(batch: models.Batch | list[models.PointStruct]) -> bytes:
    """What qdrant-client makes of a `Batch` (or of points given one by one, as a batch
    with definition vectors is) before a gRPC upsert (`QdrantRemote.upsert` with
    prefer_grpc, qdrant-client 1.16-1.20), serialized as the channel sends it."""
    if isinstance(batch, list):
        whole = [RestToGrpc.convert_point_struct(point) for point in batch]
        return grpc.UpsertPoints(collection_name="wikipedia", points=whole, wait=True).SerializeToString()
    vectors = RestToGrpc.convert_batch_vector_struct(batch.vectors, len(batch.ids))
    points = [
        grpc.PointStruct(
            id=RestToGrpc.convert_extended_point_id(point_id),
            vectors=vectors[index],
            payload=RestToGrpc.convert_payload(batch.payloads[index]),
        )
        for index, point_id in enumerate(batch.ids)
    ]
    return grpc.UpsertPoints(collection_name="wikipedia", points=points, wait=True).SerializeToString()


def cores(rate: float, gpu_chars_per_s: float) -> float:
    """Cores a stage, or a sum of stages, needs to keep one GPU fed."""
    return gpu_chars_per_s / rate


def report(stages: Sequence[Stage], articles: int, gpu_chars_per_s: float) -> str:
    characters = stages[0].characters
    lines = [
        f"{articles:,} articles, {characters:,} characters; CPU seconds of this process (all threads), "
        "characters of article text per CPU-second",
        f"{'stage':50} {'CPU s':>8} {'chars/s/core':>14} {'cores at ' + _short(gpu_chars_per_s) + '/s':>16}",
    ]
    for stage in stages:
        lines.append(
            f"{stage.name:50} {stage.cpu_seconds:8.2f} {stage.rate:14,.0f} {cores(stage.rate, gpu_chars_per_s):16.2f}"
        )
    ours = [s for s in stages if s.ours]
    ours_seconds = sum(s.cpu_seconds for s in ours)
    ours_rate = characters / max(ours_seconds, 1e-9)
    theirs = [s for s in stages if not s.ours]
    theirs_rate = characters / max(sum(s.cpu_seconds for s in theirs), 1e-9)
    lines += [
        f"{'our pipeline, all stages':50} {ours_seconds:8.2f} {ours_rate:14,.0f} "
        f"{cores(ours_rate, gpu_chars_per_s):16.2f}",
        f"one GPU at {gpu_chars_per_s:,.0f} characters/s needs {math.ceil(cores(ours_rate, gpu_chars_per_s))} cores "
        f"of our pipeline and {math.ceil(cores(theirs_rate, gpu_chars_per_s))} of TEI's tokenizer",
    ]
    return "\n".join(lines)


def _short(value: float) -> str:
    return f"{value / 1e6:g}M" if value >= 1e6 else f"{value / 1e3:g}k"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", default="sample", help="what to read (default: the bundled sample)")
    parser.add_argument("--articles", type=int, default=None, help="the source's first N articles (default: all)")
    parser.add_argument(
        "--tokenizer",
        default=None,
        help="the served model's tokenizer.json (default: the bundled all-MiniLM-L6-v2's, bge-small's vocabulary)",
    )
    parser.add_argument(
        "--gpu-chars-per-s", type=float, default=1_000_000, help="what one GPU embeds (default %(default)s)"
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    return parser


def _check(args: argparse.Namespace) -> None:
    if (args.articles is not None and args.articles < 1) or args.gpu_chars_per_s <= 0:
        raise SettingsError("--articles must be at least 1 and --gpu-chars-per-s above 0")


def _bench(args: argparse.Namespace) -> int:
    rows = list(open_source(args.source, limit=args.articles))
    tokenizer = args.tokenizer or f"{resolve_model(DEFAULT_MODEL)[1]}/tokenizer.json"
    server = InstantServer.start(max_batch=256, wide_floats=False)
    try:
        stages = measure(rows, tokenizer, server.url)
    finally:
        server.stop()
    print(report(stages, len(rows), args.gpu_chars_per_s))
    return 0


main = command(PROG, build_parser, _bench, check=_check)
