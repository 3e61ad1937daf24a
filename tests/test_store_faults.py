"""The embedded store against kills aimed at each step of a collection's creation (by a
run, a copy and a rebuild), against what earlier versions' interrupted creations
left, and against a second process at any moment of a run. Each run is
`python -m ingest` in a subprocess, embedding through the TEI stand-in; crash points
(`ingest.crashpoints`) aim the kills."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import numpy as np
import pytest

from ingest.rehearsal.tei import Faults, TEIServer
from ingest.settings import EmbedderSettings, StoreSettings
from ingest.store.edge import EdgeStore
from schemas import Article, Chunk, CollectionSpec, SparseSpec
from search import Searcher
from tests.counting_embedder import SPEC
from tests.fault_runs import ROOT, env, expected, ingest, killed, run_args, stored, tei, verify, write_rows  # noqa: F401 - tei: a fixture

CREATION = ["collection-built:1", "collection-recorded:1", "after-collection:1"]


@pytest.fixture
def rows(sample):
    return [dict(row) for row in sample[:16]]


@pytest.mark.parametrize("crash_at", CREATION)
def test_a_run_killed_at_each_step_of_creating_its_collection_resumes_exactly(tmp_path, tei, rows, crash_at):
    write_rows(tmp_path / "rows.jsonl", rows)
    first = ingest(tmp_path, run_args(tei.url), crash_at=crash_at)
    assert killed(first), first.stderr
    again = ingest(tmp_path, run_args(tei.url))
    assert again.returncode == 0, again.stderr
    assert stored(tmp_path / "qdrant") == expected(rows)
    assert verify(tmp_path).returncode == 0


@pytest.mark.parametrize("crash_at", [*CREATION[:2], "upsert:1", "before-copy-manifest:1", "before-copy-alias:1"])
def test_a_copy_killed_at_each_step_resumes_exactly(tmp_path, tei, rows, crash_at):
    write_rows(tmp_path / "rows.jsonl", rows)
    assert ingest(tmp_path, run_args(tei.url)).returncode == 0
    copy = ["copy", "--from-path", "qdrant", "--to-path", "copied", "--collection", "wiki", "--no-progress", "-q"]
    first = ingest(tmp_path, copy, crash_at=crash_at)
    assert killed(first), first.stderr
    again = ingest(tmp_path, copy)
    assert again.returncode == 0, again.stderr
    assert stored(tmp_path / "copied") == expected(rows)
    assert verify(tmp_path, "copied").returncode == 0


@pytest.mark.parametrize("crash_at", [*CREATION, "before-alias-switch:1"])
def test_a_rebuild_killed_at_each_step_resumes_exactly_and_keeps_serving_the_old_one(tmp_path, tei, rows, crash_at):
    write_rows(tmp_path / "rows.jsonl", rows)
    assert ingest(tmp_path, run_args(tei.url)).returncode == 0
    first = ingest(tmp_path, run_args(tei.url, chunk=250), crash_at=crash_at)  # new chunking: a rebuild
    assert killed(first), first.stderr
    assert stored(tmp_path / "qdrant") == expected(rows)  # the alias still leads to the old collection
    again = ingest(tmp_path, run_args(tei.url, chunk=250))
    assert again.returncode == 0, again.stderr
    assert stored(tmp_path / "qdrant") == expected(rows, chunk=250)
    assert verify(tmp_path).returncode == 0


def _unrecorded_shard(tmp_path, *, points: int) -> EdgeStore:
    """A shard without a build record, as an earlier version's interrupted creation left it."""
    store = EdgeStore.open(tmp_path / "qdrant", collection="wiki")
    store.ensure_collection(CollectionSpec(model=SPEC))
    if points:
        article = Article("7", "https://en.wikipedia.org/wiki/Seven", "Seven", "Seven is a number.")
        pairs = [(article, Chunk("7", i, f"part {i}", 0, 6, f"part {i}")) for i in range(points)]
        store.upsert_pairs(pairs, np.ones((points, SPEC.dimension), dtype=np.float32))
    store.close()
    (tmp_path / "qdrant" / "edge" / "specs" / "wiki.json").unlink()
    return store


def test_an_empty_shard_without_a_record_is_removed_with_a_message_and_the_run_goes_on(tmp_path, tei, rows):
    _unrecorded_shard(tmp_path, points=0)
    write_rows(tmp_path / "rows.jsonl", rows)
    done = ingest(tmp_path, run_args(tei.url)[:-1])  # not -q: the warning is the point
    assert done.returncode == 0, done.stderr
    assert "an empty collection without a build record" in done.stderr
    assert stored(tmp_path / "qdrant") == expected(rows)


def test_a_shard_with_points_but_no_record_is_refused_naming_the_folder_to_delete(tmp_path, tei, rows):
    _unrecorded_shard(tmp_path, points=3)
    write_rows(tmp_path / "rows.jsonl", rows)
    done = ingest(tmp_path, run_args(tei.url))
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "holds 3 points: delete the folder qdrant/edge/shards/wiki and run again" in done.stderr
    assert (tmp_path / "qdrant" / "edge" / "shards" / "wiki").is_dir()  # nothing is deleted for the user


def test_what_an_interrupted_creation_left_is_swept_by_the_next_process(tmp_path):
    store = EdgeStore.open(tmp_path / "qdrant", collection="wiki")
    store.ensure_collection(CollectionSpec(model=SPEC))
    store.close()
    shards = tmp_path / "qdrant" / "edge" / "shards"
    (shards / ".new-wiki_v2-0123abcd" / "segments").mkdir(parents=True)
    (shards / ".drop-wiki_v0-0123abcd").mkdir()
    again = EdgeStore.open(tmp_path / "qdrant", collection="wiki")
    assert again.count() == 0
    again.close()
    assert sorted(p.name for p in shards.iterdir()) == ["wiki"]


def _write(store: EdgeStore, start: int, count: int) -> None:
    article = Article(str(start), "https://en.wikipedia.org/wiki/T", "T", "text")
    pairs = [(article, Chunk(str(start), i, f"lexical words {i}", 0, 9, f"lexical words {i}")) for i in range(count)]
    store.upsert_pairs(pairs, np.random.default_rng(start).random((count, SPEC.dimension), dtype=np.float32))


INTRUDER = """
import sys
from ingest.errors import StoreLockedError
from ingest.store.edge import EdgeStore
store = EdgeStore.open(sys.argv[1], collection=sys.argv[2] if len(sys.argv) > 2 else "wiki")
try:
    print(store.count())
except StoreLockedError as exc:
    print(exc)
"""


def _intrude(folder, collection: str = "wiki") -> str:
    """What a second process that opens `collection` in `folder` and counts it prints: the count, or its refusal."""
    return subprocess.run(
        [sys.executable, "-c", INTRUDER, str(folder), collection],
        cwd=ROOT,
        env=env(),
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout


def test_a_second_process_is_refused_and_never_harms_the_writer(tmp_path):
    """qdrant-edge-py 0.9.0's refused `EdgeShard.load` deletes the holder's tracker journals
    (docs/upstream-bugs.md): without the project's own lock, the writer's next flush fails."""
    store = EdgeStore.open(tmp_path / "qdrant", collection="wiki")
    store.ensure_collection(CollectionSpec(model=SPEC, sparse=SparseSpec()))
    _write(store, 1, 300)
    store.flush()  # the tracker journals exist now
    intruder = _intrude(tmp_path / "qdrant")
    assert "in use by another process (pid" in intruder, intruder
    assert "pytest" in intruder  # the holder's command
    _write(store, 2, 300)
    store.flush()
    assert store.count() == 600
    store.close()
    assert _intrude(tmp_path / "qdrant").strip() == "600"  # closed: the lock is let go


def test_stores_of_one_folder_in_one_process_share_it(tmp_path):
    first = EdgeStore.open(tmp_path / "qdrant", collection="wiki")
    first.ensure_collection(CollectionSpec(model=SPEC))
    _write(first, 1, 5)
    second = EdgeStore.open(tmp_path / "qdrant", collection="wiki")
    assert second.count() == 5
    first.close()
    assert second.count() == 5  # the other store still holds the folder
    assert "in use by another process" in _intrude(tmp_path / "qdrant")
    second.close()
    assert _intrude(tmp_path / "qdrant").strip() == "5"


def test_two_searchers_of_one_folder_in_one_program_both_answer(tmp_path, tei, rows):
    """Issue 19: the second retriever of a program was told the folder was "in use by another process"."""
    write_rows(tmp_path / "rows.jsonl", rows)
    assert ingest(tmp_path, run_args(tei.url)).returncode == 0
    store = StoreSettings(qdrant_path=str(tmp_path / "qdrant"), collection="wiki")
    embedder = EmbedderSettings(embedder="tei", tei_url=tei.url)
    first, second = Searcher.open(store, embedder), Searcher.open(store, embedder)
    assert first.search(rows[0]["title"], k=1)[0].title == second.search(rows[0]["title"], k=1)[0].title
    first.close()
    assert second.search(rows[1]["title"], k=1)[0].title == rows[1]["title"]
    second.close()
    assert ingest(tmp_path, run_args(tei.url)).returncode == 0  # both closed: the folder is free


@pytest.mark.slow
def test_second_processes_at_every_moment_of_a_run_never_harm_it(tmp_path, sample):
    """Intruders (`verify`, a `copy`, a bare open of the store) start one after another
    for as long as a run writes, from its collection's creation to its alias, and a second
    run: each is refused, naming the run; the run ends with exactly its points."""
    rows = [dict(row) for row in sample[:60]]
    write_rows(tmp_path / "rows.jsonl", rows)
    slow = TEIServer(model_id="BAAI/bge-small-en-v1.5", record_texts=False, faults=Faults(slow_rate=1.0, delay=1.0))
    with slow:
        writer = subprocess.Popen(
            [sys.executable, "-m", "ingest", *run_args(slow.url)],
            cwd=tmp_path,
            env=env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        refused = _intrude_while(writer, tmp_path, slow.url)
        out, err = writer.communicate()
    assert writer.returncode == 0, err
    assert refused >= 3
    assert stored(tmp_path / "qdrant") == expected(rows)
    assert verify(tmp_path).returncode == 0


def _intrude_while(writer: subprocess.Popen, tmp_path, tei_url: str) -> int:
    """Intruders at the collection the writer writes (its physical name, once it has one)
    until it ends; how many were refused naming it."""
    refused = 0
    shards = tmp_path / "qdrant" / "edge" / "shards"
    while writer.poll() is None:
        names = [p.name for p in shards.iterdir() if not p.name.startswith(".")] if shards.is_dir() else []
        name = names[0] if names else "wiki"
        for args in (
            ["verify", "--qdrant-path", "qdrant", "--collection", name, "-q"],
            [
                "copy",
                "--from-path",
                "qdrant",
                "--to-path",
                f"copy-{uuid.uuid4().hex[:6]}",
                "--collection",
                name,
                "--no-progress",
                "-q",
            ],
            run_args(tei_url),
        ):
            done = ingest(tmp_path, args)
            assert done.returncode in (0, 1, 4) and "Traceback" not in done.stderr, done.stderr
            refused += f"(pid {writer.pid}, `" in done.stderr and "-m ingest run`" in done.stderr
        refused += f"(pid {writer.pid}," in _intrude(tmp_path / "qdrant", name)
        time.sleep(0.05)
    return refused
