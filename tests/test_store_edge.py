"""The embedded store (Qdrant Edge): the Store interface's behaviour, the same as the
server backend's (over qdrant-client's local mode, a stand-in for a server),
checked side by side on both, then the jobs on it (ingest, reindex, rebuild
behind the alias, verify, search)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import replace

import numpy as np
import pytest

from ingest import lexical
from ingest.chunking import ChunkingSettings
from ingest.errors import CollectionMismatchError
from ingest.jobs import run_ingest, verify_collection
from ingest.settings import IngestSettings, StoreSettings
from ingest.store import ChunkRef, ChunkSelection, MemoryStore, PayloadFilter, Store, open_store
from ingest.store.edge import EdgeStore
from schemas import KNOWN_MODELS, Article, Chunk, CollectionSpec, point_id
from search import Searcher
from tests.counting_embedder import CountingEmbedder
from tests.qdrant_standin import server_stand_in

MINILM = KNOWN_MODELS["sentence-transformers/all-MiniLM-L6-v2"]
SPEC = CollectionSpec(model=MINILM, chunking={"max_chars": 1000}, sparse=lexical.default_spec())


@pytest.fixture(params=["edge", "server", "memory"])
def store(request, tmp_path):
    opened = {
        "edge": lambda: EdgeStore.open(tmp_path / "q", collection="wiki"),
        "server": server_stand_in,
        "memory": lambda: MemoryStore(collection="wiki"),
    }[request.param]()
    yield opened
    opened.close()


def corpus(n_articles=4, chunks=3):
    articles = [Article(str(i), f"https://en.wikipedia.org/wiki/T{i}", f"Title {i}", "text") for i in range(n_articles)]
    pairs = [
        (a, Chunk(a.id, j, f"text {j} of {a.title} about rivers", j, j + 1, f"{a.title}\ntext {j} rivers"))
        for a in articles
        for j in range(chunks)
    ]
    vectors = np.random.default_rng(7).standard_normal((len(pairs), 384)).astype(np.float32)
    return pairs, vectors


def test_both_backends_implement_the_interface(store):
    assert isinstance(store, Store)


def test_writes_counts_deletes_and_scans_alike(store):
    pairs, vectors = corpus()
    assert store.ensure_collection(SPEC, bulk_load=True) is True and store.read_spec() == SPEC
    store.upsert_pairs(pairs, vectors)
    store.upsert_pairs(pairs, vectors)  # idempotent: deterministic ids
    assert store.count() == 12 and store.count_excluding(["0"]) == 9
    assert store.finish_bulk_load(wait_seconds=1) is True
    refs = sorted(ref for page in store.scan_chunks(batch=5) for ref in page)
    assert len(refs) == 12 and refs[0] == ChunkRef("0", 0, pairs[0][0].content_hash)
    kept = store.stored_vectors([pairs[0][1].point_id, point_id("nope", 0)])
    assert list(kept) == [pairs[0][1].point_id] and kept[pairs[0][1].point_id].chunk_hash == pairs[0][1].content_hash
    np.testing.assert_allclose(kept[pairs[0][1].point_id].vector, vectors[0] / np.linalg.norm(vectors[0]), atol=1e-5)
    assert store.payloads([pairs[4][1].point_id])[pairs[4][1].point_id]["title"] == "Title 1"
    assert store.delete_chunks([ChunkSelection("0", from_index=2, indices=(0,))]) == 2 and store.count() == 10
    assert store.delete_articles(["1", "2"]) == 6 and store.count() == 4
    assert store.delete_articles([]) == 0 and store.any_point()["id"] in ("0", "3")


def test_searches_rank_alike_on_both_backends(tmp_path):
    """Every point's score, dense and fused: texts of distinct lengths and term counts, so
    that no two points tie in either ranking (a tie may come back in either order)."""
    articles = [Article(str(i), f"https://en.wikipedia.org/wiki/T{i}", f"Title {i}", "text") for i in range(6)]
    texts = {
        (a.id, j): "rivers " * (j + 1) + "filler " * (3 * int(a.id) + j) + f"w{a.id}x{j}"
        for a in articles
        for j in range(4)
    }
    pairs = [
        (a, Chunk(a.id, j, text, j, j + 1, f"{a.title} {text}"))
        for (i, j), text in texts.items()
        for a in articles
        if a.id == i
    ]
    vectors = np.random.default_rng(7).standard_normal((len(pairs), 384)).astype(np.float32)
    stores = [server_stand_in(), EdgeStore.open(tmp_path / "edge", collection="wiki"), MemoryStore(collection="wiki")]
    try:
        for s in stores:
            s.ensure_collection(SPEC)
            s.upsert_pairs(pairs, vectors)
        query, sparse = vectors[5] + 0.1, lexical.query_vector("Title 2 rivers", SPEC.sparse)
        for options in (
            {},
            {"sparse": sparse},
            {"where": PayloadFilter(titles=("Title 1", "Title 4"))},
            {"sparse": sparse, "where": PayloadFilter(article_ids=("2",))},
            {"group_size": 1},
            {"sparse": sparse, "group_size": 2},
            {"score_threshold": 0.05},
        ):
            local, *others = (s.search(query, limit=6 if "group_size" in options else 24, **options) for s in stores)
            for edge in others:  # the embedded engine, and the in-memory test backend
                assert {h.id: h.score for h in edge} == pytest.approx({h.id: h.score for h in local}, abs=1e-4), options
                if "sparse" not in options:  # fused scores may tie (ranks swapped): their order is free
                    assert [h.id for h in edge] == [h.id for h in local], options
                if "group_size" in options:
                    ids = [h.payload["id"] for h in edge]
                    assert max(ids.count(i) for i in ids) <= options["group_size"]
    finally:
        for s in stores:
            s.close()


def test_names_aliases_and_build_records(store):
    store.ensure_collection(SPEC)
    other = store.at("wiki-2")
    other.ensure_collection(replace(SPEC, chunking={"max_chars": 500}))
    store.point_alias("live", "wiki", replace_alias=False)
    assert store.resolve("live") == store.resolve("live").__class__("live", "wiki", True)
    store.point_alias("live", "wiki-2", replace_alias=True)
    assert store.resolve("live").collection == "wiki-2" and store.aliases_of("wiki-2") == ["live"]
    assert store.resolve("wiki").is_alias is False and store.resolve("absent").collection is None
    store.delete_alias("live")
    assert store.resolve("live").collection is None
    with pytest.raises(CollectionMismatchError, match="max_chars"):
        store.ensure_collection(replace(SPEC, chunking={"max_chars": 500}))
    other.drop()
    assert not other.exists() and store.exists()


def test_the_edge_folder_reopens_and_refuses_a_second_process(tmp_path):
    pairs, vectors = corpus()
    store = EdgeStore.open(tmp_path / "q", collection="wiki")
    store.ensure_collection(SPEC)
    store.upsert_pairs(pairs, vectors)
    store.point_alias("live", "wiki", replace_alias=False)
    code = textwrap.dedent(f"""
        from ingest.store.edge import EdgeStore
        try:
            EdgeStore.open({str(tmp_path / "q")!r}, collection="wiki").count()
        except Exception as exc:
            print(type(exc).__name__, exc)
    """)
    held = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert held.stdout.startswith("StoreLockedError") and "in use by another process" in held.stdout
    store.close()
    reopened = EdgeStore.open(tmp_path / "q", collection="wiki")
    try:
        assert reopened.count() == 12 and reopened.read_spec() == SPEC and reopened.resolve("live").collection == "wiki"
    finally:
        reopened.close()


def settings_for(tmp_path, rows, **kwargs) -> IngestSettings:
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    chunk_size = kwargs.pop("chunk_size", 300)
    return IngestSettings(
        source=str(source),
        progress=False,
        window=8,
        chunking=ChunkingSettings(max_chars=chunk_size),
        dead_letter=str(tmp_path / "dl.jsonl"),
        store=StoreSettings(qdrant_path=str(tmp_path / "q"), collection="wiki"),
        **kwargs,
    )


def test_the_jobs_run_on_the_edge_store(tmp_path, sample):
    rows = [dict(row) for row in sample[:12]]
    embedder = CountingEmbedder()
    first = run_ingest(settings_for(tmp_path, rows), embedder=embedder)
    assert first.added == 12 and first.collection_points == first.points_written > 12
    again = run_ingest(settings_for(tmp_path, rows), embedder=embedder)
    assert (again.unchanged, again.points_written) == (12, 0)  # incremental: nothing to do
    edited = [dict(row) for row in rows[:-2]]
    edited[0]["text"] += " An added sentence."
    reindex = run_ingest(settings_for(tmp_path, edited), embedder=embedder, mode="reindex")
    assert (reindex.changed, reindex.deleted) == (1, 2)
    assert verify_collection(settings_for(tmp_path, edited).store).in_sync
    rebuilt = run_ingest(settings_for(tmp_path, edited, chunk_size=500), embedder=embedder)
    assert rebuilt.alias.startswith("wiki now leads to wiki-") and "(was wiki-" in rebuilt.alias
    store = open_store(settings_for(tmp_path, edited).store)
    try:
        with Searcher.open(settings_for(tmp_path, edited).store, embedder=CountingEmbedder(), store=store) as searcher:
            assert searcher.store.collection == rebuilt.collection and searcher.default_mode == "hybrid"
            hits = searcher.search(edited[3]["title"], k=3, max_per_article=1)
            assert hits and len({h.article_id for h in hits}) == len(hits)
    finally:
        store.close()


def test_a_memory_store_is_a_folder_of_the_real_engine_deleted_on_close():
    store = EdgeStore.open(":memory:", collection="wiki")
    store.ensure_collection(SPEC)
    folder = store._folder.root.parent
    assert folder.is_dir() and store.location == ":memory:"
    store.close()
    assert not folder.exists()
