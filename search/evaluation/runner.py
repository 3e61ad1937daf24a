"""A question set through a searcher: each question asked (in every mode compared,
in turn, so that latencies share the machine's moods), the ranked chunks collapsed
to ranked articles, scored (`metrics`) and formatted."""

from __future__ import annotations

import logging
import textwrap
import time
from dataclasses import replace
from typing import Callable, Iterable, Protocol, Sequence

import numpy as np

from ingest.errors import SettingsError
from ingest.progress import Progress
from ingest.store import PayloadFilter
from search.evaluation.metrics import DEFAULT_KS, EvalResult, evaluate
from search.evaluation.questions import Question

log = logging.getLogger("search.eval")

CHUNKS_PER_ARTICLE = 3  # chunks asked for per wanted article, so that dedupe still leaves max(k) articles


class _HitLike(Protocol):
    title: str
    article_id: str


class _SearcherLike(Protocol):
    def search(self, query: str, *, k: int = ...) -> Sequence[_HitLike]: ...


def rank_articles(hits: Iterable[_HitLike]) -> list[str]:
    """Titles of the distinct articles behind ranked chunks; an article ranks where its first chunk does."""
    seen, titles = set(), []
    for hit in hits:
        key = hit.article_id or hit.title
        if key not in seen:
            seen.add(key)
            titles.append(hit.title)
    return titles


def run_eval(
    searcher: _SearcherLike,
    questions: Sequence[Question],
    *,
    ks: Sequence[int] = DEFAULT_KS,
    chunks: int | None = None,
    mode: str | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> EvalResult:
    """Ask every question, rank the articles behind the chunks it gets back, and score the set.

    `chunks` is how many chunks to retrieve per question (default 3 x max(k)), so that
    max(k) distinct articles usually remain after several chunks of one article collapse.
    `mode`: the searcher's retrieval mode ("dense", "hybrid"; None: its default).
    """
    return compare_modes(searcher, questions, modes=(mode,), ks=ks, chunks=chunks, clock=clock)[mode]


def unindexed_answers(store, dimension: int, questions: Sequence[Question]) -> list[str]:
    """The answering titles that no point of the collection has (a partial index, or
    questions written for another corpus): recall counts their questions as misses."""
    probe = np.ones(dimension, dtype=np.float32)
    titles = list(dict.fromkeys(q.title for q in questions))
    return [t for t in titles if not store.search(probe, limit=1, where=PayloadFilter(titles=(t,)))]


def compare_modes(
    searcher: _SearcherLike,
    questions: Sequence[Question],
    *,
    modes: Sequence[str | None],
    ks: Sequence[int] = DEFAULT_KS,
    chunks: int | None = None,
    clock: Callable[[], float] = time.perf_counter,
    progress: Progress | None = None,
) -> dict[str | None, EvalResult]:
    """`run_eval` for several retrieval modes in one pass: each question is asked in
    every mode in turn, so that the latencies compared share the machine's moods."""
    cutoff = max(ks)
    chunks = chunks or CHUNKS_PER_ARTICLE * cutoff
    if chunks < cutoff:
        raise SettingsError(f"--chunks {chunks} cannot fill {cutoff} articles: ask for at least {cutoff}")
    rankings: dict[str | None, list[list[str]]] = {mode: [] for mode in modes}
    seconds: dict[str | None, list[float]] = {mode: [] for mode in modes}
    short = 0
    for q in questions:
        for mode in modes:
            started = clock()
            hits = searcher.search(q.question, k=chunks, **({"mode": mode} if mode else {}))
            seconds[mode].append(clock() - started)
            articles = rank_articles(hits)
            short += len(hits) == chunks and len(articles) < cutoff
            rankings[mode].append(articles)
        if progress is not None:
            progress.tick(len(rankings[modes[-1]]), "questions")
    if progress is not None:
        progress.tick(len(questions), "questions", force=True)
        progress.close()
    if short:
        log.warning(
            "%d searches of %d got fewer than %d distinct articles from %d chunks: raise --chunks",
            short,
            len(questions) * len(modes),
            cutoff,
            chunks,
        )
    answers, texts = [q.title for q in questions], [q.question for q in questions]
    return {
        mode: replace(evaluate(rankings[mode], answers, ks=ks, questions=texts, seconds=seconds[mode]), chunks=chunks)
        for mode in modes
    }


# -- output ------------------------------------------------------------------
def format_table(result: EvalResult, *, misses: int = 10, width: int = 100) -> str:
    """A plain-text report: one metric a line, latency, then up to `misses` questions that missed."""
    n = len(result.questions)
    rows = [("questions", f"{n:,}")]
    if result.chunks:
        rows.append(("chunks/question", f"{result.chunks}"))
    rows += [(f"recall@{k}", f"{value:.3f}  ({round(value * n):,}/{n:,})") for k, value in result.recall.items()]
    rows.append((f"MRR@{result.cutoff}", f"{result.mrr:.3f}"))
    if result.latency_ms:
        rows.append(
            (
                "latency",
                f"median {result.latency_ms['median']:.1f} ms, "
                f"p95 {result.latency_ms['p95']:.1f} ms (embedding included)",
            )
        )
    label = max(len(name) for name, _ in rows)
    lines = [f"{name:<{label}}  {value}" for name, value in rows]
    missed = result.misses
    if missed and misses > 0:
        lines.append("")
        lines.append(f"not in the top {result.cutoff} ({len(missed)}), first {min(misses, len(missed))}:")
        for q in missed[:misses]:
            got = ", ".join(q.top[:3]) or "nothing"
            where = f"rank {q.rank}" if q.rank else "not retrieved"
            lines.append("- " + textwrap.shorten(q.question, width=width - 2, placeholder=" …"))
            lines.append(
                "    " + textwrap.shorten(f"want {q.answer} ({where}); got {got}", width=width - 4, placeholder=" …")
            )
    return "\n".join(lines)


def format_comparison(results: dict[str, EvalResult]) -> str:
    """Modes side by side: one metric a row, one mode a column."""
    modes = list(results)
    first = results[modes[0]]
    n = len(first.questions)
    rows: list[tuple[str, list[str]]] = [("questions", [f"{len(r.questions):,}" for r in results.values()])]
    for k in first.ks:
        rows.append((f"recall@{k}", [f"{r.recall[k]:.3f} ({round(r.recall[k] * n):,})" for r in results.values()]))
    rows.append((f"MRR@{first.cutoff}", [f"{r.mrr:.3f}" for r in results.values()]))
    if first.latency_ms:
        rows.append(("latency median", [f"{r.latency_ms['median']:.1f} ms" for r in results.values()]))
        rows.append(("latency p95", [f"{r.latency_ms['p95']:.1f} ms" for r in results.values()]))
    label = max(len(name) for name, _ in rows)
    width = max(12, *(len(v) for _, values in rows for v in values), *(len(m) for m in modes))
    lines = [f"{'':<{label}}  " + "  ".join(f"{m:>{width}}" for m in modes)]
    lines += [f"{name:<{label}}  " + "  ".join(f"{v:>{width}}" for v in values) for name, values in rows]
    lines.append(f"(article level, {first.chunks} chunks asked per question; latency per query, embedding included)")
    return "\n".join(lines)
