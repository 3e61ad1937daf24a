"""`python -m ingest bench-store`: does the embedded store keep up with a fast embedder?

Writes N one-chunk articles through an instant TEI-protocol server (each text's own
vector with real structure, `ingest.bench.vectors`; in a process of its own, base64
route) into the embedded store, a fresh folder, with the whole pipeline
(`run_ingest`, which builds the search index from 20,000 points), then times hybrid
searches as `Searcher` makes them (query embedding through the same server, BM25
query vector, fused search) and their recall@10 against the same searches scored
exactly. The embedder costs next to nothing, so what is measured is the store (and
the pipeline around it). `--optimize` then builds the HNSW graph over what the run
left outside one (below 20,000 points, everything) and times the same searches again.

  python -m ingest bench-store                          # 20,000 articles
  python -m ingest bench-store --articles 5000 --optimize

Exit codes: 0 measured; 1 failed; 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ingest import lexical
from ingest.bench.tei_client import InstantServer
from ingest.chunking import ChunkingSettings
from ingest.definitions import first_sentence
from ingest.edge import command
from ingest.embedders import make_embedder
from ingest.errors import SettingsError
from ingest.jobs import run_ingest
from ingest.settings import EmbedderSettings, IngestSettings, StoreSettings
from ingest.sources import sample_rows
from ingest.store import edge_index, open_live

PROG = "python -m ingest bench-store"


def write_articles(path: Path, n: int) -> list[str]:
    """`n` one-chunk articles from the sample's leads (cut to 500 characters), and their titles.
    Past the sample's size, a lead's copy k has " (k)" in its title and at the end of its first
    sentence: every text, definitions included (`ingest.definitions`), is the copy's own, as in a
    real corpus (a graph over thousands of identical vectors ranks their ties unlike an exact search)."""
    rows = sample_rows()
    titles = []
    with path.open("w", encoding="utf-8") as handle:
        for i in range(n):
            row = rows[i % len(rows)]
            copy = i // len(rows)
            title = row["title"] if not copy else f"{row['title']} ({copy})"
            titles.append(title)
            text = row["text"][:500] or "empty"
            if copy:
                first = first_sentence(text).rstrip(".")
                text = f"{first} ({copy}){text[len(first) :]}"
            handle.write(
                json.dumps(
                    {
                        "id": f"a{i}",
                        "url": f"https://example.org/{i}",
                        "title": title,
                        "text": text,
                    }
                )
                + "\n"
            )
    return titles


def bench_settings(source: Path, url: str, folder: Path) -> IngestSettings:
    """The run's settings: the default command's, through the instant server, into `folder`."""
    return IngestSettings(
        source=str(source),
        progress=False,
        window=512,
        dead_letter=str(folder / "dl.jsonl"),
        chunking=ChunkingSettings(max_chars=1000),
        embedder=EmbedderSettings(embedder="tei", tei_url=url, tei_wire="base64", tei_concurrency=4),
        store=StoreSettings(qdrant_path=str(folder / "q"), collection="bench"),
    )


@dataclass(frozen=True, slots=True)
class Measured:
    row: dict  # the figures
    ranked: list[list[str]]  # each timed search's hits, for `exact_recall` when `measure` left it out


def measure(
    source: Path, titles: list[str], url: str, queries: int, folder: Path, optimize: bool, *, exact: bool = True
) -> Measured:
    """The run, then `queries` hybrid searches timed over what it built; `exact`: and the same
    searches scored exactly, for the recall of the graph's (which reads every vector's original,
    so that a caller measuring memory runs it last: `exact_recall`)."""
    settings = bench_settings(source, url, folder)
    built_before = edge_index.build_seconds()
    started = time.perf_counter()
    summary = run_ingest(settings)
    seconds = time.perf_counter() - started
    store, embedder = open_live(settings.store), make_embedder(settings.embedder)
    row = {
        "points": summary.points_written,
        "seconds": seconds,
        "points_per_s": summary.points_written / seconds,
        "embed_share": summary.embed_seconds / seconds,
        "index_s": edge_index.build_seconds() - built_before,
    }
    try:
        took, ranked = timed_searches(store, embedder, titles, queries)
        row.update(median_ms=1000 * float(np.median(took)), p95_ms=1000 * float(np.percentile(took, 95)))
        if exact or optimize:
            scored = exact_searches(store, embedder, titles, queries)
            row["recall"] = _recall(ranked, scored)
        if optimize:
            t0 = time.perf_counter()
            store.optimize()
            row["optimize_s"] = time.perf_counter() - t0
            took, graph = timed_searches(store, embedder, titles, queries)
            row.update(
                hnsw_median_ms=1000 * float(np.median(took)),
                hnsw_p95_ms=1000 * float(np.percentile(took, 95)),
                overlap=_recall(graph, scored),
            )
    finally:
        embedder.close()
        store.close()
    return Measured(row, ranked)


def exact_recall(settings: IngestSettings, titles: list[str], queries: int, ranked: list[list[str]]) -> float:
    """Recall@10 of `ranked` (`measure`'s searches) against the same searches scored exactly."""
    store, embedder = open_live(settings.store), make_embedder(settings.embedder)
    try:
        return _recall(ranked, exact_searches(store, embedder, titles, queries))
    finally:
        embedder.close()
        store.close()


def timed_searches(store, embedder, titles: list[str], queries: int) -> tuple[list[float], list[list[str]]]:
    """Seconds and hits of hybrid searches for `titles[1 : queries + 1]`, as `Searcher` makes them
    (the first title a warm-up: first-call costs are not latency)."""
    spec = store.read_spec().sparse

    def hybrid(text: str) -> list[str]:
        found = store.search(embedder.embed_queries([text])[0], sparse=lexical.query_vector(text, spec), limit=10)
        return [hit.id for hit in found]

    hybrid(titles[0])
    took, ranked = [], []
    for title in titles[1 : queries + 1]:
        t0 = time.perf_counter()
        ranked.append(hybrid(title))
        took.append(time.perf_counter() - t0)
    return took, ranked


def exact_searches(store, embedder, titles: list[str], queries: int) -> list[list[str]]:
    """The same searches, every point scored with its original vector: what the graph's answers are held to."""
    store.exact = True
    try:
        return timed_searches(store, embedder, titles, queries)[1]
    finally:
        store.exact = False


def _recall(ranked: list[list[str]], exact: list[list[str]]) -> float:
    return float(np.mean([len(set(a) & set(b)) / max(len(b), 1) for a, b in zip(ranked, exact)]))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--articles", type=int, default=20_000, help="one-chunk articles (default %(default)s)")
    parser.add_argument("--queries", type=int, default=200, help="hybrid searches timed (default %(default)s)")
    parser.add_argument(
        "--optimize",
        action="store_true",
        help="then build the HNSW graph over what the run left outside one (below 20,000 points, everything) "
        "and time the same searches again, with their top-10 overlap with the exact search's",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    return parser


def _check(args: argparse.Namespace) -> None:
    if args.articles < 2 or args.queries < 1:
        raise SettingsError("--articles must be at least 2 and --queries at least 1")


def _bench(args: argparse.Namespace) -> int:
    server = InstantServer.start(max_batch=512, wide_floats=False, structured=min(args.articles, len(sample_rows())))
    try:
        with tempfile.TemporaryDirectory(prefix="bench-store-") as scratch:
            source = Path(scratch) / "articles.jsonl"
            titles = write_articles(source, args.articles)
            queries = min(args.queries, len(titles) - 1)
            row = measure(source, titles, server.url, queries, Path(scratch), args.optimize).row
    finally:
        server.stop()
    print(f"{args.articles:,} one-chunk articles through an instant TEI server; hybrid searches, embedding included")
    print(
        f"{row['points']:,} points in {row['seconds']:.1f} s = {row['points_per_s']:,.0f} points/s (embedder "
        f"{100 * row['embed_share']:.0f}% of it); hybrid search, "
        + (f"over the graph built in {row['index_s']:.1f} s" if row["index_s"] >= 0.5 else "exact")
        + f": median {row['median_ms']:.1f} ms, p95 {row['p95_ms']:.1f} ms, recall@10 against exact "
        f"{row['recall']:.3f}"
    )
    if "optimize_s" in row:
        print(
            f"after optimize() ({row['optimize_s']:.1f} s, in a process of its own): median "
            f"{row['hnsw_median_ms']:.1f} ms, p95 {row['hnsw_p95_ms']:.1f} ms, top-10 overlap with exact "
            f"{row['overlap']:.3f}"
        )
    return 0


main = command(PROG, build_parser, _bench, check=_check)
