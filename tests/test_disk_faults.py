"""The embedded store on a real file system that loses power or fills up: ext4 on a
loop device (tests/loop_disk.py), `python -m ingest` in a subprocess embedding
through the TEI stand-in.

Power cuts: a run is killed at a chosen moment (a crash point) or left to finish,
and the disk is copied at once, as the kernel has it, without what sits unsynced in
the page cache; the command run again on that copy must use or resume it exactly.
Full disks: a run on a disk with too little room ends with one line and exit 1,
and, once there is room, the same command resumes exactly."""

from __future__ import annotations

import os
import re

import pytest

from ingest.store.edge import EdgeStore
from ingest.store.edge_folder import MIN_FREE_MB
from schemas import CollectionSpec
from tests.counting_embedder import SPEC
from tests.fault_runs import expected, ingest, killed, run_args, stored, tei, verify, write_rows  # noqa: F401
from tests.loop_disk import loop_disks  # noqa: F401 - a fixture

RUN_MOMENTS = [
    None,
    "collection-built:1",
    "collection-recorded:1",
    "after-collection:1",
    "upsert:3",
    "before-manifest-write:2",
    "before-alias-switch:1",
]


@pytest.fixture
def rows(sample):
    return [dict(row) for row in sample[:40]]


def test_build_records_and_aliases_survive_a_power_cut_right_after_they_are_written(loop_disks):
    disk = loop_disks("disk", 96)
    store = EdgeStore.open(disk.mount / "qdrant", collection="wiki_v1")
    store.ensure_collection(CollectionSpec(model=SPEC))
    store.point_alias("wiki", "wiki_v1", replace_alias=False)
    after = loop_disks.cut(disk, "after")  # no sync, no wait: the moment the alias is written
    store.close()
    again = EdgeStore.open(after.mount / "qdrant", collection="wiki")
    assert again.resolve("wiki").collection == "wiki_v1"
    assert again.at("wiki_v1").read_spec() == CollectionSpec(model=SPEC)
    again.close()


@pytest.mark.parametrize("moment", RUN_MOMENTS, ids=lambda m: m or "finished")
def test_a_power_cut_at_any_moment_of_a_run_leaves_a_store_the_next_run_resumes_exactly(loop_disks, tei, rows, moment):
    disk = loop_disks("disk", 96)
    write_rows(disk.mount / "rows.jsonl", rows)
    os.sync()  # the source is older than the run
    first = ingest(disk.mount, run_args(tei.url), crash_at=moment)
    assert killed(first) if moment else first.returncode == 0, first.stderr
    after = loop_disks.cut(disk, "after")
    if moment is None:  # a finished run is searchable as it was
        assert stored(after.mount / "qdrant") == expected(rows)
    again = ingest(after.mount, run_args(tei.url))
    assert again.returncode == 0, again.stderr
    assert stored(after.mount / "qdrant") == expected(rows)
    assert verify(after.mount).returncode == 0


@pytest.mark.parametrize("moment", [None, "before-alias-switch:1"], ids=lambda m: m or "switched")
def test_a_power_cut_during_a_rebuild_leaves_the_old_index_or_the_new_one(loop_disks, tei, rows, moment):
    disk = loop_disks("disk", 96)
    write_rows(disk.mount / "rows.jsonl", rows)
    assert ingest(disk.mount, run_args(tei.url)).returncode == 0
    os.sync()  # the first build is old news
    first = ingest(disk.mount, run_args(tei.url, chunk=250), crash_at=moment)  # new chunking: a rebuild
    assert killed(first) if moment else first.returncode == 0, first.stderr
    after = loop_disks.cut(disk, "after")
    assert stored(after.mount / "qdrant") in (expected(rows), expected(rows, chunk=250))
    again = ingest(after.mount, run_args(tei.url, chunk=250))
    assert again.returncode == 0, again.stderr
    assert stored(after.mount / "qdrant") == expected(rows, chunk=250)
    assert verify(after.mount).returncode == 0


def fill(mount, leave_kb: int) -> None:
    """Leave `leave_kb` free on the disk at `mount`, with a file called filler."""
    stat = os.statvfs(mount)
    with open(mount / "filler", "wb") as handle:
        handle.truncate(0)
        handle.write(b"\1" * max(0, stat.f_bavail * stat.f_frsize - leave_kb * 1024))
        os.fsync(handle.fileno())


FULL = re.compile(
    r"ERROR ingest: the disk is full writing qdrant \([\d.]+ MB free, the embedded store needs "
    rf"{MIN_FREE_MB} MB to write safely\): free some space and run the same command again"
)


@pytest.mark.parametrize(
    "leave_kb, what",
    [(100, "before the collection is created"), (MIN_FREE_MB * 1024 + 1500, "part way through the run")],
)
def test_a_full_disk_stops_the_run_with_one_line_and_it_resumes_once_there_is_room(
    loop_disks, tei, sample, leave_kb, what
):
    """Without the margin a full disk killed the run with SIGBUS (exit 135 in a shell, no message)."""
    disk = loop_disks("disk", 128)
    rows = [dict(row) for row in sample[:600]]
    write_rows(disk.mount / "rows.jsonl", rows)
    fill(disk.mount, leave_kb)
    full = ingest(disk.mount, run_args(tei.url))
    assert full.returncode == 1 and FULL.search(full.stderr) and full.stderr.count("\n") == 1, full.stderr
    want = expected(rows)
    if leave_kb > 1000:  # what was written before the disk filled is there, and right
        written = stored(disk.mount / "qdrant", _physical(disk.mount))
        assert 0 < len(written) < len(want) and all(want[pid] == payload for pid, payload in written.items())
    (disk.mount / "filler").unlink()
    again = ingest(disk.mount, run_args(tei.url))
    assert again.returncode == 0, again.stderr
    assert stored(disk.mount / "qdrant") == want
    assert verify(disk.mount).returncode == 0


def _physical(mount) -> str:
    (name,) = [p.name for p in (mount / "qdrant" / "edge" / "shards").iterdir() if not p.name.startswith(".")]
    return name
