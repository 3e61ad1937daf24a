"""The search API on a small real index: the bundled model, the embedded engine
(Qdrant Edge), articles cut into short chunks so that neighbours and per-article limits
have something to work on."""

from __future__ import annotations

import json

import numpy as np
import pytest
import qdrant_edge

from ingest.chunking import ChunkingSettings
from ingest.embedders.local import LocalEmbedder
from ingest.errors import CollectionMismatchError, StoreError
from ingest.jobs import run_ingest
from ingest.lexical import SPARSE_VECTOR, query_vector
from ingest.settings import IngestSettings, StoreSettings
from ingest.sources import sample_rows
from ingest.store.edge import EdgeStore
from schemas import point_id
from search import Searcher, SearchError
from search.api import SearchOptions, SearchUsageError
from search.context import build_context

LONG = ("Cro-Magnon", "History of the United States", "Newfoundland (island)", "Madhvacharya")


def rows():
    everything = sample_rows()
    return everything[:30] + [r for r in everything if r["title"] in LONG]


def ingest(tmp_path, embedder, **kwargs):
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows()))
    settings = IngestSettings(
        source=str(source),
        progress=False,
        dead_letter=str(tmp_path / "dl.jsonl"),
        chunking=ChunkingSettings(max_chars=300),
        store=StoreSettings(qdrant_path=str(tmp_path / "qdrant"), collection="wiki"),
        **kwargs,
    )
    run_ingest(settings, embedder=embedder)
    return settings


@pytest.fixture(scope="module")
def index(tmp_path_factory, local_embedder):
    settings = ingest(tmp_path_factory.mktemp("search"), local_embedder)
    with Searcher.open(settings.store, embedder=local_embedder) as searcher:
        yield searcher


@pytest.fixture(scope="module")
def articles():
    return {r["title"]: r for r in rows()}


def test_hits_are_ranked_typed_and_cite_their_article(index, articles):
    hits = index.search("the space film in which the computer HAL 9000 turns on its crew", k=5)
    assert hits[0].title == "2001: A Space Odyssey" and index.default_mode == "hybrid"
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
    for hit in hits:
        assert hit.url == "https://en.wikipedia.org/wiki/" + hit.title.replace(" ", "_")
        assert articles[hit.title]["text"][hit.start : hit.end] == hit.text  # offsets locate the passage
        assert hit.point_id == point_id(hit.article_id, hit.chunk_index)
        assert -1.0 <= hit.similarity <= 1.0


def test_hybrid_fuses_the_lexical_and_the_dense_ranking(index):
    query = "Madhva Dvaita Vedanta"
    dense = index.search(query, k=5, mode="dense")
    hybrid = index.search(query, k=5, mode="hybrid")
    # the lexical ranking on its own, straight from Qdrant
    terms = query_vector(query, index.spec.sparse)
    lexical = index.store._shard.query(
        qdrant_edge.QueryRequest(
            limit=5,
            query=qdrant_edge.Query.Nearest(qdrant_edge.SparseVector(terms.indices, terms.values), using=SPARSE_VECTOR),
            with_payload=True,
        )
    )
    assert lexical and lexical[0].payload["title"] == "Madhvacharya"
    assert hybrid[0].title == "Madhvacharya"
    fused = {h.point_id for h in hybrid}
    assert str(lexical[0].id) in fused and dense[0].point_id in fused
    # ranked by the fused score (reciprocal ranks), not by cosine
    assert all(a.score >= b.score for a, b in zip(hybrid, hybrid[1:]))
    # the similarity of a fused hit is its cosine, as dense search reports it
    by_id = {h.point_id: h for h in index.search(query, k=50, mode="dense")}
    for hit in hybrid:
        if hit.point_id in by_id:
            assert hit.similarity == pytest.approx(by_id[hit.point_id].similarity, abs=1e-5)


def test_a_query_of_stopwords_only_still_gets_dense_hits(index):
    assert query_vector("what is the", index.spec.sparse).indices == []
    assert len(index.search("what is the", k=3, mode="hybrid")) == 3


def test_score_threshold_keeps_only_hits_at_least_that_similar(index):
    query = "a painting of people relaxing in a park by a river"
    everything = index.search(query, k=20, mode="dense")
    threshold = (everything[4].similarity + everything[5].similarity) / 2  # between two hits: no rounding ties
    for mode in ("dense", "hybrid"):
        kept = index.search(query, k=20, mode=mode, score_threshold=threshold)
        assert kept and all(h.similarity >= threshold for h in kept)
    dense = index.search(query, k=20, mode="dense", score_threshold=threshold)
    assert [h.point_id for h in dense] == [h.point_id for h in everything if h.similarity >= threshold]
    assert index.search(query, k=5, score_threshold=0.99) == []


def test_filters_restrict_hits_to_the_named_articles(index, articles):
    query = "history of the settlement and colonies"
    for mode in ("dense", "hybrid"):
        by_title = index.search(query, k=10, mode=mode, titles=["Newfoundland (island)", "Cro-Magnon"])
        assert by_title and {h.title for h in by_title} <= {"Newfoundland (island)", "Cro-Magnon"}
        by_id = index.search(query, k=10, mode=mode, article_ids=[by_title[0].article_id])
        assert by_id and {h.article_id for h in by_id} == {by_title[0].article_id}
        url = "https://en.wikipedia.org/wiki/Cro-Magnon"
        by_url = index.search(query, k=10, mode=mode, urls=[url])
        assert by_url and {h.url for h in by_url} == {url}
        # several filters: all of them hold
        assert (
            index.search(query, k=10, mode=mode, titles=["Cro-Magnon"], urls=[by_title[0].url]) == []
            or by_title[0].title == "Cro-Magnon"
        )
    with pytest.raises(SearchUsageError, match="titles must hold at least one value"):
        index.search(query, titles=[])
    assert index.search(query, k=3, titles="Cro-Magnon") == index.search(query, k=3, titles=["Cro-Magnon"])


def test_max_per_article_caps_hits_per_article_without_losing_the_best(index):
    query = "history of the United States colonies independence war"
    for mode in ("dense", "hybrid"):
        uncapped = index.search(query, k=30, mode=mode)
        assert max(sum(h.article_id == a.article_id for h in uncapped) for a in uncapped) > 1
        capped = index.search(query, k=5, mode=mode, max_per_article=1)
        assert len(capped) == 5 and len({h.article_id for h in capped}) == 5
        if mode == "dense":  # the best hit of each of the best five articles, in order
            best, seen = [], set()
            for hit in uncapped:
                if hit.article_id not in seen:
                    seen.add(hit.article_id)
                    best.append(hit.point_id)
            assert [h.point_id for h in capped] == best[:5]
        two = index.search(query, k=6, mode=mode, max_per_article=2)
        counts = {}
        for hit in two:
            counts[hit.article_id] = counts.get(hit.article_id, 0) + 1
        assert max(counts.values()) <= 2


def test_neighbours_widen_each_hit_to_the_chunks_around_it(index, articles):
    hits = index.search("Cro-Magnon", k=3, titles=["Cro-Magnon"], neighbours=1)
    count = len(index.search("Cro-Magnon", k=100, titles=["Cro-Magnon"], mode="dense"))
    assert count >= 4
    for hit in hits:
        text = articles["Cro-Magnon"]["text"]
        assert hit.context_first == max(0, hit.chunk_index - 1)
        assert hit.context_last == min(count - 1, hit.chunk_index + 1)
        # merged without repeats or gaps (the whitespace between chunks reads as one space)
        assert hit.context.split() == text[hit.context_start : hit.context_end].split()
        assert hit.context_start <= hit.start and hit.end <= hit.context_end and hit.text in hit.context
    plain = index.search("Cro-Magnon", k=3, titles=["Cro-Magnon"])
    assert [h.point_id for h in plain] == [h.point_id for h in hits] and plain[0].context is None


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"query": "   "}, "the query is empty"),
        ({"query": "x", "k": 0}, "k must be between 1 and 100"),
        ({"query": "x", "mode": "sparse"}, "mode must be one of dense, hybrid, got 'sparse'"),
        ({"query": "x", "score_threshold": 2.0}, "between -1 and 1"),
        ({"query": "x", "max_per_article": 0}, "max_per_article must be at least 1"),
        ({"query": "x", "neighbours": 9}, "neighbours must be between 0 and 5"),
    ],
)
def test_bad_arguments_are_refused_with_a_message(index, kwargs, message):
    with pytest.raises(SearchUsageError, match=message) as refused:
        index.search(**kwargs)
    assert isinstance(refused.value, ValueError) and not isinstance(refused.value, StoreError)


def test_options_are_one_model_given_whole_or_as_keywords(index):
    query = "the space film in which the computer HAL 9000 turns on its crew"
    options = SearchOptions(k=2, mode="dense", max_per_article=1)
    assert index.search(query, options) == index.search(query, k=2, mode="dense", max_per_article=1)
    assert [h.rank for h in index.search(query, options, k=3)] == [1, 2, 3]  # a keyword changes one option
    with pytest.raises(TypeError, match="unknown search option.*limit"):
        index.search(query, limit=3)
    with pytest.raises(SearchUsageError, match=r"k must be between 1 and 100, got 0 \(and 1 more problem\)"):
        index.search(query, k=0, neighbours=9)


def test_context_block_numbers_sources_within_the_budget(index):
    hits = index.search("Cro-Magnon early modern humans in Europe", k=6, neighbours=1)
    context = build_context(hits, max_chars=1200)
    assert len(context.text) <= 1200 and context.sources
    assert context.text.startswith("[1] ")
    for number, source in enumerate(context.sources, start=1):
        assert f"[{number}] {source.title} — {source.url}\n" in context.text
    assert len({s.article_id for s in context.sources}) == len(context.sources)  # one source per article
    # neighbouring hits of one article became one passage: no sentence twice
    sentences = [s for s in context.text.replace("\n", " ").split(". ") if len(s) > 40]
    assert len(sentences) == len(set(sentences))
    by_tokens = index.context("Cro-Magnon early modern humans in Europe", max_tokens=120, k=6)
    assert index.embedder.count_tokens([by_tokens.text])[0] <= 120 and by_tokens.sources


def test_a_dense_only_collection_searches_densely_and_refuses_hybrid(tmp_path, local_embedder):
    settings = ingest(tmp_path, local_embedder, sparse="none", limit=5)
    with Searcher.open(settings.store, embedder=local_embedder) as searcher:
        assert searcher.default_mode == "dense" and searcher.spec.sparse is None
        assert searcher.search("a film", k=2)
        with pytest.raises(SearchError, match="no sparse vectors.*--sparse bm25"):
            searcher.search("a film", mode="hybrid")


def test_the_local_backend_puts_the_instruction_on_queries_only(local_embedder):
    instructed = LocalEmbedder(device="cpu", dtype="float32", query_instruction="Represent this sentence: ")
    query = "who painted the Mona Lisa"
    asked = instructed.embed_queries([query])[0]
    np.testing.assert_allclose(
        asked, local_embedder.embed_passages(["Represent this sentence: " + query]).vectors[0], atol=1e-5
    )
    assert not np.allclose(asked, local_embedder.embed_passages([query]).vectors[0], atol=1e-3)
    np.testing.assert_allclose(
        instructed.embed_passages([query]).vectors[0], local_embedder.embed_passages([query]).vectors[0], atol=1e-5
    )


def test_a_searcher_refuses_an_embedder_without_the_collections_instruction(tmp_path, local_embedder):
    instructed = LocalEmbedder(device="cpu", dtype="float32", query_instruction="Represent this sentence: ")
    settings = ingest(tmp_path, instructed, limit=3)
    store = EdgeStore.open(settings.store.qdrant_path, collection=settings.store.collection)
    try:
        with pytest.raises(CollectionMismatchError, match="expects the query instruction 'Represent this"):
            Searcher.open(settings.store, embedder=local_embedder, store=store)
        with Searcher.open(settings.store, embedder=instructed, store=store) as searcher:
            assert searcher.spec.model.query_instruction == "Represent this sentence: "
            assert searcher.search("a painting", k=1)
    finally:
        store.close()


def test_the_latency_bench_times_every_option_on_every_question(index):
    from search.bench import format_report, run
    from search.evaluation import Question

    questions = [Question("early modern humans in Europe", "Cro-Magnon"), Question("Dvaita Vedanta", "Madhvacharya")]
    seconds = run(index, questions)
    assert {
        "hybrid",
        "dense",
        "hybrid, title filter (4 articles)",
        "dense, max_per_article=1",
        "hybrid, neighbours=1",
        "hybrid, context of 4,000 characters",
    } <= set(seconds)
    assert all(len(values) == 2 and min(values) > 0 for values in seconds.values())
    report = format_report(seconds).splitlines()
    assert report[0].split() == ["option", "median", "p95", "queries"] and len(report) == len(seconds) + 2
