"""`python -m ingest bench-faults`: does a whole ingest through TEI survive a storm of 429s?

Writes the first N articles of the bundled sample (default 600) through an instant
TEI-protocol server (its own process) that answers a share of the embedding
requests with 429 and `Retry-After: 0`, into a fresh embedded store, with the
whole pipeline (`run_ingest`), once per rate and run: whether it finished, in
how long, with every chunk written, and the retries the report counts by cause.
Before adaptive backpressure, 0 of 3 such runs finished at 60% (9 attempts spent
in milliseconds).

  python -m ingest bench-faults                      # 30% and 60%, one run each
  python -m ingest bench-faults --rates 0.6 --runs 3

Exit codes: 0 measured (whatever the runs did); 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from ingest.bench.tei_client import InstantServer
from ingest.edge import command
from ingest.errors import IngestError, SettingsError
from ingest.jobs import run_ingest
from ingest.settings import EmbedderSettings, IngestSettings, StoreSettings
from ingest.sources import sample_rows

PROG = "python -m ingest bench-faults"


def one_run(rate: float, articles: int, folder: Path) -> str:
    source = folder / "articles.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in sample_rows()[:articles]), encoding="utf-8")
    server = InstantServer.start(max_batch=4, wide_floats=False, rate_429=rate)
    try:
        settings = IngestSettings(
            source=str(source),
            progress=False,
            dead_letter=str(folder / "dl.jsonl"),
            embedder=EmbedderSettings(embedder="tei", tei_url=server.url, tei_concurrency=8),
            store=StoreSettings(qdrant_path=str(folder / "q"), collection="bench"),
        )
        started = time.perf_counter()
        try:
            summary = run_ingest(settings)
        except IngestError as exc:
            return f"failed after {time.perf_counter() - started:.1f} s: {exc}"
        retries = ", ".join(f"{cause} {n:,}" for cause, n in sorted(summary.retries.items())) or "none"
        return (
            f"finished in {summary.seconds:.1f} s: {summary.points_written:,} points of {summary.chunks:,} "
            f"chunks; retries {retries}; the server answered {server.refused():,} 429s"
        )
    finally:
        server.stop()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rates",
        type=float,
        nargs="+",
        default=[0.3, 0.6],
        help="shares of embedding requests answered 429 (default %(default)s)",
    )
    parser.add_argument("--runs", type=int, default=1, help="runs per rate (default %(default)s)")
    parser.add_argument("--articles", type=int, default=600, help="articles of the sample (default %(default)s)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    return parser


def _check(args: argparse.Namespace) -> None:
    if args.runs < 1 or args.articles < 1 or not all(0.0 <= r < 1.0 for r in args.rates):
        raise SettingsError("--runs and --articles must be at least 1, and each rate in [0, 1)")


def _bench(args: argparse.Namespace) -> int:
    print(f"{args.articles:,} articles of the sample through a TEI server answering 429 (Retry-After: 0) at random")
    for rate in args.rates:
        for run in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="bench-faults-") as scratch:
                print(f"429s {rate:.0%}, run {run + 1}: {one_run(rate, args.articles, Path(scratch))}", flush=True)
    return 0


main = command(PROG, build_parser, _bench, check=_check)
