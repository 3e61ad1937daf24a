"""Kill and resume: `python -m ingest` in a subprocess, embedding through the loopback
TEI server, is killed with SIGKILL at several points (early, just before a manifest
write, mid-batch from outside, during an upsert, before the alias is created); after
each kill the manifest claims nothing the collection lacks, and the run started
again ends with exactly the expected points, once each, having redone no finished
article. Crash points are armed through INGEST_CRASH_AT (`ingest.crashpoints`)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys

import pytest

from ingest.chunking import Chunker, ChunkingSettings
from ingest.embedders.tei import TEIEmbedder
from ingest.jobs import run_ingest, verify_collection
from ingest.rehearsal.tei import TEIServer
from ingest.settings import EmbedderSettings, IngestSettings, StoreSettings
from ingest.store import open_live
from ingest.store.edge import EdgeStore
from schemas import Article, PointPayload, point_id

CHUNKING = ChunkingSettings(max_chars=300)
WINDOW = 8


@pytest.fixture(scope="module")
def server():
    with TEIServer(model_id="BAAI/bge-small-en-v1.5", record_texts=False) as server:
        yield server


@pytest.fixture
def rows(sample):
    return [dict(row) for row in sample[:24]]


def expected(rows) -> dict[str, dict]:
    chunker = Chunker(CHUNKING, max_tokens=512)
    return {
        c.point_id: PointPayload.build(a, c).to_dict() for a in map(Article.from_row, rows) for c in chunker.chunks(a)
    }


def settings_for(tmp_path, source, url) -> IngestSettings:
    return IngestSettings(
        source=source,
        progress=False,
        window=WINDOW,
        chunking=CHUNKING,
        dead_letter=str(tmp_path / "dl.jsonl"),
        embedder=EmbedderSettings(embedder="tei", tei_url=url),
        store=StoreSettings(qdrant_path=str(tmp_path / "qdrant"), collection="wiki"),
    )


def run_killed(tmp_path, server, source, *, crash_at=None, kill_at_request=None, command="run"):
    """`python -m ingest` until it is killed; fails if it finishes instead."""
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "USE_TORCH": "0"}  # datasets need not import torch
    if crash_at:
        env["INGEST_CRASH_AT"] = crash_at
    args = [
        sys.executable,
        "-m",
        "ingest",
        command,
        "--source",
        source,
        "--embedder",
        "tei",
        "--tei-url",
        server.url,
        "--qdrant-path",
        "qdrant",
        "--collection",
        "wiki",
        "--window",
        str(WINDOW),
        "--chunk-size",
        str(CHUNKING.max_chars),
        "--no-progress",
        "--dead-letter",
        "dl.jsonl",
        "-q",
    ]
    child = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    original, requests = server._vectors, []
    if kill_at_request is not None:

        def kill_then_answer(texts):  # the child waits for this answer: killed mid-batch
            requests.append(len(texts))
            if len(requests) == kill_at_request:
                os.kill(child.pid, signal.SIGKILL)
            return original(texts)

        server._vectors = kill_then_answer
    try:
        out, err = child.communicate(timeout=120)
    finally:
        server._vectors = original
    assert child.returncode == -signal.SIGKILL, f"not killed ({child.returncode}): {err}{out}"


def manifest_state(tmp_path) -> tuple[dict[str, int], int]:
    """Finished articles (id -> chunk count) and pending ones, read straight from the file."""
    (path,) = (tmp_path / "qdrant-state").glob("*.sqlite")
    db = sqlite3.connect(path)
    try:
        done = dict(db.execute("SELECT article_id, chunk_count FROM articles WHERE pending = 0"))
        pending = db.execute("SELECT count(*) FROM articles WHERE pending = 1").fetchone()[0]
    finally:
        db.close()
    return done, pending


def assert_consistent_after_a_crash(tmp_path):
    """Whatever the manifest says is finished is in the collection, exactly."""
    report = verify_collection(_physical_settings(tmp_path))
    found = report.comparison
    assert (found.lost.count, found.short.count, found.extra.count, found.stale.count) == (0, 0, 0, 0), report.lines()


def _physical_settings(tmp_path) -> StoreSettings:
    (path,) = (tmp_path / "qdrant-state").glob("*.sqlite")
    return StoreSettings(qdrant_path=str(tmp_path / "qdrant"), collection=path.stem)


def stored_points(tmp_path) -> tuple[list[str], dict[str, dict]]:
    """Every point's id and payload, read through the store interface."""
    store = open_live(StoreSettings(qdrant_path=str(tmp_path / "qdrant"), collection="wiki"))
    try:
        ids = [point_id(ref.article_id, ref.chunk_index) for page in store.scan_chunks() for ref in page]
        return ids, store.payloads(ids)
    finally:
        store.close()


@pytest.mark.slow
def test_killed_at_every_stage_the_resumed_run_ends_with_exactly_the_expected_points(tmp_path, server, rows):
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    want = expected(rows)
    assert len(want) > 6 * WINDOW  # enough windows for every crash to land mid-run

    run_killed(tmp_path, server, "rows.jsonl", crash_at="after-collection:1")  # nothing written
    done, _ = manifest_state(tmp_path)
    assert done == {}
    run_killed(tmp_path, server, "rows.jsonl", crash_at="before-manifest-write:2")
    done, pending = manifest_state(tmp_path)
    assert done and pending  # a window landed, the next was acknowledged but not recorded
    assert_consistent_after_a_crash(tmp_path)
    run_killed(tmp_path, server, "rows.jsonl", kill_at_request=3)  # mid-batch, from outside
    assert_consistent_after_a_crash(tmp_path)
    run_killed(tmp_path, server, "rows.jsonl", crash_at="upsert:2:0.003")  # during an upsert
    assert_consistent_after_a_crash(tmp_path)
    run_killed(tmp_path, server, "rows.jsonl", crash_at="before-alias-switch:1")  # no alias yet
    done, pending = manifest_state(tmp_path)
    assert len(done) == len(rows) and pending == 0

    resumed = resume(tmp_path, server)
    assert (resumed.unchanged, resumed.chunks, server.received.inputs) == (len(rows), 0, 1)  # the smoke query
    assert resumed.alias == f"wiki now leads to {resumed.collection}"
    ids, payloads = stored_points(tmp_path)
    assert len(ids) == len(set(ids)) == len(want) and payloads == want


def resume(tmp_path, server):
    """The run after a kill, in-process, with the server's counters reset."""
    embedder = TEIEmbedder(server.url)
    try:
        server.reset()
        return run_ingest(settings_for(tmp_path, str(tmp_path / "rows.jsonl"), server.url), embedder=embedder)
    finally:
        embedder.close()


@pytest.mark.slow
def test_work_redone_after_a_kill_is_bounded_by_what_was_in_flight(tmp_path, server, rows):
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    server.reset()
    run_killed(tmp_path, server, "rows.jsonl", crash_at="before-manifest-write:3")
    sent_before = server.received.inputs - 1  # less the embedder's one-word probe
    done, _ = manifest_state(tmp_path)
    chunker = Chunker(CHUNKING, max_tokens=512)
    counts = {row["id"]: sum(1 for _ in chunker.chunks(Article.from_row(row))) for row in rows}
    finished = sum(counts[i] for i in done)
    assert done and all(counts[i] == n for i, n in done.items())

    resumed = resume(tmp_path, server)
    assert resumed.unchanged == len(done)  # no finished article is touched again
    assert resumed.chunks == sum(counts.values()) - finished
    redone = resumed.embedded - (sum(counts.values()) - sent_before)  # embedded twice, in all
    in_flight = 6 * WINDOW + max(counts.values())  # windows the stages and queues hold, and one article
    assert 0 <= redone <= in_flight
    ids, payloads = stored_points(tmp_path)
    assert len(ids) == len(set(ids)) and payloads == expected(rows)


def test_a_reindex_that_loses_qdrant_while_deleting_finishes_on_the_next_run(tmp_path, server, rows, monkeypatch):
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    settings = settings_for(tmp_path, str(source), server.url)
    embedder = TEIEmbedder(server.url)
    try:
        run_ingest(settings, embedder=embedder)
        source.write_text("".join(json.dumps(r) + "\n" for r in rows[:-3]))
        original = EdgeStore.delete_articles

        def lose_network(self, ids):
            original(self, ids[:1])  # one article's points go, then the connection drops
            raise ConnectionError("Qdrant went away")

        monkeypatch.setattr(EdgeStore, "delete_articles", lose_network)
        with pytest.raises(ConnectionError):
            run_ingest(settings, embedder=embedder, mode="reindex")
        monkeypatch.setattr(EdgeStore, "delete_articles", original)
        again = run_ingest(settings, embedder=embedder, mode="reindex")
    finally:
        embedder.close()
    assert again.deleted == 3 and again.chunks == 0
    ids, payloads = stored_points(tmp_path)
    assert payloads == expected(rows[:-3])
