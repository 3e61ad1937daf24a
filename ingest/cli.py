"""`python -m ingest`: fill a Qdrant collection with embedded Wikipedia chunks.

Commands:
  run        (default) ingest a source into a collection
  bench      embedder-alone throughput next to a whole ingest run, on the same chunks
  bench-tei  client-side cost per chunk on the TEI path, ours beside the reference's
  plan       projected full-Wikipedia time and cost on 10, 50 and 100 A10Gs

`python -m ingest COMMAND --help` tells more. Every flag can also be set through
the environment variable its help names.

Exit codes: 0 done; 1 failed; 2 bad usage; 3 done, but some inputs were
dead-lettered (see the file the summary names).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

from ingest.errors import IngestError, SettingsError
from ingest.settings import add_embedder_args, add_ingest_args, add_store_args, ingest_settings

log = logging.getLogger("ingest")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DEAD_LETTERS = 0, 1, 2, 3
COMMANDS = ("run", "bench", "bench-tei", "plan")
# Commands with parsers of their own: the rest of the command line goes to them.
DELEGATED = {"bench-tei": "ingest.bench_tei", "plan": "ingest.plan"}


def setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore", "urllib3", "datasets", "filelock", "sentence_transformers"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ingest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in DELEGATED.items():
        commands.add_parser(name, help=f"see python -m ingest {name} --help", add_help=False)
    run = commands.add_parser(
        "run", help="ingest a source into a collection (the default command)",
        description="Chunk, embed and upsert a source. Prints a summary line on stdout.\n\n"
                    "  python -m ingest                      # the bundled sample, local model, ./qdrant_data\n"
                    "  python -m ingest --limit 100 --collection test\n"
                    "  python -m ingest --source wikimedia/wikipedia:20231101.en --qdrant-url http://localhost:6333",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench = commands.add_parser(
        "bench", help="embedder-alone throughput beside a whole run, on the same chunks",
        description="Chunks the source once, times the embedder alone on those chunks, then a whole "
                    "ingest into a throw-away collection, and prints both (chunks/s) and their ratio.",
    )
    bench.add_argument("--embedder-only", action="store_true",
                       help="time the embedder alone, skip the whole run (no Qdrant needed)")
    bench.add_argument("--repeat", type=int, default=1, help="embed the chunks N times (default 1)")
    for sub in (run, bench):
        add_ingest_args(sub)
        add_embedder_args(sub)
        add_store_args(sub)
        sub.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
        sub.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv.insert(0, "run")
    if argv[0] in DELEGATED:
        import importlib

        return importlib.import_module(DELEGATED[argv[0]]).main(argv[1:])
    try:
        parser = build_parser()  # reads the environment: a bad variable is a usage error
        args = parser.parse_args(argv)
        setup_logging(-1 if args.quiet else args.verbose)
        settings = ingest_settings(args)
    except SettingsError as exc:
        print(f"python -m ingest: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.command == "bench":
            from ingest.bench import run_bench

            print(run_bench(settings, embedder_only=args.embedder_only, repeat=args.repeat))
            return EXIT_OK
        from ingest.jobs import run_ingest

        summary = run_ingest(settings)
    except IngestError as exc:
        log.error("%s", exc)
        return EXIT_FAILED
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    print(summary.line() + f"; collection {settings.store.collection} now holds "
          f"{summary.extra.get('collection_points', 0):,} points")
    if summary.failed:
        log.warning("%d inputs failed for good; see %s", summary.failed, summary.dead_letter)
        return EXIT_DEAD_LETTERS
    return EXIT_OK
