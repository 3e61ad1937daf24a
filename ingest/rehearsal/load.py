"""`python -m ingest rehearse`: the sharded load on this machine, before paying for GPUs.

The same driver as `modal run -m ingest.modal_app` (`ingest.sharded.driver.run_load`),
with Modal's fan-out replaced by a local pool: `--workers` workers, each a
`ingest.sharded.worker.Worker` with its own TEI-protocol server (by default
`ingest.rehearsal.tei`, deterministic vectors, started the way TEI is started; or a
real `text-embeddings-router` with `--tei-command`), each running
`--shards-per-worker` shards at once as a Modal container does. They write to the
configured store: as threads of this process for the embedded store (one process
holds its folder), as processes of their own for a Qdrant server (`--qdrant-url`).
A worker whose TEI reports itself broken, or that died, is replaced by a new one,
as Modal replaces a container; the driver retries what failed, round after round.

Faults (`--faults`, each on one worker, from its start):

- `429-storm`: its TEI answers 60% of embedding requests 429;
- `sick-gpu`: its TEI's backend breaks after a few requests (every request 424, its
  health check 503);
- `dead-router`: its TEI process aborts after a few requests;
- `killed-worker`: the worker dies as soon as it holds two shards (they come back as
  nothing, as a lost container's shards do).

The report is the Modal run's, and the collection's point set is summed up in a
digest of every point's id and the hashes of its text and its article: two
rehearsals of the same corpus that end with the same digest hold the same points,
once each (and so the same vectors: the stand-in's follow from the text).

  python -m ingest rehearse                                   # the bundled sample, 4 workers
  python -m ingest rehearse --articles 2000 --faults sick-gpu,dead-router,429-storm
  python -m ingest rehearse --limit 500                       # the trial: builds <collection>-trial
  python -m ingest rehearse --qdrant-url http://localhost:6333 --workers 8   # processes against a server

Exit codes: 0 the load switched the alias; 1 it did not (the report says why); 2 bad usage.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from ingest.edge import Edge, run_command
from ingest.errors import SettingsError
from ingest.logs import setup_logging
from ingest.rehearsal.fleet import FAULTS, FleetConfig, LocalFleet, point_set_digest
from ingest.settings import STORE, StoreSettings, add_flags, store_settings
from ingest.sharded.driver import A10G_PRICE_PER_HOUR, LoadRequest, load_report, run_load, write_dead_letters
from ingest.sharded.records import run_key
from ingest.sources import open_source

log = logging.getLogger(__name__)

PROG = "python -m ingest rehearse"


# -- the command -----------------------------------------------------------------------------
def save_dataset(source: str, articles: int | None, folder: Path) -> tuple[str, int]:
    """The source as a `save_to_disk` dataset (what the workers read), and its rows."""
    import datasets  # heavy (pyarrow): only to save the corpus as the workers read it

    datasets.disable_progress_bars()
    rows = [dict(row) for row in open_source(source, limit=articles)]
    path = folder / "dataset"
    datasets.Dataset.from_list(rows).save_to_disk(str(path))
    return str(path), len(rows)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", default="sample", help="what to load (default: the bundled sample)")
    parser.add_argument("--articles", type=int, default=None, help="the source's first N articles are the corpus")
    parser.add_argument("--limit", type=int, default=0, help="a trial on the first N: built as <collection>-trial")
    parser.add_argument("--workers", type=int, default=4, help="workers, each with its own TEI (default %(default)s)")
    parser.add_argument("--shards-per-worker", type=int, default=2, help="shards a worker runs at once (default 2)")
    parser.add_argument("--shard-size", type=int, default=250, help="articles a shard (default %(default)s)")
    parser.add_argument("--window", type=int, default=256, help="chunks per embedder call (default %(default)s)")
    parser.add_argument("--max-rounds", type=int, default=3, help="rounds of retries (default %(default)s)")
    parser.add_argument("--chunk-size", type=int, default=1000, help="characters a chunk at most (default 1000)")
    parser.add_argument("--sparse", choices=("bm25", "none"), default="bm25", help="lexical vectors (default bm25)")
    parser.add_argument("--faults", default="", help=f"comma-separated, one worker each: {', '.join(FAULTS)}")
    parser.add_argument("--fresh", action="store_true", help="ignore what an earlier attempt finished")
    parser.add_argument("--drop-old", action="store_true", help="delete the collection this one replaces")
    parser.add_argument(
        "--tei-command",
        default="",
        help="the argv prefix of a real TEI router (e.g. text-embeddings-router); default: the stand-in",
    )
    parser.add_argument("--tei-tokenizer", default=None, help="the served model's tokenizer.json, for the chunker")
    parser.add_argument("--dead-letter", default="rehearsal_dead_letter.jsonl", help="where dead letters go")
    parser.add_argument(
        "--state-dir",
        default=None,
        help="where the shard records and manifests go, the state Volume's part (default: next "
        "to --qdrant-path, or ./rehearsal-state)",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output; -v: tracebacks")
    # a folder of its own unless QDRANT_PATH names one: a rehearsal is not the production store
    add_flags(
        parser.add_argument_group("store (Qdrant)"), StoreSettings, (STORE,), defaults={"qdrant_path": "rehearsal_data"}
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(PROG, lambda edge: _rehearse(edge, build_parser().parse_args(argv)))


def _rehearse(edge: Edge, args: argparse.Namespace) -> int:
    setup_logging(args.verbose - 1)
    faults = tuple(f.strip() for f in args.faults.split(",") if f.strip())
    unknown = [f for f in faults if f not in FAULTS]
    if unknown or len(faults) > args.workers:
        raise SettingsError(
            f"--faults {args.faults!r}: each of {', '.join(FAULTS)}, at most one per worker"
            + (f" (unknown: {', '.join(unknown)})" if unknown else "")
        )
    if min(args.workers, args.shards_per_worker, args.shard_size, args.window, args.max_rounds) < 1:
        raise SettingsError(
            "--workers, --shards-per-worker, --shard-size, --window and --max-rounds must be at least 1"
        )
    store = store_settings(args)
    edge.ready(args.verbose, qdrant=store.address if store.qdrant_url else None)
    state = Path(args.state_dir or (f"{args.qdrant_path}-state" if not store.qdrant_url else "rehearsal-state"))
    scratch = Path(tempfile.mkdtemp(prefix="rehearsal-"))
    fleet = None
    try:
        dataset, rows = save_dataset(args.source, args.articles, scratch)
        if args.limit:
            rows = min(rows, args.limit)
        config = FleetConfig(
            args.workers,
            args.shards_per_worker,
            faults,
            tuple(args.tei_command.split()),
            args.tei_tokenizer,
            processes=bool(store.qdrant_url),
            state_dir=state,
        )
        request = LoadRequest(
            dataset=dataset,
            rows=rows,
            key=run_key(f"rehearsal-{args.source}", rows, args.shard_size),
            collection=args.collection,
            snapshot="rehearsal",
            layout={"max_chars": args.chunk_size, "overlap_chars": 0, "title_prefix": True, "sparse": args.sparse},
            shard_size=args.shard_size,
            window=args.window,
            max_rounds=args.max_rounds,
            trial=bool(args.limit),
            drop_old=args.drop_old,
            fresh=args.fresh,
            gpus=args.workers,
            price_per_gpu_hour=A10G_PRICE_PER_HOUR,
            dead_letter=args.dead_letter,
        )
        print(
            f"{rows:,} articles in shards of {args.shard_size:,} on {args.workers} workers "
            f"({'processes' if config.processes else 'threads'}, {args.shards_per_worker} shards each at once)"
            + (f"; faults: {', '.join(faults)}" if faults else ""),
            file=sys.stderr,
        )
        fleet = LocalFleet(config, store)
        outcome = run_load(fleet, request, out=lambda line: print(line, file=sys.stderr))
        if appended := write_dead_letters(args.dead_letter, outcome):
            print(f"{appended:,} dead letters appended to {args.dead_letter}", file=sys.stderr)
        if outcome.switched:
            print(outcome.switched)
        print(load_report(outcome, request))
        if fleet.replaced:
            print(f"workers replaced     {fleet.replaced}")
        if outcome.ok:
            live = fleet._store().at(fleet._store().resolve(request.name).collection)
            points, digest = point_set_digest(live)
            print(f"point set            {points:,} points, digest {digest}")
            return 0
        print(f"{PROG}: {outcome.problem}", file=sys.stderr)
        return 1
    finally:
        if fleet is not None:
            fleet.close()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
