"""The lexical (BM25) side of hybrid search: Qdrant's standard BM25, its terms and
weights, and how they land in the store."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from ingest import lexical
from ingest.errors import CollectionMismatchError
from ingest.lexical import SparseQuery, passage_vector, query_vector
from ingest.store.legacy import LegacyStore
from ingest.store.points import build_batch
from schemas import Article, Chunk, CollectionSpec, ModelSpec, SparseSpec

STANDARD = lexical.default_spec()


def murmur3_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3 x86_32, written from its reference description: an independent
    check of the term ids Qdrant's `bm25` crate (server and Edge) and FastEmbed use."""
    c1, c2, h = 0xCC9E2D51, 0x1B873593, seed
    rotl = lambda x, r: ((x << r) | (x >> (32 - r))) & 0xFFFFFFFF  # noqa: E731
    tail = len(data) & ~3
    for i in range(0, tail, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = rotl((k * c1) & 0xFFFFFFFF, 15) * c2 & 0xFFFFFFFF
        h = (rotl(h ^ k, 13) * 5 + 0xE6546B64) & 0xFFFFFFFF
    k = int.from_bytes(data[tail:], "little") if len(data) & 3 else 0
    if len(data) & 3:
        h ^= rotl((k * c1) & 0xFFFFFFFF, 15) * c2 & 0xFFFFFFFF
    h ^= len(data)
    for shift, mult in ((16, 0x85EBCA6B), (13, 0xC2B2AE35)):
        h = (h ^ (h >> shift)) * mult & 0xFFFFFFFF
    return h ^ (h >> 16)


def term_id(token: str) -> int:
    signed = murmur3_32(token.encode("utf-8"))
    return abs(signed - (1 << 32) if signed >= 1 << 31 else signed)


def test_terms_are_qdrant_standard_bm25_ids_of_stemmed_words():
    query = query_vector("Kubrick's films", STANDARD)
    assert sorted(query.indices) == sorted([term_id("kubrick"), term_id("film")]) and query.values == [1.0, 1.0]
    # Snowball English, as a Qdrant server stems: plurals and -ing forms fold ("texas" -> "texa" too)
    assert query_vector("Texas", STANDARD).indices == [term_id("texa")]
    assert query_vector("running runs", STANDARD).indices == query_vector("run", STANDARD).indices
    assert query_vector("cities", STANDARD).indices == query_vector("city", STANDARD).indices
    assert query_vector("the of and", STANDARD) == SparseQuery([], [])  # stopwords only: no lexical side


def test_passage_weights_are_bm25_term_frequencies_hand_checked():
    spec = SparseSpec(tokenizer="qdrant/bm25", language="english", k1=1.2, b=0.75, avg_len=4.0)
    weights = dict(zip(*passage_vector("Kubrick film, Kubrick", spec)))  # kubrick x2, film x1; length 3
    norm = 1.2 * (1 - 0.75 + 0.75 * 3 / 4.0)  # 0.975
    assert weights[term_id("kubrick")] == pytest.approx(2 * 2.2 / (2 + norm), rel=1e-6)
    assert weights[term_id("film")] == pytest.approx(1 * 2.2 / (1 + norm), rel=1e-6)
    assert len(weights) == 2
    longer = dict(zip(*passage_vector("Kubrick film Kubrick " + "word " * 20, spec)))
    assert longer[term_id("kubrick")] < weights[term_id("kubrick")]  # length normalisation


def test_the_earlier_words_v1_analyser_still_reads_its_collections():
    legacy = SparseSpec(tokenizer="words-v1", k1=1.2, b=0.75, avg_len=48.0)
    crc = __import__("zlib").crc32
    assert query_vector("Kubrick, Kubrick and the films", legacy) == SparseQuery(
        [crc(b"kubrick"), crc(b"film")], [1.0, 1.0]
    )
    assert query_vector("Texas", legacy).indices == [crc(b"texa")]  # its known stemming bug, kept to match its vectors


def test_an_unknown_analyser_in_a_record_is_named():
    with pytest.raises(Exception, match="unknown lexical analyser 'words-v9'"):
        query_vector("x", SparseSpec(tokenizer="words-v9"))


def test_sparse_vectors_are_written_with_the_chunk_and_ranked_with_idf(memory_store):
    spec = CollectionSpec(model=ModelSpec("m", 4, 512), sparse=STANDARD)
    assert memory_store.ensure_collection(spec) is True
    texts = ["a common word and a rare zyzzyva", "a common word", "a common word again", "common words"]
    article = Article(id="a", url="u", title="T", text=" ".join(texts))
    chunks = [Chunk("a", i, t, 0, len(t), t) for i, t in enumerate(texts)]
    memory_store.upsert_pairs([(article, c) for c in chunks], np.eye(4, dtype=np.float32))
    shard = memory_store._shard  # the engine itself: what was stored
    stored = shard.retrieve([chunks[0].point_id], False, ["bm25"])[0].vector["bm25"]
    assert dict(zip(stored.indices, stored.values)) == pytest.approx(dict(zip(*passage_vector(texts[0], STANDARD))))
    # the rare term outweighs the common one (IDF, from the engine), whatever the dense side says
    hits = memory_store.search(
        np.array([0, 0, 0, 1], np.float32), limit=4, sparse=query_vector("common zyzzyva", STANDARD)
    )
    assert hits[0].id in (chunks[0].point_id, chunks[3].point_id)
    lexical_only = [
        h.id
        for h in memory_store.search(
            np.array([0, 0, 0, 1], np.float32), limit=4, sparse=query_vector("zyzzyva", STANDARD)
        )
    ]
    assert chunks[0].point_id in lexical_only[:2]


def test_build_batch_without_sparse_writes_the_dense_vector_alone():
    article = Article(id="a", url="u", title="T", text="one two")
    batch = build_batch([(article, Chunk("a", 0, "one two", 0, 7, "one two"))], np.ones((1, 3), np.float32))
    assert batch.vectors == [[1.0, 1.0, 1.0]]
    with_sparse = build_batch(
        [(article, Chunk("a", 0, "one two", 0, 7, "one two"))], np.ones((1, 3), np.float32), STANDARD
    )
    assert with_sparse.vectors[""] == [[1.0, 1.0, 1.0]] and len(with_sparse.vectors["bm25"]) == 1


def test_fingerprints_cover_the_analyser_and_earlier_records_keep_theirs():
    model = ModelSpec("m", 384, 256)
    before = hashlib.sha256(
        json.dumps({"model": model.to_dict(), "distance": "cosine", "chunking": {"a": 1}}, sort_keys=True).encode()
    ).hexdigest()[:16]
    assert CollectionSpec(model=model, chunking={"a": 1}).fingerprint == before
    hybrid = CollectionSpec(model=model, chunking={"a": 1}, sparse=STANDARD)
    assert hybrid.fingerprint != before  # adding sparse vectors is a rebuild
    assert CollectionSpec.from_metadata(hybrid.to_metadata()) == hybrid
    assert CollectionSpec.from_metadata(CollectionSpec(model=model).to_metadata()).sparse is None
    # a words-v1 record, as earlier versions wrote it, reads back to the same fingerprint
    old = {"name": "bm25", "tokenizer": "words-v1", "k1": 1.2, "b": 0.75, "avg_len": 48.0}
    shape = {"model": model.to_dict(), "distance": "cosine", "chunking": {"a": 1}, "sparse": old}
    recorded = hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]
    assert CollectionSpec(model=model, chunking={"a": 1}, sparse=SparseSpec.from_dict(old)).fingerprint == recorded
    assert (
        CollectionSpec(model=model, chunking={"a": 1}, sparse=SparseSpec.from_dict(old)).fingerprint
        != hybrid.fingerprint
    )  # another analyser is another build


def test_new_collections_leave_titles_out_of_the_terms_and_earlier_records_keep_them():
    """The default (tuned on the short queries, `lexical.K1`/`B`): a chunk's terms are
    its text's, not its title's; a record written before the setting existed means
    titles in, and keeps its fingerprint."""
    assert (STANDARD.k1, STANDARD.b, STANDARD.include_title) == (0.3, 0.5, False)
    chunk = Chunk("1", 0, "Father of the computer.", 0, 23, "Charles Babbage\nFather of the computer.")
    assert lexical.passage_text(chunk.embed_text, chunk.text, STANDARD) == chunk.text
    (batch,) = build_batch(
        [(Article("1", "u", "Charles Babbage", chunk.text), chunk)], np.ones((1, 384), np.float32), STANDARD
    ).vectors["bm25"]
    assert sorted(batch.indices) == sorted([term_id("father"), term_id("comput")])  # no "charl", "babbag"
    earlier = {"name": "bm25", "tokenizer": "qdrant/bm25", "k1": 1.2, "b": 0.75, "avg_len": 48.0, "language": "english"}
    read = SparseSpec.from_dict(earlier)
    assert read.include_title and read.to_dict() == earlier  # so the fingerprint is the one recorded
    assert lexical.passage_text(chunk.embed_text, chunk.text, read) == chunk.embed_text
    assert "include_title" in STANDARD.to_dict() and SparseSpec.from_dict(STANDARD.to_dict()) == STANDARD


def test_a_server_collection_without_sparse_vectors_is_not_silently_written_as_hybrid():
    from qdrant_client import models

    store = LegacyStore.open(":memory:", collection="test")  # the server backend over qdrant-client's local mode
    store.client.create_collection("test", vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE))
    with pytest.raises(CollectionMismatchError, match="without sparse vectors.*--sparse none"):
        store.ensure_collection(CollectionSpec(model=ModelSpec("m", 4, 512), sparse=STANDARD))
