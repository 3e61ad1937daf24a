"""Each article's definition (`ingest.definitions`): the cut rule on real lead sections, and the
definition vectors through every backend, the pipeline, a copy and a rebuild."""

import numpy as np
import pytest

from ingest.definitions import CUT, MAX_WORDS, definition_text, first_sentence
from ingest.settings import IngestSettings
from ingest.store.base import DEFINITION_WEIGHT, RRF_K, Fused, with_definitions


@pytest.mark.parametrize(
    "text, wanted",
    [
        (
            "Nepal, officially the Federal Democratic Republic of Nepal, is a landlocked country in South Asia. "
            "It is mainly situated in the Himalayas.",
            "a landlocked country in South Asia",
        ),
        ("St. Petersburg is a city in Russia. It was founded in 1703.", "a city in Russia"),
        ("J. R. R. Tolkien was an English writer. He wrote The Hobbit.", "an English writer"),
        (
            "Vincent van Gogh (1853 – 1890; he is buried at Auvers) was a Dutch painter. He is famous.",
            "a Dutch painter",
        ),
        (  # full stops inside brackets, after an abbreviation or an initial, do not end the sentence
            "The Dead Sea is a salt lake bordered by Jordan (c. 1500 B.C. and on). Its surface is low.",
            "a salt lake bordered by Jordan (c. 1500 B.C. and on)",
        ),
        ("In mathematics, a group is a set with an operation. Groups are everywhere.", "a set with an operation"),
        ("Helium refers to the element with the symbol He. It is light.", "the element with the symbol He"),
        ("Ants. Ants are insects.", "Ants"),  # no verb to cut at: the whole first sentence
        ("", ""),
    ],
)
def test_the_definition_is_the_first_sentence_after_its_verb(text, wanted):
    assert definition_text(text) == wanted


def test_a_long_definition_is_cut_to_its_first_words_and_the_sentence_ends_where_the_text_does():
    text = "Paris is " + " ".join(f"word{i}" for i in range(100))  # no full stop at all
    assert first_sentence(text) == text
    assert definition_text(text).split() == [f"word{i}" for i in range(MAX_WORDS)]


def test_real_lead_sections_give_short_definitions():
    """Over the bundled sample's 10,033 lead sections: every one has a definition, short
    beside its lead, and most are cut after their verb."""
    from ingest.sources import sample_rows

    rows = list(sample_rows())
    definitions = [definition_text(row["text"]) for row in rows]
    assert all(definitions)
    assert np.mean([len(d) for d in definitions]) < 0.3 * np.mean([len(row["text"]) for row in rows])
    cut = sum(not row["text"].startswith(d) for row, d in zip(rows, definitions))
    assert cut > 0.9 * len(rows)
    by_title = {row["title"]: d for row, d in zip(rows, definitions)}
    assert by_title["Nepal"] == "a landlocked country in South Asia"


def test_the_setting_names_the_cut_rule():
    assert IngestSettings().definitions == CUT


def test_a_definition_speaks_for_its_article_through_the_articles_best_passage():
    """The definition ranking's reciprocal-rank term goes to the article's best point of the
    hybrid ranking, whichever chunk it is; an article only the definitions found enters with
    its first chunk and that term alone."""

    def point(article, chunk, score=0.0):
        return Fused(f"{article}/{chunk}", score, {"id": article, "chunk_index": chunk}, None)

    fused = [point("a", 3, 1.0), point("b", 1, 0.9), point("b", 0, 0.8), point("c", 0, 0.5)]
    defined = [point("b", 0), point("d", 0), point("a", 0)]
    merged = with_definitions(fused, defined, lambda p: p.payload["id"])

    def term(position):
        return 1 / ((position + 1) / DEFINITION_WEIGHT + RRF_K - 1)

    assert [p.id for p in merged] == ["b/1", "a/3", "b/0", "c/0", "d/0"]
    scores = {p.id: p.score for p in merged}
    assert scores["b/1"] == pytest.approx(0.9 + term(0)) and scores["a/3"] == pytest.approx(1.0 + term(2))
    assert scores["b/0"] == 0.8 and scores["d/0"] == pytest.approx(term(1))


# -- the definition vectors in every backend ------------------------------------
def _store(backend, collection="defs"):
    from ingest.store import MemoryStore
    from ingest.store.edge import EdgeStore
    from tests.qdrant_standin import server_stand_in

    if backend == "edge":
        return EdgeStore.open(":memory:", collection=collection)
    if backend == "server":
        return server_stand_in(collection)
    return MemoryStore(collection=collection)


def _spec(definition):
    from dataclasses import replace

    from ingest import lexical
    from schemas import KNOWN_MODELS, CollectionSpec

    model = KNOWN_MODELS["sentence-transformers/all-MiniLM-L6-v2"]
    spec = CollectionSpec(model=model, chunking={"title_prefix": True}, sparse=lexical.default_spec())
    return replace(spec, definition=definition)


def _articles(n=30, dim=384):
    """`n` one-chunk articles with random vectors, then a two-chunk one; the query's own vector is
    the chunk vector of article 0 and the definition vector of article 1."""
    from schemas import Article, Chunk

    rng = np.random.default_rng(7)
    pairs = []
    for i in range(n):
        article = Article(f"a{i}", f"https://en.wikipedia.org/wiki/A{i}", f"A{i}", f"A{i} is thing {i}.")
        pairs.append((article, Chunk(article.id, 0, article.text, 0, len(article.text), f"A{i}\n{article.text}")))
    long = Article("long", "https://en.wikipedia.org/wiki/Long", "Long", "Long is long. More text.")
    pairs += [(long, Chunk("long", i, f"part {i}", i, i + 1, f"Long\npart {i}")) for i in range(2)]
    vectors = rng.normal(size=(len(pairs), dim)).astype(np.float32)
    query = vectors[0].copy()
    definitions = {i: rng.normal(size=dim).astype(np.float32) for i, (_, c) in enumerate(pairs) if c.chunk_index == 0}
    definitions[1] = query.copy()
    definitions[n] = vectors[n + 1].copy()  # the long article's definition says what its second chunk does
    return pairs, vectors, definitions, query


@pytest.mark.parametrize("backend", ["edge", "server", "memory"])
def test_every_backend_stores_reads_copies_and_searches_the_definition_vectors(backend):
    from ingest.lexical import SparseQuery

    pairs, vectors, definitions, query = _articles()
    store, plain = _store(backend), _store(backend, "plain")
    try:
        store.ensure_collection(_spec(CUT))
        plain.ensure_collection(_spec(None))
        store.upsert_pairs(pairs, vectors, definitions)
        plain.upsert_pairs(pairs, vectors, definitions)  # a collection without them drops them
        ids = [c.point_id for _, c in pairs]

        stored = store.stored_vectors(ids)
        for i, (_, chunk) in enumerate(pairs):
            kept = stored[chunk.point_id].definition
            if chunk.chunk_index == 0:
                assert kept is not None and np.allclose(
                    kept / np.linalg.norm(kept), definitions[i] / np.linalg.norm(definitions[i]), atol=1e-5
                )
            else:
                assert kept is None
        assert all(v.definition is None for v in plain.stored_vectors(ids).values())
        exported = {p.id: p for page in store.export_points() for p in page}
        assert sum(p.definition is not None for p in exported.values()) == len(definitions)

        no_terms = SparseQuery([], [])  # a hybrid search with no lexical side: dense and definitions
        fused = [h.payload["id"] for h in store.search(query, limit=3, sparse=no_terms)]
        assert fused[:2] == ["a0", "a1"] or fused[:2] == ["a1", "a0"]
        alone = [h.payload["id"] for h in plain.search(query, limit=3, sparse=no_terms)]
        assert alone[0] == "a0" and "a1" not in alone  # its chunk's vector is a random one
        dense = [h.payload["id"] for h in store.search(query, limit=3)]
        assert dense[0] == "a0" and "a1" not in dense  # dense mode: the chunks' vectors alone
        deep = store.search(vectors[-1], limit=3, sparse=no_terms)  # what the long article's second chunk says
        assert (deep[0].payload["id"], deep[0].payload["chunk_index"]) == ("long", 1)  # the passage, not chunk 0
        assert deep[0].score == pytest.approx(1 / (1 + RRF_K - 1) + 1 / (1 / DEFINITION_WEIGHT + RRF_K - 1))

        copy = _store("memory" if backend != "memory" else "edge", "copy")
        copy.ensure_collection(_spec(CUT))
        for page in store.export_points():
            copy.import_points(page, [p.payload["text"] for p in page])
        copied = copy.stored_vectors(ids)
        assert sum(v.definition is not None for v in copied.values()) == len(definitions)
        assert [h.payload["id"] for h in copy.search(query, limit=2, sparse=no_terms)] == fused[:2]
        copy.close()
    finally:
        store.close()
        plain.close()
