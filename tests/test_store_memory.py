"""`MemoryStore`, the in-memory test backend, held to what the embedded store does
(`tests/test_store_edge.py` checks the same writes, names and rankings on the real
engines, with `MemoryStore` beside them): writes, counts, deletes and scans; names,
aliases and build records; dense, filtered, capped and fused search."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ingest import lexical
from ingest.errors import CollectionMismatchError, StoreError
from ingest.store import (
    Catalogue,
    ChunkRef,
    ChunkSelection,
    MemoryStore,
    PayloadFilter,
    PointReader,
    PointWriter,
    Store,
)
from ingest.store.base import FUSION_DEPTH, RRF_K, RRF_WEIGHTS, StoredPoint
from schemas import KNOWN_MODELS, Article, Chunk, CollectionSpec, point_id
from tests.test_store_edge import corpus  # the same points as the other backends get

pytestmark = pytest.mark.unit

MINILM = KNOWN_MODELS["sentence-transformers/all-MiniLM-L6-v2"]
SPEC = CollectionSpec(model=MINILM, chunking={"max_chars": 1000}, sparse=lexical.default_spec())
DENSE = replace(SPEC, sparse=None)


@pytest.fixture
def store():
    store = MemoryStore(collection="wiki")
    store.ensure_collection(SPEC)
    return store


def test_it_is_a_whole_store_and_each_of_its_parts():
    store = MemoryStore()
    assert all(isinstance(store, interface) for interface in (Store, PointWriter, PointReader, Catalogue))


def test_writes_counts_deletes_and_scans_as_the_embedded_store_does(store):
    pairs, vectors = corpus()
    assert store.read_spec() == SPEC and store.ensure_collection(SPEC, bulk_load=True) is False
    store.upsert_pairs(pairs, vectors)
    store.upsert_pairs(pairs, vectors)  # idempotent: deterministic ids
    assert store.count() == 12 and store.count_excluding(["0"]) == 9
    assert store.finish_bulk_load(wait_seconds=1) is True
    pages = list(store.scan_chunks(batch=5))
    refs = sorted(ref for page in pages for ref in page)
    assert [len(page) for page in pages] == [5, 5, 2]
    assert len(refs) == 12 and refs[0] == ChunkRef("0", 0, pairs[0][0].content_hash)
    kept = store.stored_vectors([pairs[0][1].point_id, point_id("nope", 0)])
    assert list(kept) == [pairs[0][1].point_id] and kept[pairs[0][1].point_id].chunk_hash == pairs[0][1].content_hash
    np.testing.assert_allclose(kept[pairs[0][1].point_id].vector, vectors[0] / np.linalg.norm(vectors[0]), atol=1e-6)
    assert store.payloads([pairs[4][1].point_id])[pairs[4][1].point_id]["title"] == "Title 1"
    assert store.delete_chunks([ChunkSelection("0", from_index=2, indices=(0,))]) == 2 and store.count() == 10
    assert store.delete_chunks([ChunkSelection("3")]) == 3 and store.count() == 7  # neither: the whole article
    assert store.delete_articles(["1", "2"]) == 6 and store.count() == 1
    assert store.delete_articles([]) == 0 and store.any_point()["id"] == "0"


def test_an_empty_collection_scans_one_empty_page_and_has_no_point(store):
    assert list(store.scan_chunks()) == [[]] and store.any_point() is None and store.count() == 0


def test_points_export_and_import_between_stores_with_their_lexical_vectors(store):
    pairs, vectors = corpus(2, 2)
    store.upsert_pairs(pairs, vectors)
    other = MemoryStore(collection="copy")
    other.ensure_collection(SPEC)
    exported = [p for page in store.export_points(batch=3) for p in page]
    assert all(isinstance(p, StoredPoint) for p in exported) and len(exported) == 4
    other.import_points(exported, [p.payload["text"] for p in exported])
    query = lexical.query_vector("text 1 of Title 0", SPEC.sparse)
    assert [h.id for h in other.search(vectors[1], limit=4, sparse=query)] == [
        h.id for h in store.search(vectors[1], limit=4, sparse=query)
    ]


def test_writes_are_checked_against_the_collection(store):
    pairs, vectors = corpus(1, 1)
    with pytest.raises(StoreError, match="shape"):
        store.upsert_pairs(pairs, vectors[:, :10])
    with pytest.raises(StoreError, match="'absent' does not exist"):
        store.at("absent").upsert_pairs(pairs, vectors)
    with pytest.raises(StoreError, match="does not exist"):
        store.at("absent").count()


def test_names_aliases_and_build_records(store):
    other = store.at("wiki-2")
    assert other.ensure_collection(replace(SPEC, chunking={"max_chars": 500})) is True
    store.point_alias("live", "wiki", replace_alias=False)
    assert store.resolve("live") == store.resolve("live").__class__("live", "wiki", True)
    with pytest.raises(StoreError, match="already exists"):
        store.point_alias("live", "wiki-2", replace_alias=False)
    with pytest.raises(StoreError, match="is a collection"):
        store.point_alias("wiki", "wiki-2", replace_alias=True)
    store.point_alias("live", "wiki-2", replace_alias=True)
    assert store.resolve("live").collection == "wiki-2" and other.aliases_of("wiki-2") == ["live"]
    assert store.resolve("wiki").is_alias is False and store.resolve("absent").collection is None
    store.delete_alias("live")
    assert store.resolve("live").collection is None and store.server_version() is None
    with pytest.raises(CollectionMismatchError, match="max_chars"):
        store.ensure_collection(replace(SPEC, chunking={"max_chars": 500}))
    other.drop()
    assert not other.exists() and store.exists() and other.read_spec() is None


def test_dense_search_is_exact_cosine_with_filters_threshold_and_a_cap_per_article():
    store = MemoryStore(collection="wiki")
    store.ensure_collection(DENSE)
    pairs, vectors = corpus(6, 4)
    store.upsert_pairs(pairs, vectors)
    query = vectors[5] + 0.1
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cosine = unit @ (query / np.linalg.norm(query))
    hits = store.search(query, limit=24)
    assert [h.id for h in hits] == [pairs[i][1].point_id for i in np.argsort(-cosine)]
    assert [h.score for h in hits] == pytest.approx(sorted(cosine, reverse=True), abs=1e-5)
    assert all(h.similarity == pytest.approx(h.score, abs=1e-6) for h in hits)
    titled = store.search(query, limit=24, where=PayloadFilter(titles=("Title 1", "Title 4")))
    assert len(titled) == 8 and {h.payload["title"] for h in titled} == {"Title 1", "Title 4"}
    assert {h.id for h in store.search(query, limit=24, score_threshold=0.05)} == {
        pairs[i][1].point_id for i in np.flatnonzero(cosine >= 0.05)
    }
    capped = store.search(query, limit=6, group_size=1)
    assert len(capped) == 6 and len({h.payload["id"] for h in capped}) == 6


def test_hybrid_search_fuses_the_rankings_as_qdrant_does():
    """Two points, each first in one ranking: Qdrant's weighted RRF over zero-based
    positions, 1 / ((position + 1) / weight + k - 1), with the lexical side a shade heavier."""
    store = MemoryStore(collection="wiki")
    store.ensure_collection(SPEC)
    article = Article("1", "https://en.wikipedia.org/wiki/A", "A", "text")
    pairs = [
        (article, Chunk("1", 0, "kubrick directed films", 0, 1, "A kubrick directed films")),
        (article, Chunk("1", 1, "rivers and hills", 1, 2, "A rivers and hills")),
    ]
    store.upsert_pairs(pairs, np.array([[0.0] * 383 + [1.0], [1.0] + [0.0] * 383], dtype=np.float32))
    query = np.array([1.0] + [0.0] * 383, dtype=np.float32)  # dense: chunk 1 first
    hits = store.search(query, limit=2, sparse=lexical.query_vector("Kubrick", SPEC.sparse))  # lexical: chunk 0 only
    first_in_lexical = RRF_WEIGHTS[1] / (1 + (RRF_K - 1) * RRF_WEIGHTS[1]) + 1 / (2 + RRF_K - 1)
    first_in_dense = 1 / (1 + RRF_K - 1)
    assert [h.id for h in hits] == [pairs[0][1].point_id, pairs[1][1].point_id]
    assert [h.score for h in hits] == pytest.approx([first_in_lexical, first_in_dense])
    assert [h.similarity for h in hits] == pytest.approx([0.0, 1.0], abs=1e-6)  # the cosine, whatever the fusion
    stopwords = store.search(query, limit=2, sparse=lexical.query_vector("the of", SPEC.sparse))
    assert [h.id for h in stopwords] == [pairs[1][1].point_id, pairs[0][1].point_id]  # no lexical side


def test_a_capped_hybrid_search_looks_deeper_than_the_fusion_depth_when_it_must():
    """One article holds the best FUSION_DEPTH + 10 chunks: a cap of one per article still
    finds the other articles, as the embedded store's deeper fetch does."""
    store = MemoryStore(collection="wiki")
    store.ensure_collection(DENSE)
    big = Article("big", "https://en.wikipedia.org/wiki/Big", "Big", "text")
    others = [Article(str(i), f"https://en.wikipedia.org/wiki/{i}", f"T{i}", "text") for i in range(3)]
    pairs = [(big, Chunk("big", j, f"big {j}", j, j + 1, f"big {j}")) for j in range(FUSION_DEPTH * 4 + 10)]
    pairs += [(a, Chunk(a.id, 0, f"other {a.id}", 0, 1, f"other {a.id}")) for a in others]
    vectors = np.zeros((len(pairs), 384), dtype=np.float32)
    vectors[:, 0] = 1.0
    vectors[-3:, 1] = 2.0  # the other articles are furthest from the query
    store.upsert_pairs(pairs, vectors)
    hits = store.search(np.eye(384, dtype=np.float32)[0], limit=4, group_size=1)
    assert [h.payload["id"] for h in hits][0] == "big" and {h.payload["id"] for h in hits} == {"big", "0", "1", "2"}
