"""The RAG context builder on hand-made hits: numbering, merging, dedupe, budgets."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from search.context import build_context, merge_passages

ARTICLE = "Alpha one. Beta two. Gamma three. Delta four. Epsilon five."


@dataclass
class H:
    article_id: str
    title: str
    url: str
    text: str
    start: int
    end: int
    score: float = 1.0


def piece(article_id, start, end, text=ARTICLE, title=None):
    return H(article_id, title or f"Title {article_id}", f"https://x/{article_id}", text[start:end], start, end)


def test_overlapping_and_touching_pieces_merge_without_repeats():
    # "Alpha one. Beta two." [0, 20), overlap "Beta two. Gamma three." [11, 33), gap-separated "Delta four." [34, 45)
    merged = merge_passages([(11, 33, ARTICLE[11:33]), (0, 20, ARTICLE[0:20]), (34, 45, ARTICLE[34:45])])
    assert [(p.start, p.end) for p in merged] == [(0, 45)]
    assert merged[0].text == "Alpha one. Beta two. Gamma three. Delta four."
    apart = merge_passages([(0, 10, ARTICLE[0:10]), (46, 59, ARTICLE[46:59])])
    assert [p.text for p in apart] == ["Alpha one.", "Epsilon five."]
    inside = merge_passages([(0, 33, ARTICLE[0:33]), (11, 20, ARTICLE[11:20])])
    assert [p.text for p in inside] == [ARTICLE[0:33]]


def test_sources_are_numbered_by_best_hit_one_per_article():
    hits = [piece("b", 0, 10), piece("a", 11, 20), piece("b", 46, 59), piece("a", 0, 10)]
    context = build_context(hits)
    assert context.text == (
        "[1] Title b — https://x/b\nAlpha one.\n…\nEpsilon five.\n\n[2] Title a — https://x/a\nAlpha one. Beta two."
    )
    assert [(s.number, s.article_id) for s in context.sources] == [(1, "b"), (2, "a")]
    assert not context.truncated


def test_the_same_text_under_two_articles_is_kept_once():
    hits = [piece("a", 0, 10), piece("copy", 0, 10), piece("c", 11, 20)]
    context = build_context(hits)
    assert [s.article_id for s in context.sources] == ["a", "c"]
    assert context.text.count("Alpha one.") == 1 and "[2] Title c" in context.text


def test_a_character_budget_is_kept_and_the_last_passage_cut_at_a_sentence():
    long_text = " ".join(f"Sentence number {i} is about the topic at hand." for i in range(40))
    hits = [piece("a", 0, 100, ARTICLE + " " * 41), H("b", "Title b", "https://x/b", long_text, 0, len(long_text))]
    context = build_context(hits, max_chars=400)
    assert len(context.text) <= 400 and context.truncated
    assert context.text.endswith(". …") and "[2] Title b" in context.text
    assert [s.number for s in context.sources] == [1, 2]
    tiny = build_context(hits, max_chars=30)  # not even the first header and a useful part fit
    assert tiny.text == "" and tiny.sources == [] and tiny.truncated


def test_a_token_budget_uses_the_given_counter():
    words = lambda text: len(text.split())  # noqa: E731
    hits = [piece("a", 0, 20), piece("b", 21, 45), piece("c", 46, 59)]
    context = build_context(hits, max_tokens=20, count_tokens=words)  # 9 words a source
    assert words(context.text) <= 20 and context.truncated and [s.article_id for s in context.sources] == ["a", "b"]
    with pytest.raises(ValueError, match="max_tokens needs count_tokens"):
        build_context(hits, max_tokens=10)
    with pytest.raises(ValueError, match="max_chars must be at least 1"):
        build_context(hits, max_chars=0)
