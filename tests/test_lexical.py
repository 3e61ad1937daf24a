"""The lexical (BM25) side of hybrid search: terms, weights, and how they land in Qdrant."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from qdrant_client import models

from ingest import lexical
from ingest.lexical import passage_vector, query_vector, stem, term_index, terms
from ingest.store.points import build_batch
from schemas import Article, Chunk, CollectionSpec, ModelSpec, SparseSpec


def test_terms_fold_case_accents_stopwords_and_plurals():
    assert terms("The Beyoncé CITIES' dogs: HAL 9000 turns on its crew in 1969") == [
        "beyonce", "city", "dog", "hal", "9000", "turn", "crew", "1969"]
    assert [stem(w) for w in ("boxes", "churches", "glasses", "analysis", "bus", "series", "as")] == [
        "box", "church", "glass", "analysis", "bus", "sery", "as"]
    assert terms("") == [] and terms("the of and") == []


def test_passage_weights_are_bm25_term_frequencies_hand_checked():
    spec = SparseSpec(k1=1.2, b=0.75, avg_len=4.0)
    indices, values = passage_vector("Kubrick film, Kubrick", spec)  # terms: kubrick x2, film x1; length 3
    weights = dict(zip(indices, values))
    norm = 1.2 * (1 - 0.75 + 0.75 * 3 / 4.0)  # 0.975
    assert weights[term_index("kubrick")] == pytest.approx(2 * 2.2 / (2 + norm))
    assert weights[term_index("film")] == pytest.approx(1 * 2.2 / (1 + norm))
    assert len(weights) == 2
    # a longer passage weighs the same count less (length normalisation)
    longer = dict(zip(*passage_vector("Kubrick film Kubrick " + "word " * 20, spec)))
    assert longer[term_index("kubrick")] < weights[term_index("kubrick")]


def test_queries_weigh_each_distinct_term_once():
    indices, values = query_vector("Kubrick, Kubrick and the films")
    assert indices == [term_index("kubrick"), term_index("film")] and values == [1.0, 1.0]
    assert term_index("kubrick") == 0xFFFFFFFF & __import__("zlib").crc32(b"kubrick")


def test_sparse_vectors_are_written_with_the_chunk_and_ranked_with_idf(memory_store):
    spec = CollectionSpec(model=ModelSpec("m", 4, 512), sparse=lexical.default_spec())
    assert memory_store.ensure_collection(spec) is True
    config = memory_store.client.get_collection("test").config.params.sparse_vectors
    assert config[lexical.SPARSE_VECTOR].modifier == models.Modifier.IDF
    texts = ["a common word and a rare zyzzyva", "a common word", "a common word again", "common words"]
    article = Article(id="a", url="u", title="T", text=" ".join(texts))
    chunks = [Chunk("a", i, t, 0, len(t), t) for i, t in enumerate(texts)]
    memory_store.upsert_pairs([(article, c) for c in chunks], np.eye(4, dtype=np.float32))
    stored = memory_store.client.retrieve("test", ids=[chunks[0].point_id], with_vectors=True)[0].vector
    assert dict(zip(stored["bm25"].indices, stored["bm25"].values)) == pytest.approx(
        dict(zip(*passage_vector(texts[0], spec.sparse))))
    indices, values = query_vector("common zyzzyva")
    found = memory_store.client.query_points("test", query=models.SparseVector(indices=indices, values=values),
                                             using=lexical.SPARSE_VECTOR, limit=4).points
    assert str(found[0].id) == chunks[0].point_id  # the rare term outweighs the common one
    assert found[0].score > 2 * found[1].score


def test_build_batch_without_sparse_writes_the_dense_vector_alone():
    article = Article(id="a", url="u", title="T", text="one two")
    batch = build_batch([(article, Chunk("a", 0, "one two", 0, 7, "one two"))], np.ones((1, 3), np.float32))
    assert batch.vectors == [[1.0, 1.0, 1.0]]
    with_sparse = build_batch([(article, Chunk("a", 0, "one two", 0, 7, "one two"))],
                              np.ones((1, 3), np.float32), lexical.default_spec())
    assert with_sparse.vectors[""] == [[1.0, 1.0, 1.0]] and len(with_sparse.vectors["bm25"]) == 1


def test_dense_only_collections_keep_the_fingerprint_they_had_before_sparse_vectors():
    model = ModelSpec("m", 384, 256)
    before = hashlib.sha256(json.dumps({"model": model.to_dict(), "distance": "cosine", "chunking": {"a": 1}},
                                       sort_keys=True).encode()).hexdigest()[:16]
    assert CollectionSpec(model=model, chunking={"a": 1}).fingerprint == before
    hybrid = CollectionSpec(model=model, chunking={"a": 1}, sparse=lexical.default_spec())
    assert hybrid.fingerprint != before  # adding sparse vectors is a rebuild
    assert CollectionSpec.from_metadata(hybrid.to_metadata()) == hybrid
    assert CollectionSpec.from_metadata(CollectionSpec(model=model).to_metadata()).sparse is None


def test_a_collection_without_sparse_vectors_is_not_silently_written_as_hybrid(memory_store):
    memory_store.client.create_collection("test", vectors_config=models.VectorParams(
        size=4, distance=models.Distance.COSINE))
    spec = CollectionSpec(model=ModelSpec("m", 4, 512), sparse=lexical.default_spec())
    from ingest.errors import CollectionMismatchError

    with pytest.raises(CollectionMismatchError, match="without sparse vectors.*--sparse none"):
        memory_store.ensure_collection(spec)
