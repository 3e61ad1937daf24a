"""The local-mode sparse index must rank exactly as Qdrant does, and never go stale."""

from __future__ import annotations

import numpy as np
import pytest
from qdrant_client import models

from ingest import lexical
from ingest.store import local as sparse_index
from ingest.lexical import SPARSE_VECTOR, query_vector
from ingest.store import PayloadFilter
from ingest.store.local import LocalStore
from ingest.store.points import payload_filter
from schemas import Article, Chunk, CollectionSpec, ModelSpec
from ingest.sources import sample_rows

QUERIES = ["Kubrick film HAL", "ancient Greek temple on a hill in Athens", "the accordion", "Renaissance painting",
           "rock music of the 1990s", "what is the"]


@pytest.fixture(scope="module")
def store():
    store = LocalStore.open(":memory:", collection="t")
    store.ensure_collection(CollectionSpec(model=ModelSpec("m", 8, 512), sparse=lexical.default_spec()))
    rng = np.random.default_rng(0)
    pairs = []
    for row in sample_rows()[:400]:
        article = Article(id=row["title"], url="u", title=row["title"], text=row["text"])
        pairs.append((article, Chunk(article.id, 0, article.text, 0, len(article.text),
                                     f"{article.title}\n{article.text}")))
    store.upsert_pairs(pairs, rng.standard_normal((len(pairs), 8)).astype(np.float32))
    yield store
    store.close()


def qdrant_ranking(store, query, limit):
    indices, values = query_vector(query)
    points = store.client.query_points(store.collection, query=models.SparseVector(indices=indices, values=values),
                                       using=SPARSE_VECTOR, limit=limit).points
    return [(str(p.id), p.score) for p in points]


@pytest.mark.parametrize("query", QUERIES)
def test_the_index_ranks_as_qdrant_does(store, query):
    ours = sparse_index.index_for(store.client, store.collection).top(*query_vector(query), 20)
    theirs = qdrant_ranking(store, query, 20)
    assert [s for _, s in ours] == pytest.approx([s for _, s in theirs], rel=1e-5)
    for (pid, score), (qid, _) in zip(ours, theirs):  # the same points, but for the order of ties
        assert pid == qid or dict(ours)[qid] == pytest.approx(score, rel=1e-5)


@pytest.mark.parametrize("query", QUERIES)
def test_fused_search_matches_qdrants_own_fusion(store, query):
    dense = np.random.default_rng(len(query)).standard_normal(8).astype(np.float32)
    fast = store.search(dense, sparse=query_vector(query), limit=10)  # the local fast path
    indices, values = query_vector(query)
    reference = store.client.query_points(
        store.collection, limit=10, query=models.FusionQuery(fusion=models.Fusion.RRF),
        prefetch=[models.Prefetch(query=dense.tolist(), limit=50)]
        + ([models.Prefetch(query=models.SparseVector(indices=indices, values=values), using=SPARSE_VECTOR,
                            limit=50)] if indices else [])).points
    # Points tied in the sparse ranking may come in another order, which moves their
    # reciprocal ranks a little: the head must agree, and nearly all of the rest.
    assert [h.score for h in fast[:3]] == pytest.approx([p.score for p in reference[:3]])
    assert {h.id for h in fast[:3]} == {str(p.id) for p in reference[:3]}
    assert len({h.id for h in fast} & {str(p.id) for p in reference}) >= 8
    assert all(-1 <= h.similarity <= 1 for h in fast) and all(h.payload["title"] for h in fast)


def test_a_write_drops_the_index(store):
    first = sparse_index.index_for(store.client, store.collection)
    assert sparse_index.index_for(store.client, store.collection) is first  # kept while nothing writes
    article = Article(id="new", url="u", title="Zyzzyva", text="zyzzyva beetles")
    store.upsert_pairs([(article, Chunk("new", 0, article.text, 0, 15, "Zyzzyva\nzyzzyva beetles"))],
                       np.ones((1, 8), np.float32))
    rebuilt = sparse_index.index_for(store.client, store.collection)
    assert rebuilt is not first and rebuilt.top(*query_vector("zyzzyva"), 1)[0][0] == Chunk(
        "new", 0, "", 0, 0, "").point_id
    store.delete_articles(["new"])
    assert sparse_index.index_for(store.client, store.collection).top(*query_vector("zyzzyva"), 1) == []


WHERE = PayloadFilter(titles=tuple(row["title"] for row in sample_rows()[:400:3]))  # a third of the articles
FILTER = payload_filter(WHERE)  # the same, as Qdrant's own filter


@pytest.mark.parametrize("query", QUERIES[:-1])
def test_a_filtered_ranking_matches_qdrants(store, query):
    indices, values = query_vector(query)
    allowed = {str(p.id) for p in store.client.scroll(store.collection, scroll_filter=FILTER, limit=1000)[0]}
    ours = sparse_index.index_for(store.client, store.collection).top(indices, values, 10, allowed=allowed)
    theirs = store.client.query_points(store.collection, query=models.SparseVector(indices=indices, values=values),
                                       using=SPARSE_VECTOR, limit=10, query_filter=FILTER).points
    assert ours and {pid for pid, _ in ours} <= allowed
    assert [s for _, s in ours] == pytest.approx([p.score for p in theirs], rel=1e-5)
    fused = store.search(np.ones(8, np.float32), sparse=(indices, values), limit=10, where=WHERE)
    assert fused and {h.payload["title"] for h in fused} <= set(FILTER.must[0].match.any)


def test_grouped_search_matches_qdrants_groups(store):
    # several chunks per article, so that the cap bites
    rng = np.random.default_rng(1)
    extra = store.at("grouped")
    extra.ensure_collection(CollectionSpec(model=ModelSpec("m", 8, 512), sparse=lexical.default_spec()))
    pairs = []
    for row in sample_rows()[:60]:
        article = Article(id=row["title"], url="u", title=row["title"], text=row["text"])
        pairs += [(article, Chunk(article.id, i, article.text, 0, len(article.text), f"{i} {article.text}"))
                  for i in range(4)]
    extra.upsert_pairs(pairs, rng.standard_normal((len(pairs), 8)).astype(np.float32))
    query = rng.standard_normal(8).astype(np.float32)
    for cap in (1, 2):
        ours = extra.search(query, limit=12, group_size=cap)  # local mode: capped here
        groups = extra.client.query_points_groups("grouped", query=query.tolist(), group_by="id",
                                                  group_size=cap, limit=12).groups
        theirs = sorted((p for g in groups for p in g.hits), key=lambda p: -p.score)[:12]
        assert [h.id for h in ours] == [str(p.id) for p in theirs]
        assert [h.score for h in ours] == pytest.approx([p.score for p in theirs])
    hybrid = extra.search(query, sparse=query_vector("history art"), limit=12, group_size=2)
    counts = {}
    for hit in hybrid:
        counts[hit.payload["id"]] = counts.get(hit.payload["id"], 0) + 1
    assert len(hybrid) == 12 and max(counts.values()) <= 2


def test_filtered_dense_search_matches_qdrants(store):
    query = np.random.default_rng(7).standard_normal(8).astype(np.float32)
    ours = store.search(query, limit=10, where=WHERE)  # local mode: the filter applied from the index
    theirs = store.client.query_points(store.collection, query=query.tolist(), limit=10, query_filter=FILTER).points
    assert [h.id for h in ours] == [str(p.id) for p in theirs]
    assert [h.score for h in ours] == pytest.approx([p.score for p in theirs], abs=1e-5)
    allowed = {str(p.id) for p in store.client.scroll(store.collection, scroll_filter=FILTER, limit=1000)[0]}
    assert store.sparse is not None and sparse_index.index_for(store.client, store.collection).allowed(WHERE) == allowed
