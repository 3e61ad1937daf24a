"""Retrieval metrics as pure functions over ranked titles: article-level recall@k,
the mean reciprocal rank of the answering article, and latency percentiles.

>>> evaluate([["Paris", "Lyon"], ["Rome"]], ["Lyon", "Milan"], ks=(1, 5)).recall
{1: 0.0, 5: 0.5}
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

DEFAULT_KS = (1, 5, 10)


def dedupe(ranked: Iterable[str]) -> list[str]:
    """Keep the first occurrence of each item, in rank order."""
    return list(dict.fromkeys(ranked))


def recall_at(ranked: Sequence[str], answer: str, k: int) -> float:
    """1.0 if the answer is among the first k distinct articles of the ranking, else 0.0."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return 1.0 if answer in dedupe(ranked)[:k] else 0.0


def reciprocal_rank(ranked: Sequence[str], answer: str, k: int | None = None) -> float:
    """1 / rank of the answer among the distinct articles, 0.0 if absent or ranked below k."""
    articles = dedupe(ranked)
    if answer not in articles:
        return 0.0
    rank = articles.index(answer) + 1
    return 0.0 if k is not None and rank > k else 1.0 / rank


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), interpolated linearly between the closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True, slots=True)
class QuestionResult:
    question: str
    answer: str
    rank: int | None  # of the answering article among those retrieved, None if not retrieved
    top: tuple[str, ...]  # the first max(k) distinct articles
    seconds: float | None = None


@dataclass(frozen=True, slots=True)
class EvalResult:
    """Mean recall per k and MRR (cut off at max(k)) over the questions, with each question's outcome."""

    ks: tuple[int, ...]
    recall: dict[int, float]
    mrr: float
    questions: tuple[QuestionResult, ...]
    chunks: int | None = None  # chunks retrieved per question, when a searcher ran them
    latency_ms: dict[str, float] = field(default_factory=dict)  # median and p95, embedding included

    @property
    def cutoff(self) -> int:
        return max(self.ks)

    @property
    def misses(self) -> list[QuestionResult]:
        """Questions whose article is not among the first max(k) articles."""
        return [q for q in self.questions if q.rank is None or q.rank > self.cutoff]

    def to_dict(self) -> dict:
        return {
            "questions": len(self.questions),
            **{f"recall@{k}": value for k, value in self.recall.items()},
            f"mrr@{self.cutoff}": self.mrr,
            "chunks_per_question": self.chunks,
            "latency_ms": self.latency_ms,
            "results": [asdict(q) for q in self.questions],
        }


def evaluate(
    ranked_titles_per_question: Sequence[Sequence[str]],
    answers: Sequence[str],
    *,
    ks: Sequence[int] = DEFAULT_KS,
    questions: Sequence[str] | None = None,
    seconds: Sequence[float] | None = None,
) -> EvalResult:
    """Score ranked title lists (one per question, duplicates allowed) against each question's answer."""
    ks = tuple(sorted(set(ks)))
    if not ks or ks[0] < 1:
        raise ValueError(f"every k must be at least 1, got {list(ks)}")
    if len(ranked_titles_per_question) != len(answers):
        raise ValueError(f"{len(ranked_titles_per_question)} rankings for {len(answers)} answers")
    if not answers:
        raise ValueError("nothing to evaluate: no questions")
    cutoff = max(ks)
    results = []
    for i, (ranked, answer) in enumerate(zip(ranked_titles_per_question, answers)):
        articles = dedupe(ranked)
        rank = articles.index(answer) + 1 if answer in articles else None
        results.append(
            QuestionResult(
                question=questions[i] if questions is not None else "",
                answer=answer,
                rank=rank,
                top=tuple(articles[:cutoff]),
                seconds=seconds[i] if seconds is not None else None,
            )
        )
    n = len(results)
    latency = {}
    if seconds is not None:
        latency = {"median": percentile(seconds, 50) * 1000, "p95": percentile(seconds, 95) * 1000}
    return EvalResult(
        ks=ks,
        recall={k: sum(recall_at(r, a, k) for r, a in zip(ranked_titles_per_question, answers)) / n for k in ks},
        mrr=sum(reciprocal_rank(r, a, cutoff) for r, a in zip(ranked_titles_per_question, answers)) / n,
        questions=tuple(results),
        latency_ms=latency,
    )
