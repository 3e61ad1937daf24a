"""Retrieval settings side by side, without building a collection for each:
`python -m search eval --variants`.

Changing the BM25 parameters, which text the lexical vectors are made from, or
how the two rankings are fused would each take a rebuild to measure through the
store. Instead the collection's points are read once (dense vectors and text) and
the search is replayed here in numpy: exact cosine for the dense side (what the
embedded store does), Qdrant's standard BM25 (`ingest.lexical`, the same Rust code)
with Qdrant's IDF, ln(1 + (N - n + 0.5) / (n + 0.5)), for the lexical side, and
Qdrant's fusion formulas (`reciprocal_rank_fusion.rs`: a weighted position score
1 / ((position + 1) / weight + k - 1); DBSF: each ranking's scores normalised by
mean +/- 3 sigma, summed). Ties are broken the same way in every variant (dense
order first), where Qdrant leaves them in no set order. The replica is checked
against the store in `tests/test_evaluation.py`.

Every variant is scored on every question set with the same queries, embedded
once, so the figures compare like with like: article-level recall@k and MRR@10
as `python -m search eval` computes them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Iterable, Sequence

import numpy as np

from ingest import lexical
from ingest.chunking import embed_text
from ingest.progress import Progress
from ingest.store import Store
from ingest.store.base import FUSION_DEPTH, RRF_K, RRF_WEIGHTS
from schemas import SparseSpec
from search.evaluation.metrics import DEFAULT_KS, EvalResult, evaluate
from search.evaluation.questions import Question

EARLIER = SparseSpec(tokenizer=lexical.STANDARD, language="english", avg_len=48.0)  # Qdrant's k1, b; titles in


@dataclass(frozen=True, slots=True)
class Variant:
    """One way to search: `sparse` None is dense only; `fusion` "rrf" (with
    `weights`, dense then lexical) or "dbsf"."""

    label: str
    sparse: SparseSpec | None
    fusion: str = "rrf"
    weights: tuple[float, float] = RRF_WEIGHTS


def default_variants() -> list[Variant]:
    """What was tried for the short queries, the earlier default first and today's last."""
    new = lexical.default_spec()
    return [
        Variant("dense only", None),
        Variant("hybrid, earlier default (BM25 k1 1.2 b 0.75, titles in; RRF 1:1)", EARLIER, weights=(1.0, 1.0)),
        Variant("+ RRF weights 1:1.05 (ties settled)", EARLIER),
        Variant("+ DBSF instead of RRF", EARLIER, fusion="dbsf"),
        Variant("+ BM25 k1 0.5 b 0.3", replace(EARLIER, k1=0.5, b=0.3)),
        Variant("+ titles out of the terms (k1 1.2 b 0.75)", replace(EARLIER, include_title=False)),
        Variant("+ titles out, k1 0.5 b 0.3", replace(new, k1=0.5, b=0.3)),
        Variant("+ titles out, k1 0.5 b 0.3, DBSF", replace(new, k1=0.5, b=0.3), fusion="dbsf"),
        Variant(f"default now (titles out, k1 {new.k1:g} b {new.b:g}, RRF 1:1.05)", new),
    ]


class Replica:
    """A collection's points in memory, searched as the store searches them."""

    def __init__(self, store: Store, *, title_prefix: bool = True) -> None:
        vectors, self.titles, self.ids, self.texts, self.embedded, self.point_ids = [], [], [], [], [], []
        for page in store.export_points():
            for point in page:
                payload = point.payload
                title, text = str(payload.get("title", "")), str(payload.get("text", ""))
                vectors.append(point.vector)
                self.point_ids.append(point.id)
                self.titles.append(title)
                self.ids.append(str(payload.get("id", "")))
                self.texts.append(text)
                self.embedded.append(embed_text(title, text, title_prefix))
        matrix = np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, 1), np.float32)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        self.vectors = matrix / np.where(norms == 0, 1, norms)
        self._postings: dict[SparseSpec, dict[int, tuple[np.ndarray, np.ndarray]]] = {}

    def __len__(self) -> int:
        return len(self.titles)

    def dense(self, query: np.ndarray) -> np.ndarray:
        return self.vectors @ (query / (np.linalg.norm(query) or 1))

    def lexical(self, query: str, spec: SparseSpec) -> np.ndarray:
        postings = self._index(spec)
        scores = np.zeros(len(self), dtype=np.float32)
        terms = lexical.query_vector(query, spec)
        for term, weight in zip(terms.indices, terms.values):
            if term in postings:
                docs, values = postings[term]
                scores[docs] += weight * idf(len(self), len(docs)) * values
        return scores

    def _index(self, spec: SparseSpec) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        if spec not in self._postings:
            lists: dict[int, tuple[list[int], list[float]]] = defaultdict(lambda: ([], []))
            for row, (embedded, text) in enumerate(zip(self.embedded, self.texts)):
                for term, value in zip(*lexical.passage_vector(lexical.passage_text(embedded, text, spec), spec)):
                    lists[term][0].append(row)
                    lists[term][1].append(value)
            self._postings[spec] = {t: (np.array(d), np.array(v, dtype=np.float32)) for t, (d, v) in lists.items()}
        return self._postings[spec]

    def search(self, query: np.ndarray, text: str, variant: Variant, limit: int) -> list[int]:
        """Row numbers of the `limit` best chunks, as the store would rank them."""
        dense = self.dense(query)
        if variant.sparse is None:
            return top(dense, limit)
        depth = max(4 * limit, FUSION_DEPTH)
        lexical_scores = self.lexical(text, variant.sparse)
        rankings = [(top(dense, depth), dense), (top(lexical_scores, depth, positive=True), lexical_scores)]
        if variant.fusion == "dbsf":
            return fuse_dbsf(rankings)[:limit]
        return fuse_rrf([r for r, _ in rankings], RRF_K, variant.weights)[:limit]


def idf(total: int, containing: int) -> float:
    """Qdrant's IDF modifier."""
    return math.log(1 + (total - containing + 0.5) / (containing + 0.5))


def top(scores: np.ndarray, n: int, *, positive: bool = False) -> list[int]:
    n = min(n, len(scores))
    if n == 0:
        return []
    best = np.argpartition(-scores, n - 1)[:n]
    best = best[np.argsort(-scores[best], kind="stable")]
    return [int(i) for i in best if not positive or scores[i] > 0]


def fuse_rrf(rankings: Sequence[Sequence[int]], k: int, weights: Sequence[float]) -> list[int]:
    fused: dict[int, float] = defaultdict(float)
    for ranking, weight in zip(rankings, weights):
        for position, row in enumerate(ranking):
            fused[row] += 0.0 if weight <= 0 else 1.0 / ((position + 1) / weight + k - 1)
    return sorted(fused, key=lambda row: -fused[row])


def fuse_dbsf(rankings: Iterable[tuple[Sequence[int], np.ndarray]]) -> list[int]:
    fused: dict[int, float] = defaultdict(float)
    for ranking, scores in rankings:
        if not ranking:
            continue
        values = scores[list(ranking)].astype(np.float64)
        spread = 3 * values.std(ddof=1) if len(values) > 1 else 0.0  # Qdrant: the sample variance
        low, high = values.mean() - spread, values.mean() + spread
        for row in ranking:
            fused[row] += 0.5 if high == low else (float(scores[row]) - low) / (high - low)
    return sorted(fused, key=lambda row: -fused[row])


def compare_variants(
    replica: Replica,
    embed_queries,
    question_sets: dict[str, Sequence[Question]],
    variants: Sequence[Variant],
    *,
    ks: Sequence[int] = DEFAULT_KS,
    chunks: int = 30,
    progress: bool = True,
) -> dict[str, dict[str, EvalResult]]:
    """{variant label: {set name: result}}; each set's queries embedded once for all variants."""
    results: dict[str, dict[str, EvalResult]] = {v.label: {} for v in variants}
    shown = Progress(sum(len(q) for q in question_sets.values()) * len(variants), enabled=progress)
    done = 0
    for name, questions in question_sets.items():
        vectors = embed_queries([q.question for q in questions])
        answers = [q.title for q in questions]
        for variant in variants:
            ranked = []
            for vector, q in zip(vectors, questions):
                rows = replica.search(vector, q.question, variant, chunks)
                ranked.append(articles_of(replica, rows))
                done += 1
                shown.tick(done, "searches")
            results[variant.label][name] = evaluate(ranked, answers, ks=ks, questions=[q.question for q in questions])
    shown.tick(done, "searches", force=True)
    shown.close()
    return results


def articles_of(replica: Replica, rows: Sequence[int]) -> list[str]:
    seen, titles = set(), []
    for row in rows:
        key = replica.ids[row] or replica.titles[row]
        if key not in seen:
            seen.add(key)
            titles.append(replica.titles[row])
    return titles


def format_variants(results: dict[str, dict[str, EvalResult]]) -> str:
    """A Markdown table: a row per variant, recall@k and MRR per question set."""
    sets = list(next(iter(results.values())))
    first = next(iter(next(iter(results.values())).values()))
    ks = list(first.recall)
    head = ["variant"] + [f"{name} {metric}" for name in sets for metric in [f"R@{k}" for k in ks] + ["MRR"]]
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
    for label, by_set in results.items():
        cells = [f"{value:.3f}" for name in sets for value in [*by_set[name].recall.values(), by_set[name].mrr]]
        lines.append("| " + " | ".join([label] + cells) + " |")
    counts = ", ".join(f"{name} {len(result.questions)}" for name, result in next(iter(results.values())).items())
    return "\n".join(lines) + f"\n\n(questions: {counts}; article level, 30 chunks per question, MRR@{max(ks)})"
