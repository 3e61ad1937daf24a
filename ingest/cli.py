"""`python -m ingest`: fill a Qdrant collection with embedded Wikipedia chunks.

Commands:
  run        (default) ingest a source into a collection: new and changed articles only
  reindex    bring a collection up to date with a new snapshot: run, plus deleting the
             articles the snapshot no longer has
  verify     compare the manifest (what is indexed) with the collection
  repair     rebuild the manifest from the collection
  preflight  check what a full run assumes, against its TEI and Qdrant, before spending money
  rehearse   the sharded load of the Modal app on this machine: local workers, each with its own
             TEI-protocol server, faults injected at will
  bench      embedder-alone throughput next to a whole ingest run, on the same chunks
  bench-reindex  a full ingest beside a reindex of a slightly edited copy of the source
  bench-tei  client-side cost per chunk on the TEI path, ours beside the reference's
  bench-quantization  recall of int8-quantized search against exact, on a collection's vectors
  bench-store  points/s and hybrid latency of the embedded store behind an instant TEI
  bench-faults  a whole ingest through a TEI server answering a share of requests with 429
  bench-index  how fast Qdrant's engine builds a collection's index (HNSW, sparse, payload)
  bench-cpu  a GPU container's CPU side per core, stage by stage, and the cores that feed one GPU
  bench-scale  the embedded store's growth curve: points/s, search latency, memory, disk, verify
  bench-graph  the embedded store's HNSW parameters: build time and recall against exact, by search width
  bench-bookkeeping  time and peak memory of verify, repair, an unchanged reindex and copy at 6.4M articles
  plan       projected full-Wikipedia time and cost on 10, 50 and 100 A10Gs
  copy       copy a collection between stores (folder or server), vectors and manifest, embedding nothing
  migrate    move a folder written by an earlier version (qdrant-client's local mode) into the current engine

`python -m ingest COMMAND --help` tells more; `python -m ingest --help` lists the
flags of `run`. Every flag can also be set through the environment variable its
help names.

Exit codes: 0 done; 1 failed; 2 bad usage; 3 done, but some inputs were
dead-lettered (see the file the summary names); 4 verify found drift.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Sequence

from ingest import crashpoints
from ingest import preflight as preflight_job
from ingest.bench.reindex import run_bench_reindex
from ingest.bench.throughput import run_bench
from ingest.edge import EXIT_FAILED, EXIT_OK, Edge, run_command
from ingest.edge import console as edge_console
from ingest.jobs import repair_manifest, run_ingest, verify_collection
from ingest.logs import setup_logging
from ingest.settings import (
    StoreSettings,
    add_embedder_args,
    add_ingest_args,
    add_rebuild_args,
    add_state_args,
    add_store_args,
    ingest_settings,
    store_settings,
)
from ingest.sources import open_source

log = logging.getLogger("ingest")

EXIT_DEAD_LETTERS, EXIT_DRIFT = 3, 4  # and ingest.edge's: 0 done, 1 failed, 2 bad usage, 130 interrupted
COMMANDS = (
    "run",
    "reindex",
    "verify",
    "repair",
    "preflight",
    "rehearse",
    "bench",
    "bench-reindex",
    "bench-tei",
    "bench-quantization",
    "bench-store",
    "bench-faults",
    "bench-index",
    "bench-cpu",
    "bench-scale",
    "bench-bookkeeping",
    "bench-graph",
    "plan",
    "copy",
    "migrate",
)
# Commands with parsers of their own ("module:function"): the rest of the command line goes to them.
DELEGATED = {
    "bench-tei": "ingest.bench.tei_client:main",
    "bench-quantization": "ingest.bench.quantization:main",
    "bench-store": "ingest.bench.store:main",
    "bench-faults": "ingest.bench.faults:main",
    "bench-cpu": "ingest.bench.cpu:main",
    "bench-scale": "ingest.bench.scale:main",
    "bench-bookkeeping": "ingest.bench.bookkeeping:main",
    "bench-graph": "ingest.bench.graph:main",
    "bench-index": "ingest.bench.index:main",
    "plan": "ingest.bench.plan:main",
    "rehearse": "ingest.rehearsal.load:main",
    "copy": "ingest.transfer:copy_main",
    "migrate": "ingest.transfer:migrate_main",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ingest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in DELEGATED:
        commands.add_parser(name, help=f"see python -m ingest {name} --help", add_help=False)
    run = commands.add_parser(
        "run",
        help="ingest a source into a collection (the default command)",
        prog="python -m ingest [run]",
        description=__doc__ + "\n`run`, the default command: chunk, embed and upsert the new and changed articles "
        "of a source (a stopped run\nresumes; a change of model or chunking builds a new collection "
        "and moves the alias onto it).\nPrints a summary line and a report line on stdout.\n\n"
        "  python -m ingest                      # the bundled sample, local model, ./qdrant_data\n"
        "  python -m ingest --limit 100 --collection test\n"
        "  python -m ingest --source wikimedia/wikipedia:20231101.en --qdrant-url http://localhost:6333",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    reindex = commands.add_parser(
        "reindex",
        help="update a collection to a new snapshot, deleting the articles it lacks",
        description="Embed and write only the new and changed articles of the source, delete the chunks "
        "they lost and the articles the source no longer has (never with --limit). Prints the "
        "run's summary and a report line on stdout:\n\n"
        "  articles added 12, changed 98, unchanged 9,873, deleted 50; chunks embedded 131; "
        "points written 131, deleted 74; 9.8 s\n\n"
        "  python -m ingest reindex --source wiki-20231201.parquet\n"
        "  python -m ingest reindex --source ... --chunk-size 500 --drop-old   # a rebuild",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench = commands.add_parser(
        "bench",
        help="embedder-alone throughput beside a whole run, on the same chunks",
        description="Chunks the source once, times the embedder alone on those chunks, then a whole "
        "ingest into a throw-away collection, and prints both (chunks/s) and their ratio.",
    )
    bench.add_argument(
        "--embedder-only", action="store_true", help="time the embedder alone, skip the whole run (no Qdrant needed)"
    )
    bench.add_argument("--repeat", type=int, default=1, help="embed the chunks N times (default 1)")
    bench.add_argument(
        "--dtypes",
        nargs="+",
        choices=("auto", "float32", "float16", "bfloat16"),
        default=(),
        metavar="DTYPE",
        help="measure each of these precisions in turn on the same chunks and "
        "print their ratios to the first, e.g. --dtypes auto float32 "
        "(default: --dtype alone)",
    )
    bench_reindex = commands.add_parser(
        "bench-reindex",
        help="a full ingest beside a reindex of an edited copy of the source",
        description="In one process, into a throw-away store: ingests the source fully, then reindexes a "
        "copy with --edited of its articles edited and --removed removed (seeded), and prints "
        "wall time and chunks embedded of both.",
    )
    bench_reindex.add_argument("--edited", type=float, default=0.01, help="share of articles edited (default 0.01)")
    bench_reindex.add_argument("--removed", type=float, default=0.005, help="share of articles removed (default 0.005)")
    bench_reindex.add_argument("--seed", type=int, default=0, help="which articles (default 0)")
    preflight = commands.add_parser(
        "preflight",
        help="check every assumption of a full run against its TEI and Qdrant",
        description=preflight_job.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    preflight.add_argument("--expect-model", default=None, help="the model id TEI must serve")
    preflight.add_argument("--expect-revision", default=None, help="the model revision TEI must serve")
    preflight.add_argument("--articles", type=int, default=200, help="articles of --source to check with (default 200)")
    preflight.add_argument("--gpus", type=int, default=100, help="GPUs to project the full run on (default 100)")
    preflight.add_argument(
        "--qdrant-seconds",
        type=float,
        default=10.0,
        help="how long to measure Qdrant's write rate (default 10; 0: skip)",
    )
    for sub in (run, reindex, bench, bench_reindex, preflight):
        add_ingest_args(sub)
        add_embedder_args(sub)
        add_store_args(sub)
        if sub in (run, reindex):
            add_state_args(sub)
            add_rebuild_args(sub)
    verify = commands.add_parser(
        "verify",
        help="compare the manifest with the collection; exit 4 on drift",
        description="Reads every point's article id, chunk index and hash (no vectors) and compares them "
        "with the manifest: articles lost, short, extra, of another version, unknown, or left "
        "pending by a stopped run. Exit 0 in sync, 4 on drift (running again what wrote "
        "the collection restores it; repair rebuilds the manifest).",
    )
    repair = commands.add_parser(
        "repair",
        help="rebuild the manifest from the collection",
        description="Replaces the manifest with what the collection's points say: an article whose points "
        "are whole and of one version is recorded as indexed, any other is left pending for the "
        "next run to redo.",
    )
    for sub in (verify, repair):
        add_store_args(sub)
        add_state_args(sub)
    for sub in (run, reindex, bench, bench_reindex, preflight, verify, repair):
        sub.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
        sub.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:  # `--help` too: the commands, then every flag of `run`
        argv.insert(0, "run")
    return run_command("python -m ingest", lambda edge: _command(edge, argv))


def _command(edge: Edge, argv: list[str]) -> int:
    crashpoints.arm_from_env(os.environ)  # a test aid, off unless INGEST_CRASH_AT is set
    if argv[0] in DELEGATED:  # a command with a parser and an edge of its own
        module, function = DELEGATED[argv[0]].split(":")
        return getattr(importlib.import_module(module), function)(argv[1:])
    args = build_parser().parse_args(argv)  # the flags' defaults read the environment: a bad variable is usage
    setup_logging(-1 if args.quiet else args.verbose)
    if args.command in ("verify", "repair"):
        return _state_command(edge, args.command, store_settings(args), args.verbose)
    settings = ingest_settings(args)
    edge.ready(args.verbose, qdrant=settings.store.address if settings.store.qdrant_url else None)
    if args.command == "bench":
        print(run_bench(settings, embedder_only=args.embedder_only, repeat=args.repeat, dtypes=args.dtypes))
        return EXIT_OK
    if args.command == "preflight":
        rows = list(open_source(settings.source_name, limit=args.articles))
        result = preflight_job.run_preflight(
            settings,
            rows,
            expect_model=args.expect_model,
            expect_revision=args.expect_revision,
            gpus=args.gpus,
            qdrant_seconds=args.qdrant_seconds,
        )
        print(preflight_job.report(result))
        return EXIT_OK if result.go else EXIT_FAILED
    if args.command == "bench-reindex":
        print(run_bench_reindex(settings, edited=args.edited, removed=args.removed, seed=args.seed))
        return EXIT_OK
    summary = run_ingest(settings, mode=args.command, confirm=ask_on_terminal)
    print(summary.line() + f"; collection {settings.store.collection} now holds {summary.collection_points:,} points")
    print(summary.report())
    if summary.seeded is not None:
        print(summary.seeded)
    if summary.alias is not None:
        print(summary.alias)
    if summary.failed:
        log.warning("%d inputs failed for good; see %s", summary.failed, summary.dead_letter)
        return EXIT_DEAD_LETTERS
    return EXIT_OK


def console() -> int:
    """`python -m ingest` and the `wiki-ingest` script: `main` with the process's edge (Ctrl-C, a closed pipe)."""
    return edge_console(main)


def ask_on_terminal(question: str) -> bool:
    """A yes/no question for a person at a terminal; no where there is none (a pipe, a scheduled job)."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return False
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _state_command(edge: Edge, command: str, settings: StoreSettings, verbosity: int) -> int:
    edge.ready(verbosity, qdrant=settings.address if settings.qdrant_url else None)
    if command == "repair":
        print(repair_manifest(settings).line())
        return EXIT_OK
    report = verify_collection(settings)
    print("\n".join(report.lines()))
    return EXIT_OK if report.in_sync else EXIT_DRIFT
