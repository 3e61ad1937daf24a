"""Fingerprints and blue/green rebuilds: another model or chunk size builds a new
physical collection and moves the alias once it is complete and answers a smoke
query; search keeps answering from the old one meanwhile; a failed rebuild leaves
the alias where it was. The real embedded store, one connection shared by the
run and the searcher (it allows one per folder)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from ingest import lexical
from ingest.chunking import Chunker, ChunkingSettings
from ingest.definitions import CUT, definition_text
from ingest.errors import CollectionMismatchError, EmbedderError, RebuildError
from ingest.jobs import run_ingest, verify_collection
from ingest.pipeline.deadletters import DeadLetterFile
from ingest.pipeline.run import run_pipeline
from ingest.settings import IngestSettings, StoreSettings
from ingest.state.files import manifest_path
from ingest.store.edge import EdgeStore
from schemas import CollectionSpec, ModelSpec, point_id
from search import Searcher
from tests.counting_embedder import SPEC, CountingEmbedder

QUERY = "a film about a computer"


@pytest.fixture
def rows(sample):
    return [dict(row) for row in sample[:15]]


@pytest.fixture
def store(tmp_path):
    store = EdgeStore.open(tmp_path / "qdrant", collection="wiki")
    yield store
    store.close()


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def settings_for(tmp_path, rows, chunk_size=300, **kwargs) -> IngestSettings:
    return IngestSettings(
        source=write_rows(tmp_path / "rows.jsonl", rows),
        progress=False,
        window=8,
        chunking=ChunkingSettings(max_chars=chunk_size),
        dead_letter=str(tmp_path / "dl.jsonl"),
        store=StoreSettings(qdrant_path=str(tmp_path / "qdrant"), collection="wiki"),
        **kwargs,
    )


def live(store) -> str:
    return store.resolve("wiki").collection


def test_the_fingerprint_covers_everything_that_shapes_a_vector():
    base = CollectionSpec(model=SPEC, chunking={"max_chars": 300, "overlap_chars": 0, "title_prefix": True})
    variants = [
        replace(SPEC, name="other/model"),
        replace(SPEC, revision="abc"),
        replace(SPEC, dimension=768),
        replace(SPEC, pooling="cls"),
        replace(SPEC, normalize=False),
        replace(SPEC, query_instruction="query: "),
    ]
    prints = {base.fingerprint} | {replace(base, model=m).fingerprint for m in variants}
    for key, value in (("max_chars", 500), ("overlap_chars", 50), ("title_prefix", False)):
        prints.add(replace(base, chunking={**base.chunking, key: value}).fingerprint)
    assert len(prints) == 1 + len(variants) + 3


def test_another_chunk_size_builds_aside_while_search_answers_from_the_old_collection(tmp_path, rows, store):
    first = run_ingest(settings_for(tmp_path, rows), embedder=CountingEmbedder(), store=store)
    old = first.collection
    assert live(store) == old and old.startswith("wiki-")
    searcher = Searcher.open(
        StoreSettings(collection="wiki"), embedder=CountingEmbedder(), store=store, refresh_seconds=0
    )  # checks the alias before every query
    expected = [h.point_id for h in searcher.search(QUERY, k=3)]
    seen = []

    def search_meanwhile(call):  # runs inside the rebuild, before each embedder call
        hits = searcher.search(QUERY, k=3)
        seen.append((call, searcher.store.collection, [h.point_id for h in hits], live(store)))

    rebuild = run_ingest(
        settings_for(tmp_path, rows, chunk_size=500),
        store=store,
        embedder=CountingEmbedder(before_call=search_meanwhile),
    )
    new = rebuild.collection
    assert new != old and new.startswith("wiki-")
    assert len(seen) >= 2 and all(s[1:] == (old, expected, old) for s in seen)  # the old one, throughout
    assert live(store) == new and rebuild.alias == f"wiki now leads to {new} (was {old}, kept)"
    assert store.at(old).exists()
    after = searcher.search(QUERY, k=3)  # the searcher follows the alias
    assert searcher.store.collection == new and searcher.spec.chunking["max_chars"] == 500 and after
    assert verify_collection(
        StoreSettings(qdrant_path=str(tmp_path / "qdrant"), collection="wiki"), store=store
    ).in_sync


def test_another_model_builds_aside_and_a_searcher_with_the_old_model_refuses(tmp_path, rows, store):
    run_ingest(settings_for(tmp_path, rows), embedder=CountingEmbedder(), store=store)
    old = live(store)
    searcher = Searcher.open(
        StoreSettings(collection="wiki"), embedder=CountingEmbedder(), store=store, refresh_seconds=0
    )
    other = CountingEmbedder(ModelSpec("test/other-model", 384, 512))
    summary = run_ingest(settings_for(tmp_path, rows, drop_old=True), embedder=other, store=store)
    assert other.calls > 0 and live(store) == summary.collection != old
    assert not store.at(old).exists() and summary.alias.endswith(f"(was {old}, dropped)")
    assert not manifest_path(tmp_path / "qdrant-state", old).exists()  # its manifest went with it
    with pytest.raises(CollectionMismatchError, match="built with 'test/other-model'"):
        searcher.search(QUERY)
    with Searcher.open(StoreSettings(collection="wiki"), embedder=other, store=store) as fresh:
        assert fresh.search(QUERY, k=2)


def test_a_failed_rebuild_leaves_the_alias_and_the_next_run_finishes_it(tmp_path, rows, store):
    run_ingest(settings_for(tmp_path, rows), embedder=CountingEmbedder(), store=store)
    old = live(store)
    changed = settings_for(tmp_path, rows, chunk_size=500)
    failing = CountingEmbedder(fail_at=3)
    with pytest.raises(EmbedderError, match="went away"):
        run_ingest(changed, embedder=failing, store=store)
    assert live(store) == old
    with Searcher.open(StoreSettings(collection="wiki"), embedder=CountingEmbedder(), store=store) as searcher:
        assert searcher.store.collection == old and searcher.search(QUERY, k=2)
    resumed = CountingEmbedder()
    done = run_ingest(changed, embedder=resumed, store=store)
    total = done.collection_points
    assert live(store) == done.collection != old
    assert len(resumed.passages) < total and len(resumed.passages) + len(failing.passages) >= total


def test_a_rebuild_whose_smoke_query_fails_leaves_the_alias(tmp_path, rows, store):
    run_ingest(settings_for(tmp_path, rows), embedder=CountingEmbedder(), store=store)
    old = live(store)
    empty = [dict(row, text="   ") for row in rows]  # every article empty: nothing to search
    with pytest.raises(RebuildError, match="holds no points: the alias stays where it was"):
        run_ingest(settings_for(tmp_path, empty, chunk_size=500), embedder=CountingEmbedder(), store=store)
    assert live(store) == old


def test_a_legacy_collection_is_adopted_in_place_and_replaced_only_with_drop_old(tmp_path, rows, store):
    settings = settings_for(tmp_path, rows)
    legacy = store.at("wiki")  # as built before aliases and manifests: a plain collection
    legacy.ensure_collection(
        CollectionSpec(model=SPEC, chunking=settings.chunking.to_dict(), sparse=lexical.default_spec(), definition=CUT)
    )
    run_pipeline(
        rows,
        chunker=Chunker(settings.chunking, max_tokens=512),
        embedder=CountingEmbedder(),
        store=legacy,
        dead_letters=DeadLetterFile(tmp_path / "dl.jsonl"),
    )
    embedder = CountingEmbedder()
    adopted = run_ingest(settings, embedder=embedder, store=store, mode="reindex")
    assert (embedder.calls, adopted.unchanged, adopted.collection) == (0, len(rows), "wiki")
    assert store.resolve("wiki").is_alias is False

    changed = settings_for(tmp_path, rows, chunk_size=500)
    with pytest.raises(RebuildError, match="before collections had aliases.*--drop-old"):
        run_ingest(changed, embedder=CountingEmbedder(), store=store)
    moved = run_ingest(replace(changed, drop_old=True), embedder=CountingEmbedder(), store=store)
    assert store.resolve("wiki").is_alias and live(store) == moved.collection
    assert moved.alias.endswith("(was wiki, dropped)")


def test_the_alias_survives_reopening_the_store(tmp_path, rows):
    summary = run_ingest(settings_for(tmp_path, rows), embedder=CountingEmbedder())
    store = EdgeStore.open(tmp_path / "qdrant", collection="wiki")
    try:
        assert live(store) == summary.collection
    finally:
        store.close()


def test_the_alias_waits_for_a_rebuilt_collection_to_finish_indexing(tmp_path, rows, store):
    """A server builds the deferred graph after the load; the alias moves only once it
    reports the collection indexed, within --index-wait. A second run then switches."""

    class StillIndexing(EdgeStore):
        def finish_bulk_load(self, *, wait_seconds: float = 0.0) -> bool:
            return wait_seconds == 0  # an in-place run asks for no wait; a rebuild never gets its index

    run_ingest(settings_for(tmp_path, rows), embedder=CountingEmbedder(), store=store)
    old = live(store)
    slow = StillIndexing(store._folder, "wiki", location=store.location)
    rebuild = settings_for(tmp_path, rows, chunk_size=500, index_wait=0.5)
    summary = run_ingest(rebuild, embedder=CountingEmbedder(), store=slow)
    assert live(store) == old and summary.collection != old
    assert "still building its index after 0 s, so wiki still leads to " + old in summary.alias
    again = run_ingest(rebuild, embedder=CountingEmbedder(), store=store)  # indexed now: it switches
    assert live(store) == again.collection == summary.collection and again.embedded == 0


EARLIER_LEXICAL = lexical.SparseSpec(
    tokenizer=lexical.STANDARD, language="english", avg_len=48.0
)  # k1 1.2, b .75, titles


def test_new_lexical_settings_rebuild_from_the_live_collections_vectors_embedding_nothing(
    tmp_path, rows, store, monkeypatch
):
    """A collection built with earlier BM25 settings (Qdrant's defaults, titles among
    the terms) is rebuilt by the next run under the new ones without embedding
    again: its points are copied with their vectors and new lexical vectors, then
    the alias switches as for any rebuild. A copy that stops part way leaves the
    alias where it was, and the next run copies again, still embedding nothing."""
    settings = settings_for(tmp_path, rows)
    with monkeypatch.context() as earlier:
        earlier.setattr(lexical, "default_spec", lambda: EARLIER_LEXICAL)
        first = run_ingest(settings, embedder=CountingEmbedder(), store=store)
    old = live(store)
    assert store.at(old).read_spec().sparse == EARLIER_LEXICAL

    real_import = EdgeStore.import_points

    def stop_after_one_page(self, points, texts):
        real_import(self, points[:3], texts[:3])
        raise OSError("stopped")

    with monkeypatch.context() as stopping:
        stopping.setattr(EdgeStore, "import_points", stop_after_one_page)
        with pytest.raises(OSError, match="stopped"):
            run_ingest(settings, embedder=CountingEmbedder(), store=store)
    assert live(store) == old  # search still answers from the old collection

    embedder = CountingEmbedder()
    summary = run_ingest(settings, embedder=embedder, store=store)
    new = live(store)
    assert new != old and embedder.calls == 0 and summary.unchanged == len(rows) and summary.points_written == 0
    assert "copied with new BM25 vectors, no chunk embedded again" in summary.seeded
    assert summary.alias.endswith(f"(was {old}, kept)")
    assert store.at(new).read_spec().sparse == lexical.default_spec()
    before, after = (dict((p.id, p) for page in store.at(c).export_points() for p in page) for c in (old, new))
    assert set(after) == set(before) and len(after) == first.points_written
    for pid, point in after.items():
        assert point.payload == before[pid].payload
        assert (point.vector == before[pid].vector).all()  # the very vectors, not embedded again
    with Searcher.open(settings.store, embedder=CountingEmbedder(), store=store) as searcher:
        title = rows[3]["title"]
        hits = searcher.search(rows[3]["text"][:80], k=3, mode="hybrid", titles=[title])
        assert hits and {h.title for h in hits} == {title}
    again = CountingEmbedder()
    assert run_ingest(settings, embedder=again, store=store).unchanged == len(rows) and again.calls == 0
    assert live(store) == new  # in place from now on


def test_a_scheduled_reindex_keeps_the_earlier_lexical_settings_and_says_how_to_move(
    tmp_path, rows, store, monkeypatch, caplog
):
    """The scheduled reindex (`in_place_only`, on Modal) does not copy a whole corpus
    to change its BM25 settings: it updates the live collection in place with the
    settings it was built with, and says what to run to move."""
    settings = settings_for(tmp_path, rows)
    with monkeypatch.context() as earlier:
        earlier.setattr(lexical, "default_spec", lambda: EARLIER_LEXICAL)
        run_ingest(settings, embedder=CountingEmbedder(), store=store)
    old = live(store)
    edited = [dict(row, text=row["text"] + " An added sentence.") if i == 0 else row for i, row in enumerate(rows)]
    embedder = CountingEmbedder()
    summary = run_ingest(
        settings_for(tmp_path, edited), embedder=embedder, store=store, mode="reindex", in_place_only=True
    )
    assert live(store) == old and summary.changed == 1 and embedder.calls == 1
    assert store.at(old).read_spec().sparse == EARLIER_LEXICAL
    assert (
        "other lexical settings (BM25 k1 1.2, b 0.75, titles in; definitions copula-v1) than this version's "
        "(BM25 k1 0.3, b 0.5, titles out; definitions copula-v1)"
        in caplog.text
        and "run `python -m ingest` against it once" in caplog.text
    )


# -- definition vectors (ingest.definitions) ----------------------------------------
def definitions_of(store, collection):
    return {p.id: p.definition for page in store.at(collection).export_points() for p in page}


def test_a_collection_without_definitions_is_rebuilt_with_them_embedding_only_the_definitions(tmp_path, rows, store):
    """The next run after an upgrade: the live collection (no definition vectors) is copied with
    its chunks' vectors and each first chunk's definition embedded from its text, nothing else;
    the alias switches, and hybrid search fuses the definitions from then on."""
    first = run_ingest(settings_for(tmp_path, rows, definitions="none"), embedder=CountingEmbedder(), store=store)
    old = live(store)
    assert store.at(old).read_spec().definition is None
    assert all(d is None for d in definitions_of(store, old).values())

    embedder = CountingEmbedder()
    summary = run_ingest(settings_for(tmp_path, rows), embedder=embedder, store=store)
    new = live(store)
    assert new != old and store.at(new).read_spec().definition == "copula-v1"
    assert (
        summary.unchanged == len(rows) and summary.points_written == 0 and "no chunk embedded again" in summary.seeded
    )
    assert sorted(embedder.passages) == sorted(definition_text(row["text"]) for row in rows)
    before, after = definitions_of(store, old), definitions_of(store, new)
    assert set(after) == set(before) and sum(d is not None for d in after.values()) == len(rows)
    with Searcher.open(settings_for(tmp_path, rows).store, embedder=CountingEmbedder(), store=store) as searcher:
        assert searcher.store.definitions and searcher.search(rows[2]["text"][:60], k=3, mode="hybrid")
    assert first.points_written == len(after)


def test_a_scheduled_reindex_keeps_a_collection_without_definitions(tmp_path, rows, store, caplog):
    run_ingest(settings_for(tmp_path, rows, definitions="none"), embedder=CountingEmbedder(), store=store)
    old = live(store)
    embedder = CountingEmbedder()
    summary = run_ingest(settings_for(tmp_path, rows), embedder=embedder, store=store, in_place_only=True)
    assert live(store) == old and summary.unchanged == len(rows) and embedder.calls == 0
    assert store.at(old).read_spec().definition is None and "definitions none" in caplog.text


def test_an_unchanged_first_chunk_keeps_its_definition_and_a_changed_one_gets_a_new_one(tmp_path, rows, store):
    settings = settings_for(tmp_path, rows)
    run_ingest(settings, embedder=CountingEmbedder(), store=store)
    collection = live(store)
    before = definitions_of(store, collection)
    edited = [dict(row) for row in rows]
    edited[0]["text"] = edited[0]["text"] + " An added sentence at the end."  # its first chunk is unchanged
    edited[1]["text"] = "Zanzibar is an island of the Indian Ocean. " + edited[1]["text"]  # its first chunk changes
    embedder = CountingEmbedder()
    run_ingest(settings_for(tmp_path, edited), embedder=embedder, store=store)
    after = definitions_of(store, collection)
    assert "an island of the Indian Ocean" in embedder.passages
    assert definition_text(rows[0]["text"]) not in embedder.passages
    first_chunks = {point_id(row["id"], 0) for row in rows[:2]}
    first, second = sorted(first_chunks, key=lambda pid: pid != point_id(rows[0]["id"], 0))
    assert np.array_equal(after[first], before[first]) and not np.array_equal(after[second], before[second])
    assert sum(d is not None for d in after.values()) == len(rows)


def test_a_refused_definition_refuses_its_first_chunk_and_the_next_run_tries_both(tmp_path, rows, store):
    """A first chunk is stored with its definition or not at all: one whose definition the embedder
    refused is a dead letter (kind `definition`), missing from the collection and the manifest's count
    (verify says so), and the next run embeds that chunk and its definition again, nothing else."""
    refused = definition_text(rows[0]["text"])
    embedder = CountingEmbedder(reject=lambda text: text == refused)
    settings = settings_for(tmp_path, rows)
    summary = run_ingest(settings, embedder=embedder, store=store)
    assert summary.rejected_chunks == 1 and summary.points_written == summary.chunks - 1
    letters = [json.loads(line) for line in (tmp_path / "dl.jsonl").read_text().splitlines()]
    assert [(d["kind"], d["article_id"], d["chunk_index"]) for d in letters] == [("definition", rows[0]["id"], 0)]
    definitions = definitions_of(store, live(store))
    assert point_id(rows[0]["id"], 0) not in definitions
    assert sum(d is not None for d in definitions.values()) == len(rows) - 1
    report = verify_collection(settings.store, store=store)
    assert not report.in_sync and report.comparison.refused.count == 1

    again = CountingEmbedder()  # the embedder well again
    summary = run_ingest(settings, embedder=again, store=store)
    assert refused in again.passages and len(again.passages) == 2  # the first chunk, and its definition
    assert rows[0]["title"] in next(p for p in again.passages if p != refused)
    assert summary.unchanged == len(rows) - 1 and summary.rejected_chunks == 0
    definitions = definitions_of(store, live(store))
    assert sum(d is not None for d in definitions.values()) == len(rows)
    assert verify_collection(settings.store, store=store).in_sync
    third = CountingEmbedder()
    run_ingest(settings, embedder=third, store=store)
    assert third.calls == 0  # whole now: nothing to do
