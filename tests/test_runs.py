"""ingest.sharded's records, Volume state and reindex (what the Modal app wraps, run here without Modal) and the
bench-reindex command: shard records on a Volume folder, the scheduled reindex
with its manifest copied from and checkpointed to a Volume, the snapshot choice."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import replace

import pytest

from ingest.bench.reindex import edit_snapshot, run_bench_reindex
from ingest.chunking import ChunkingSettings
from ingest.definitions import definition_text
from ingest.errors import RebuildError, SettingsError
from ingest.jobs import run_ingest
from ingest.pipeline.summary import RunSummary
from ingest.settings import IngestSettings, StoreSettings
from ingest.sharded.records import ShardRecords, run_key
from ingest.sharded.reindex import VolumeState, newest_snapshot, reindex_snapshot
from ingest.sharded.shard import ShardResult
from ingest.state.manifest import Manifest, ManifestRow
from tests.counting_embedder import CountingEmbedder


def test_the_newest_configured_snapshot_is_picked_by_its_date():
    assert newest_snapshot(["20231101.en", "20240301.en", "20231201.en"]) == "20240301.en"
    with pytest.raises(SettingsError, match="starts with a date"):
        newest_snapshot(["latest"])
    assert run_key("20231101.en", 6_407_814, 5_000) == "20231101.en-6407814-5000"


def test_shard_records_are_written_whole_read_back_and_merged(tmp_path):
    records = ShardRecords(tmp_path / "runs" / "wiki-1" / "key")
    assert records.finished() == []
    result = ShardResult(0, 10, RunSummary(articles=10, points_written=25), [{"kind": "article"}])
    records.write(result, [ManifestRow("a", "h1", 2), ManifestRow("b", "h2", 3, rejected=1)])
    (records.folder / "000000000010-000000000020.json").write_text('{"result": {"sta')  # torn by a crash
    assert records.finished() == [result]
    manifest = Manifest.memory()
    assert records.merge_into(manifest) == 2
    assert manifest.lookup(["b"])["b"].expected_points == 2
    records.clear()
    assert records.finished() == [] and not records.folder.exists()


def test_records_written_before_results_carried_a_summary_still_read(tmp_path):
    flat = {
        "start": 0,
        "stop": 10,
        "articles": 10,
        "skipped_empty": 0,
        "invalid": 1,
        "chunks": 30,
        "characters": 900,
        "points_written": 29,
        "rejected": 1,
        "dead_letters": [{"kind": "chunk"}],
        "seconds": 2.0,
        "embed_seconds": 1.5,
    }
    result = ShardResult.from_dict(flat)
    assert (result.shard, result.summary.points_written, result.summary.rejected_chunks) == ((0, 10), 29, 1)
    assert result.dead_letters == [{"kind": "chunk"}]
    assert ShardResult.from_dict(result.to_dict()) == result


def test_the_scheduled_reindex_works_on_a_copy_of_the_volumes_manifest(tmp_path, sample):
    rows = [dict(row) for row in sample[:8]]
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    volume, commits = tmp_path / "volume" / "manifests", []
    settings = IngestSettings(
        source="unused",
        progress=False,
        chunking=ChunkingSettings(max_chars=300),
        dead_letter=str(tmp_path / "dl.jsonl"),
        store=StoreSettings(qdrant_path=str(tmp_path / "qdrant"), collection="wiki"),
    )
    with pytest.raises(RebuildError, match="does not exist.*takes the sharded load"):  # never a whole build
        reindex_snapshot(
            str(source),
            settings,
            state=VolumeState(volume, tmp_path / "local1", commits.append),
            embedder=CountingEmbedder(),
        )
    first = run_ingest(replace(settings, source=str(source)), embedder=CountingEmbedder())  # the first build
    volume.mkdir(parents=True)
    for path in (tmp_path / "qdrant-state").glob("*.sqlite"):  # its manifest, on the Volume
        with open_as_written(path) as manifest:
            manifest.backup_to(volume / path.name)
    (volume / "wiki-0ther000.sqlite").write_bytes(b"another collection's manifest: not this reindex's")
    state = VolumeState(volume, tmp_path / "local2", lambda: commits.append("commit"))
    source.write_text("".join(json.dumps(r) + "\n" for r in rows[1:]))
    embedder = CountingEmbedder()
    summary = reindex_snapshot(str(source), settings, state=state, embedder=embedder)
    assert (summary.deleted, summary.unchanged, embedder.calls) == (1, len(rows) - 1, 0)
    assert commits == ["commit", "commit"]  # checkpointed on close, then one whole copy at the end
    with open_as_written(volume / f"{first.collection}.sqlite") as manifest:
        assert manifest.count() == len(rows) - 1  # the Volume's copy is up to date
    assert not list(volume.glob("*.journal-*"))
    assert not (tmp_path / "local2" / "wiki-0ther000.sqlite").exists()  # only the live collection's is pulled


def test_a_checkpoint_copies_what_changed_and_a_pull_puts_it_back_together(tmp_path):
    """The whole manifest is copied once; later checkpoints write only the rows changed
    since (a week's reindex changes a few percent of 6.4M), and a container that starts
    after a crash rebuilds the exact manifest from the whole copy and the journals."""
    from ingest.sharded.reindex import VolumeState
    from ingest.state.manifest import ManifestRow

    commits: list[str] = []
    volume = tmp_path / "volume"
    state = VolumeState(volume, tmp_path / "local", lambda: commits.append("commit"))
    manifest = Manifest.open(
        tmp_path / "local" / "wiki-1.sqlite",
        collection="wiki-1",
        fingerprint="f",
        store="s",
        checkpoint=state.checkpoint,
        checkpoint_every=3600,
    )
    earlier = time.time() - 600  # written ten minutes before the checkpoints below
    manifest.complete([ManifestRow(str(i), f"h{i}", 2, updated_at=earlier) for i in range(20_000)])
    manifest.checkpoint()  # the first: a whole copy
    state.since["wiki-1"] = earlier + 5  # as if it had been taken then
    whole = (volume / "wiki-1.sqlite").stat().st_size
    manifest.complete([ManifestRow(str(i), f"new{i}", 3) for i in range(100)])  # 100 edited
    manifest.remove(["19998", "19999"])  # 2 gone
    manifest.mark_pending(["20001"])  # a new one, being written
    manifest.checkpoint()
    (journal,) = volume.glob("wiki-1.journal-*.sqlite")
    assert journal.stat().st_size < whole / 20 and len(commits) == 2
    expected = list(manifest.rows())  # in article id order
    manifest.close()  # not dirty: no checkpoint, the crash comes now

    fresh = VolumeState(volume, tmp_path / "elsewhere", lambda: None)
    fresh.pull("wiki-1")
    with Manifest.open(
        tmp_path / "elsewhere" / "wiki-1.sqlite", collection="wiki-1", fingerprint="f", store="s"
    ) as pulled:
        assert list(pulled.rows()) == expected and pulled.count() == 20_000 - 2 + 1
        assert pulled.lookup(["5"])["5"].article_hash == "new5" and pulled.pending_ids() == ["20001"]
    fresh.consolidate("wiki-1")
    assert not list(volume.glob("*.journal-*"))  # one whole copy again
    fresh.forget("wiki-1")
    assert not list(volume.iterdir())  # a dropped collection's manifest leaves the Volume


def open_as_written(path) -> Manifest:
    """A manifest file opened with the identity it records."""
    db = sqlite3.connect(path)
    try:
        meta = dict(db.execute("SELECT key, value FROM meta"))
    finally:
        db.close()
    return Manifest.open(path, collection=meta["collection"], fingerprint=meta["fingerprint"], store=meta["store"])


def test_edited_snapshots_for_the_bench_are_seeded(sample):
    rows = sample[:200]
    snapshot, edited, removed = edit_snapshot(rows, edited=0.05, removed=0.02, seed=3)
    assert (edited, removed, len(snapshot)) == (10, 4, 196)
    assert sum(a["text"] != b["text"] for a, b in zip(rows, snapshot) if a["id"] == b["id"]) <= 10
    assert edit_snapshot(rows, edited=0.05, removed=0.02, seed=3)[0] == snapshot


def test_bench_reindex_prints_both_runs_side_by_side(tmp_path, sample):
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in sample[:40]))
    settings = IngestSettings(source=str(source), chunking=ChunkingSettings(max_chars=300))
    embedder = CountingEmbedder()
    text = run_bench_reindex(settings, edited=0.1, removed=0.05, seed=1, embedder=embedder)
    lines = text.splitlines()
    assert lines[0].startswith(
        "40 articles, model test/deterministic; the second snapshot has 4 edited (10.0%) and 2 removed (5.0%)"
    )
    assert lines[1].split() == ["full", "ingest", "reindex"]
    full, again = (int(v.replace(",", "")) for v in lines[3].split()[-2:])
    definitions = {definition_text(row["text"]) for row in sample[:40]}  # each article's, beside its chunks
    chunks = [p for p in embedder.passages if p not in definitions]
    assert lines[3].startswith("chunks embedded") and full == len(chunks) - again and 0 < again < full
    assert "reindex: articles added 0, changed 4, unchanged 34, deleted 2;" in text
