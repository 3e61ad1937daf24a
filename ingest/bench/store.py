"""`python -m ingest bench-store`: does the embedded store keep up with a fast embedder?

Writes N one-chunk articles through an instant TEI-protocol server (precomputed
vectors, in a process of its own, base64 route) into each embedded engine in turn,
a fresh folder each, with the whole pipeline (`run_ingest`), then times hybrid
searches as `Searcher` makes them (query embedding through the same server, BM25
query vector, fused search).
Side by side in one run; the embedder costs next to nothing, so what is measured
is the store (and the pipeline around it).

  python -m ingest bench-store                          # 20,000 articles, local and edge
  python -m ingest bench-store --articles 5000 --engines edge

Exit codes: 0 measured; 1 failed; 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from ingest import lexical
from ingest.bench.tei_client import InstantServer
from ingest.chunking import ChunkingSettings
from ingest.embedders import make_embedder
from ingest.errors import IngestError, SettingsError
from ingest.logs import setup_logging
from ingest.settings import ENGINES, EmbedderSettings, IngestSettings, StoreSettings
from ingest.sources import sample_rows
from ingest.store import open_live
from ingest.sync import run_ingest

PROG = "python -m ingest bench-store"


def write_articles(path: Path, n: int) -> list[str]:
    """`n` one-chunk articles from the sample's leads (cut to 500 characters), and their titles."""
    rows = sample_rows()
    titles = []
    with path.open("w", encoding="utf-8") as handle:
        for i in range(n):
            row = rows[i % len(rows)]
            title = row["title"] if i < len(rows) else f"{row['title']} ({i // len(rows)})"
            titles.append(title)
            handle.write(json.dumps({"id": f"a{i}", "url": f"https://example.org/{i}", "title": title,
                                     "text": row["text"][:500] or "empty"}) + "\n")
    return titles


def measure(engine: str, source: Path, titles: list[str], url: str, queries: int, folder: Path) -> dict:
    settings = IngestSettings(source=str(source), progress=False, window=512, dead_letter=str(folder / "dl.jsonl"),
                              chunking=ChunkingSettings(max_chars=1000),
                              embedder=EmbedderSettings(embedder="tei", tei_url=url, tei_wire="base64",
                                                        tei_concurrency=4),
                              store=StoreSettings(qdrant_path=str(folder / "q"), collection="bench", engine=engine))
    started = time.perf_counter()
    summary = run_ingest(settings)
    seconds = time.perf_counter() - started
    store, embedder = open_live(settings.store), make_embedder(settings.embedder)
    try:
        store.warm()

        def hybrid(text: str) -> None:  # what Searcher.search does in hybrid mode
            store.search(embedder.embed_queries([text])[0], sparse=lexical.query_vector(text), limit=10)

        hybrid(titles[0])  # warm-up: first-call costs are not latency
        took = []
        for title in titles[1: queries + 1]:
            t0 = time.perf_counter()
            hybrid(title)
            took.append(time.perf_counter() - t0)
    finally:
        embedder.close()
        store.close()
    return {"engine": engine, "points": summary.points_written, "seconds": seconds,
            "points_per_s": summary.points_written / seconds, "embed_share": summary.embed_seconds / seconds,
            "median_ms": 1000 * float(np.median(took)), "p95_ms": 1000 * float(np.percentile(took, 95))}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles", type=int, default=20_000, help="one-chunk articles (default %(default)s)")
    parser.add_argument("--queries", type=int, default=200, help="hybrid searches timed (default %(default)s)")
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES),
                        help="embedded engines, measured in this order (default: all)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        setup_logging(args.verbose - 1)
        if args.articles < 2 or args.queries < 1:
            raise SettingsError("--articles must be at least 2 and --queries at least 1")
    except SettingsError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    server = InstantServer.start(max_batch=512, wide_floats=False)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-store-") as scratch:
            source = Path(scratch) / "articles.jsonl"
            titles = write_articles(source, args.articles)
            rows = [measure(engine, source, titles, server.url, min(args.queries, len(titles) - 1),
                            Path(scratch) / engine) for engine in args.engines]
    except IngestError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    finally:
        server.stop()
    print(f"{args.articles:,} one-chunk articles through an instant TEI server; hybrid searches, embedding included")
    for row in rows:
        print(f"{row['engine']:<6} {row['points']:>7,} points in {row['seconds']:>6.1f} s = {row['points_per_s']:>7,.0f} "
              f"points/s (embedder {100 * row['embed_share']:.0f}% of it); hybrid search median "
              f"{row['median_ms']:.1f} ms, p95 {row['p95_ms']:.1f} ms")
    return 0
