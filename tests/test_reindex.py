"""Incremental reindex against successive snapshots, and drift between the manifest
and the collection: exact point sets and payloads after each step, and a counting
embedder that shows only changed chunks were embedded. The real embedded engine
(Qdrant Edge) on disk; deterministic in-process vectors."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from ingest import lexical
from ingest.chunking import Chunker, ChunkingSettings
from ingest.cli import main
from ingest.definitions import definition_text
from ingest.embedders.base import Rejection
from ingest.embedders.fake import deterministic_vector
from ingest.errors import MassDeleteError, SourceError
from ingest.jobs import repair_manifest, run_ingest, verify_collection
from ingest.lexical import passage_vector
from ingest.settings import IngestSettings, StoreSettings
from ingest.store import ChunkSelection, StoredPoint
from ingest.store.edge import EdgeStore
from schemas import Article, PointPayload, point_id
from tests.counting_embedder import CountingEmbedder
from tests.qdrant_standin import edge_points

CHUNKING = ChunkingSettings(max_chars=300)
EDIT = " The committee later revised this account."


@pytest.fixture(scope="module")
def snapshots(sample):
    """Three snapshots of the same small corpus, each an edit of the one before."""
    a = [dict(row) for row in sample[:12]]
    b = [dict(row) for row in a if row["id"] != a[1]["id"]]  # removed
    b += [dict(row) for row in sample[20:22]]  # added
    by_id = {row["id"]: row for row in b}
    by_id[a[0]["id"]]["text"] += EDIT  # edited at the end: only the last chunk changes
    renamed = by_id[a[3]["id"]]  # renamed: a new title (and url) changes every embedded chunk
    renamed["title"], renamed["url"] = "Renamed " + renamed["title"], renamed["url"] + "_(renamed)"
    shrunk = by_id[a[4]["id"]]
    shrunk["text"] = shrunk["text"][: shrunk["text"].index(". ", len(shrunk["text"]) // 3) + 1]  # fewer chunks
    grown = by_id[a[5]["id"]]
    grown["text"] = grown["text"] + "\n" + grown["text"]  # more chunks
    c = [dict(row) for row in b if row["id"] != sample[20]["id"]]
    by_id = {row["id"]: row for row in c}
    by_id[a[0]["id"]]["text"] = a[0]["text"]  # the edit reverted
    middle = by_id[a[8]["id"]]
    cut = middle["text"].index(". ", len(middle["text"]) // 2) + 2
    middle["text"] = middle["text"][:cut] + "An inserted sentence. " + middle["text"][cut:]
    return a, b, c


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def settings_for(tmp_path, source, **kwargs) -> IngestSettings:
    return IngestSettings(
        source=source,
        progress=False,
        window=16,
        chunking=kwargs.pop("chunking", CHUNKING),
        dead_letter=str(tmp_path / "dead_letter.jsonl"),
        store=StoreSettings(qdrant_path=str(tmp_path / "qdrant"), collection="wiki"),
        **kwargs,
    )


def chunks_of(rows, chunking=CHUNKING):
    chunker = Chunker(chunking, max_tokens=512)
    return [(Article.from_row(row), c) for row in rows for c in chunker.chunks(Article.from_row(row))]


def changed_chunks(old_rows, new_rows) -> list[str]:
    """Embedded texts of `new_rows` that differ from the chunk `old_rows` had at that place."""
    before = {(c.article_id, c.chunk_index): c.embed_text for _, c in chunks_of(old_rows)}
    return sorted(
        c.embed_text for _, c in chunks_of(new_rows) if before.get((c.article_id, c.chunk_index)) != c.embed_text
    )


def embedded_again(old_rows, new_rows) -> list[str]:
    """What the embedder reads to bring `old_rows` to `new_rows`: the changed chunks, and the
    definition (`ingest.definitions`) of each changed first chunk."""
    before = {(c.article_id, c.chunk_index): c.embed_text for _, c in chunks_of(old_rows)}
    changed = [c for _, c in chunks_of(new_rows) if before.get((c.article_id, c.chunk_index)) != c.embed_text]
    return sorted([c.embed_text for c in changed] + [definition_text(c.text) for c in changed if c.chunk_index == 0])


def stored(tmp_path, collection="wiki") -> dict[str, tuple[dict, list[float], dict]]:
    """Each point's payload, dense vector and sparse vector (as {index: weight})."""
    return edge_points(tmp_path / "qdrant", collection)


def assert_holds_exactly(tmp_path, rows):
    """The collection holds one point per chunk of `rows`, with the right payload and vector."""
    expected = {c.point_id: (PointPayload.build(a, c).to_dict(), c.embed_text, c.text) for a, c in chunks_of(rows)}
    points = stored(tmp_path)
    assert set(points) == set(expected)
    for pid, (payload, vector, sparse) in points.items():
        assert payload == expected[pid][0]
        np.testing.assert_allclose(vector, deterministic_vector(expected[pid][1]), atol=1e-5)
        indices, values = passage_vector(expected[pid][2], lexical.default_spec())  # the text, not the title
        assert sparse == pytest.approx(dict(zip(indices, values)))  # rewritten with its text, never stale
    assert verify_collection(settings_for(tmp_path, "").store).in_sync


def test_reindexing_successive_snapshots_embeds_only_changed_chunks(tmp_path, snapshots, monkeypatch):
    a, b, c = snapshots
    embedder = CountingEmbedder()
    first = run_ingest(settings_for(tmp_path, write_rows(tmp_path / "a.jsonl", a)), embedder=embedder)
    assert (first.added, first.chunks, first.points_written) == (12, len(chunks_of(a)), len(chunks_of(a)))
    assert_holds_exactly(tmp_path, a)

    embedder.reset()
    second = run_ingest(settings_for(tmp_path, write_rows(tmp_path / "b.jsonl", b)), embedder=embedder, mode="reindex")
    assert (second.added, second.changed, second.unchanged, second.deleted) == (2, 4, 7, 1)
    assert sorted(embedder.passages) == embedded_again(a, b)
    assert second.reused > 0 and second.embedded == len(changed_chunks(a, b)) < len(chunks_of(b)) / 2
    old_points = {c.point_id for _, c in chunks_of(a)}
    assert second.points_deleted == len(old_points - {c.point_id for _, c in chunks_of(b)})
    assert_holds_exactly(tmp_path, b)

    embedder.reset()
    third = run_ingest(settings_for(tmp_path, write_rows(tmp_path / "c.jsonl", c)), embedder=embedder, mode="reindex")
    assert (third.added, third.changed, third.deleted) == (0, 2, 1)
    assert sorted(embedder.passages) == embedded_again(b, c) and third.embedded > 0
    assert_holds_exactly(tmp_path, c)

    writes = []
    monkeypatch.setattr(EdgeStore, "_write", lambda self, *args: writes.append("upsert"))
    monkeypatch.setattr(EdgeStore, "_delete_where", lambda self, selection: writes.append("delete") or 0)
    embedder.reset()
    same = run_ingest(settings_for(tmp_path, str(tmp_path / "c.jsonl")), embedder=embedder, mode="reindex")
    assert (same.unchanged, same.added, same.changed, same.deleted) == (len(c), 0, 0, 0)
    assert (embedder.calls, same.points_written, same.points_deleted, writes) == (0, 0, 0, [])


def test_run_never_deletes_and_a_limit_never_deletes(tmp_path, snapshots):
    a, b, _ = snapshots
    embedder = CountingEmbedder()
    run_ingest(settings_for(tmp_path, write_rows(tmp_path / "a.jsonl", a)), embedder=embedder)
    source = write_rows(tmp_path / "b.jsonl", b)
    limited = run_ingest(settings_for(tmp_path, source, limit=3), embedder=embedder, mode="reindex")
    assert limited.deleted == 0 and a[1]["id"] in {p["id"] for p, _, _ in stored(tmp_path).values()}
    kept = run_ingest(settings_for(tmp_path, source), embedder=embedder)  # `run`: writes, never deletes
    assert kept.deleted == 0 and kept.added == 2 and a[1]["id"] in {p["id"] for p, _, _ in stored(tmp_path).values()}


def test_a_snapshot_missing_most_articles_deletes_nothing(tmp_path, snapshots):
    a, _, _ = snapshots
    embedder = CountingEmbedder()
    run_ingest(settings_for(tmp_path, write_rows(tmp_path / "a.jsonl", a)), embedder=embedder)
    truncated = write_rows(tmp_path / "t.jsonl", a[:3])
    with pytest.raises(MassDeleteError, match=r"lacks 9 of the 12 indexed articles \(75%.*--max-delete-share"):
        run_ingest(settings_for(tmp_path, truncated), embedder=embedder, mode="reindex")
    assert_holds_exactly(tmp_path, a)
    run_ingest(settings_for(tmp_path, truncated, max_delete_share=1.0), embedder=embedder, mode="reindex")
    assert_holds_exactly(tmp_path, a[:3])


def test_points_deleted_behind_the_manifests_back_are_found_and_restored(tmp_path, snapshots):
    a, _, _ = snapshots
    embedder = CountingEmbedder()
    source = write_rows(tmp_path / "a.jsonl", a)
    settings = settings_for(tmp_path, source)
    first = run_ingest(settings, embedder=embedder)
    collection = first.collection
    chunks = chunks_of(a)
    lost = [c for _, c in chunks if c.article_id == a[0]["id"]]
    short = [c for _, c in chunks if c.article_id == a[6]["id"]][1:3]
    store = EdgeStore.open(tmp_path / "qdrant", collection=collection)
    try:  # behind the tool's back: points lost, and one that no article owns
        store.delete_chunks(
            [
                ChunkSelection(lost[0].article_id, from_index=0),
                ChunkSelection(short[0].article_id, indices=tuple(c.chunk_index for c in short)),
            ]
        )
        ghost = {
            "id": "ghost",
            "url": "u",
            "title": "Ghost",
            "text": "boo",
            "chunk_index": 0,
            "start": 0,
            "end": 3,
            "chunk_hash": "x",
            "article_hash": "y",
        }
        store.import_points([StoredPoint(point_id("ghost", 0), np.ones(384, np.float32), ghost)], ["boo"])
    finally:
        store.close()

    report = verify_collection(settings.store)
    assert not report.in_sync
    found = report.comparison
    assert (found.lost.examples, found.short.examples, found.unknown.examples) == (
        (a[0]["id"],),
        (a[6]["id"],),
        ("ghost",),
    )
    assert any(line.startswith("1 articles whose points are all gone, e.g.") for line in report.lines())

    embedder.reset()
    restored = run_ingest(settings, embedder=embedder, mode="reindex")
    again = [c.embed_text for c in lost + short] + [definition_text(c.text) for c in lost if c.chunk_index == 0]
    assert sorted(embedder.passages) == sorted(again)  # the rest is reused
    assert restored.deleted == 1 and restored.unchanged == len(a) - 2
    assert_holds_exactly(tmp_path, a)


def test_a_lost_manifest_is_rebuilt_by_repair_or_adopted_by_the_next_run(tmp_path, snapshots):
    a, _, _ = snapshots
    embedder = CountingEmbedder()
    settings = settings_for(tmp_path, write_rows(tmp_path / "a.jsonl", a))
    run_ingest(settings, embedder=embedder)
    state = tmp_path / "qdrant-state"
    shutil.rmtree(state)
    assert not verify_collection(settings.store).in_sync  # every article unknown
    report = repair_manifest(settings.store)
    assert (report.done, report.pending, report.points) == (len(a), 0, len(chunks_of(a)))
    assert verify_collection(settings.store).in_sync

    shutil.rmtree(state)
    embedder.reset()
    again = run_ingest(settings, embedder=embedder, mode="reindex")  # adopts what the points say
    assert (embedder.calls, again.unchanged, again.points_written) == (0, len(a), 0)
    assert_holds_exactly(tmp_path, a)


def test_verify_and_repair_from_the_command_line(tmp_path, snapshots, capsys, monkeypatch):
    a, _, _ = snapshots
    settings = settings_for(tmp_path, write_rows(tmp_path / "a.jsonl", a))
    run_ingest(settings, embedder=CountingEmbedder())
    (tmp_path / "qdrant-state" / f"{stored_collection(tmp_path)}.sqlite").unlink()
    monkeypatch.chdir(tmp_path)
    args = ["--qdrant-path", "qdrant", "--collection", "wiki", "-q"]
    assert main(["verify", *args]) == 4  # drift
    assert f"{len(a)} articles in the collection but not in the manifest" in capsys.readouterr().out
    assert main(["repair", *args]) == 0
    assert f"{len(a)} articles recorded as indexed, 0 left pending" in capsys.readouterr().out
    assert main(["verify", *args]) == 0 and capsys.readouterr().out.splitlines()[-1] == "in sync"


def stored_collection(tmp_path) -> str:
    store = EdgeStore.open(tmp_path / "qdrant", collection="wiki")
    try:
        return store.resolve("wiki").collection
    finally:
        store.close()


def test_an_article_with_a_refused_chunk_is_recorded_and_its_old_chunk_removed(tmp_path, snapshots):
    a, _, _ = snapshots
    marker = "REFUSED"

    class Refusing(CountingEmbedder):
        def embed_passages(self, texts):
            result = super().embed_passages(texts)
            refused = [i for i, text in enumerate(texts) if marker in text]
            result.vectors[refused] = 0
            return replace(result, rejected=[Rejection(i, 422, "too long") for i in refused])

    settings = settings_for(tmp_path, write_rows(tmp_path / "a.jsonl", a))
    run_ingest(settings, embedder=CountingEmbedder())
    edited = [dict(row) for row in a]
    second = [c for _, c in chunks_of(a) if c.article_id == a[10]["id"]][1]
    edited[10]["text"] = a[10]["text"][: second.start] + marker + " " + a[10]["text"][second.start :]
    (refused,) = [c for _, c in chunks_of(edited) if marker in c.text]
    summary = run_ingest(
        settings_for(tmp_path, write_rows(tmp_path / "e.jsonl", edited)), embedder=Refusing(), mode="reindex"
    )
    assert summary.rejected_chunks == 1 and summary.changed == 1
    points = stored(tmp_path)
    assert refused.point_id not in points  # nor the old version of that chunk
    assert {p["chunk_index"] for p, _, _ in points.values() if p["id"] == a[10]["id"]} == (
        {c.chunk_index for _, c in chunks_of(edited) if c.article_id == a[10]["id"]} - {refused.chunk_index}
    )
    report = verify_collection(settings.store)  # recorded, and still visible: not in sync until it lands
    assert not report.in_sync and report.comparison.refused.examples == (a[10]["id"],)
    assert report.comparison.drifted == 0
    assert any(line.startswith("1 articles with chunks the embedder refused") for line in report.lines())
    last = json.loads((tmp_path / "dead_letter.jsonl").read_text().splitlines()[-1])
    assert (last["article_id"], last["chunk_index"]) == (a[10]["id"], refused.chunk_index)

    still = run_ingest(settings_for(tmp_path, str(tmp_path / "e.jsonl")), embedder=Refusing(), mode="reindex")
    assert (still.retried, still.rejected_chunks, still.embedded) == (1, 1, 1)  # tried again, refused again
    healthy = CountingEmbedder()
    healed = run_ingest(settings_for(tmp_path, str(tmp_path / "e.jsonl")), embedder=healthy, mode="reindex")
    assert (healed.retried, healed.changed, healed.rejected_chunks) == (1, 0, 0)
    assert healthy.passages == [refused.embed_text]  # only the refused chunk: the others kept their vectors
    assert refused.point_id in stored(tmp_path) and verify_collection(settings.store).in_sync
    assert "retried 1 (refused chunks tried again)" in healed.report()
    again = run_ingest(settings_for(tmp_path, str(tmp_path / "e.jsonl")), embedder=healthy, mode="reindex")
    assert (again.retried, again.unchanged) == (0, len(edited))


def test_a_store_moved_with_its_state_is_checked_and_then_trusted(tmp_path, snapshots):
    a, _, _ = snapshots
    source = write_rows(tmp_path / "a.jsonl", a)
    run_ingest(settings_for(tmp_path / "old", source), embedder=CountingEmbedder())
    (tmp_path / "new").mkdir()
    for name in ("qdrant", "qdrant-state"):
        shutil.move(tmp_path / "old" / name, tmp_path / "new" / name)
    embedder = CountingEmbedder()
    again = run_ingest(settings_for(tmp_path / "new", source), embedder=embedder, mode="reindex")
    assert (embedder.calls, again.unchanged, again.points_written, again.deleted) == (0, len(a), 0, 0)


def test_a_folder_of_mixed_files_is_read_whole_and_a_reindex_deletes_nothing(tmp_path, sample):
    """Defect: a folder of JSON-lines and parquet files was read for one kind only, and a
    reindex deleted the articles of the other kind, with exit 0."""
    import datasets

    rows = [dict(row) for row in sample[:9]]
    folder = tmp_path / "snapshot"
    folder.mkdir()
    write_rows(folder / "a.jsonl", rows[:3])
    datasets.Dataset.from_list(rows[3:7]).to_parquet(str(folder / "b.parquet"))
    write_rows(folder / "c.json", rows[7:])
    embedder = CountingEmbedder()
    first = run_ingest(settings_for(tmp_path, str(folder)), embedder=embedder)
    assert (first.articles, first.added) == (9, 9)
    again = run_ingest(settings_for(tmp_path, str(folder)), embedder=embedder, mode="reindex")
    assert (again.articles, again.unchanged, again.deleted, again.points_deleted) == (9, 9, 0, 0)
    assert_holds_exactly(tmp_path, rows)


def test_a_folder_with_files_of_another_kind_is_refused_naming_them(tmp_path, sample):
    folder = tmp_path / "snapshot"
    folder.mkdir()
    write_rows(folder / "a.jsonl", [dict(row) for row in sample[:3]])
    (folder / "b.csv").write_text("id,url,title,text\n")
    (folder / ".DS_Store").write_text("")  # hidden files are not articles
    with pytest.raises(SourceError, match=r"b\.csv.*a reindex would delete them"):
        run_ingest(settings_for(tmp_path, str(folder)), embedder=CountingEmbedder(), mode="reindex")


def test_a_reindex_with_unreadable_rows_deletes_nothing_and_names_them(tmp_path, snapshots):
    a, _, _ = snapshots
    run_ingest(settings_for(tmp_path, write_rows(tmp_path / "a.jsonl", a)), embedder=CountingEmbedder())
    lines = [json.dumps(r) for r in a[:-1]]  # the last article is gone from the snapshot...
    lines[3] = lines[3][:40]  # ...and one line is cut short: its article might be any of them
    (tmp_path / "b.jsonl").write_text("\n".join(lines) + "\n")
    summary = run_ingest(settings_for(tmp_path, str(tmp_path / "b.jsonl")), embedder=CountingEmbedder(), mode="reindex")
    assert (summary.deleted, summary.unreadable, summary.unchanged) == (0, 1, len(a) - 2)
    assert a[-1]["id"] in {p["id"] for p, _, _ in stored(tmp_path).values()}
    (record,) = [json.loads(line) for line in (tmp_path / "dead_letter.jsonl").read_text().splitlines()]
    assert "b.jsonl, line 4: not a JSON object" in record["message"]
