"""`python -m ingest bench-scale`: the embedded default's growth curve.

For each size, in a process of its own (so that its peak memory is its own): N distinct
one-chunk articles through an instant TEI-protocol server into a fresh embedded store
with the default command's pipeline (`run_ingest`), then hybrid searches as `Searcher`
makes them, `verify`, and the same run again (nothing changed: nothing embedded). The
embedder costs next to nothing, so what grows is the store and the bookkeeping. The
server answers each text with its own vector with real structure (`ingest.bench.vectors`:
the bundled model's vector of the sample lead it copies, plus noise), so that the search
index is built and searched as on real data.

    python -m ingest bench-scale                            # 10,000, 100,000 and 1,000,000 points
    python -m ingest bench-scale --points 10000 100000

Columns: the whole run's points/s (everything before it returns, its index builds
included); the time the run spent building the search index (`ingest.store.edge_index`:
in the middle of a long load and at its end; none below `INDEX_FROM` points, searched
exactly); hybrid search p50/p95, embedding included; recall@10 of those searches against
the same searches scored exactly; the peak resident memory of the measuring process (the
run, the searches, verify and the re-run; the exact scoring comes after, since it pages in
every vector's original) and of the largest index build's process (they do not overlap:
the run closes its shard while a build runs, and holds ~0.3 GiB then);
the store's and manifest's size on disk; verify's and the unchanged re-run's wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from ingest.bench.store import bench_settings, exact_recall, measure, write_articles
from ingest.bench.tei_client import InstantServer
from ingest.edge import command
from ingest.errors import SettingsError
from ingest.jobs import run_ingest, verify_collection
from ingest.sources import sample_rows

PROG = "python -m ingest bench-scale"
SIZES = (10_000, 100_000, 1_000_000)
COLUMNS = (
    "points",
    "points/s",
    "index build",
    "hybrid p50",
    "p95",
    "recall@10",
    "run RSS",
    "build RSS",
    "disk",
    "verify",
    "re-run",
)


def one_size(points: int, queries: int, folder: Path) -> dict:
    """Everything measured at one size, in this process (the child's side)."""
    server = InstantServer.start(max_batch=512, wide_floats=False, structured=min(points, len(sample_rows())))
    try:
        source = folder / "articles.jsonl"
        titles = write_articles(source, points)
        queries = min(queries, points - 1)
        measured = measure(source, titles, server.url, queries, folder, optimize=False, exact=False)
        row = measured.row
        # the index build's process (ingest.store.edge_index), reaped by now; the server is still running
        row["build_rss_bytes"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        settings = bench_settings(source, server.url, folder)  # the run's own: the re-run changes nothing
        started = time.perf_counter()
        report = verify_collection(settings.store)
        row["verify_s"] = time.perf_counter() - started
        row["in_sync"] = report.in_sync
        started = time.perf_counter()
        again = run_ingest(settings)
        row["rerun_s"] = time.perf_counter() - started
        row["rerun_written"] = again.points_written
        row["run_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        # Last, since scoring every point exactly reads every vector's original (each dense vector's
        # file, paged in): the measuring instrument's memory, not the run's or a search's.
        row["recall"] = exact_recall(settings, titles, queries, measured.ranked)
        row["exact_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    finally:
        server.stop()
    row["disk_bytes"] = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and p.name != "articles.jsonl")
    return row


def run_child(points: int, queries: int) -> dict:
    """`one_size` in a child process; its peak resident memory from the kernel's account of it."""
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as scratch:
        child = subprocess.Popen(
            [sys.executable, "-m", "ingest.bench.scale", "--child", str(points), "--queries", str(queries), scratch],
            stdout=subprocess.PIPE,
            text=True,
        )
        with child.stdout:
            out = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise SettingsError(f"the {points:,}-point run failed (exit {child.returncode}); run it with -v")
    row = json.loads(out.strip().splitlines()[-1])
    row["peak_rss_bytes"] = usage.ru_maxrss * 1024  # kilobytes on Linux; the largest of the child's processes
    return row


def table(rows: Sequence[dict]) -> str:
    cells = [
        (
            f"{r['points']:,}",
            f"{r['points_per_s']:,.0f}",
            f"{r['index_s']:.1f} s" if r["index_s"] >= 0.5 else "none (exact)",
            f"{r['median_ms']:.1f} ms",
            f"{r['p95_ms']:.1f} ms",
            f"{r['recall']:.3f}",
            f"{r['run_rss_bytes'] / 2**30:.2f} GiB",
            f"{r['build_rss_bytes'] / 2**30:.2f} GiB" if r["index_s"] >= 0.5 else "-",
            f"{r['disk_bytes'] / 2**20:,.0f} MiB",
            f"{r['verify_s']:.1f} s" + ("" if r["in_sync"] else " (drift!)"),
            f"{r['rerun_s']:.1f} s" + ("" if r["rerun_written"] == 0 else f" ({r['rerun_written']:,} written!)"),
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(COLUMNS)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(COLUMNS, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, nargs="+", default=list(SIZES), help="sizes (default: %(default)s)")
    parser.add_argument("--queries", type=int, default=200, help="hybrid searches timed at each size (default 200)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    return parser


def _check(args: argparse.Namespace) -> None:
    if min(args.points) < 2 or args.queries < 1:
        raise SettingsError("each of --points must be at least 2, and --queries at least 1")


def _bench(args: argparse.Namespace) -> int:
    rows = []
    for points in args.points:
        rows.append(run_child(points, args.queries))
        print(f"{points:,} points measured", file=sys.stderr, flush=True)
    print(f"one-chunk articles through an instant TEI server into the embedded store ({os.cpu_count()} cores)")
    print(table(rows))
    print(
        "the recall check's exact scoring, after the rest (it reads every vector's original): peak "
        + ", ".join(f"{r['exact_rss_bytes'] / 2**30:.2f} GiB at {r['points']:,}" for r in rows)
    )
    return 0


main = command(PROG, build_parser, _bench, check=_check)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:  # one size, measured in this process: a JSON line on stdout
        size, queries, scratch = int(sys.argv[2]), int(sys.argv[4]), Path(sys.argv[5])
        print(json.dumps(one_size(size, queries, scratch)))
        sys.exit(0)
    sys.exit(main())
