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

A collection with definition vectors (`ingest.definitions`) has them read too, for
the variants that fuse a third ranking over them; a collection without them is
scored on the other variants only.

Every variant is scored on every question set with the same queries, embedded
once, so the figures compare like with like: article-level recall@k and MRR@10
as `python -m search eval` computes them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Any, Iterable, Sequence

import numpy as np

from ingest import lexical
from ingest.chunking import embed_text
from ingest.definitions import definition_text, first_sentence
from ingest.progress import Progress
from ingest.store import Store
from ingest.store.base import (
    DEFINITION_WEIGHT,
    FUSION_DEPTH,
    RRF_K,
    RRF_WEIGHTS,
    Fused,
    definition_depth,
    with_definitions,
)
from schemas import SparseSpec
from search.evaluation.metrics import DEFAULT_KS, EvalResult, evaluate
from search.evaluation.questions import Question

STORED = "stored"  # the collection's own definition vectors
# Other ways to make each article's definition ranking, computed here from the first chunks' text (the
# model embeds each text once per run): the first sentence whole, with its title as the chunks have it
# and without; the cut (`ingest.definitions`) shortened to 12 words; and BM25 over the cut, no embedding.
ALTERNATIVES = {
    "sentence with title": lambda title, text: f"{title}\n{' '.join(first_sentence(text).split()[:60])}",
    "sentence": lambda title, text: " ".join(first_sentence(text).split()[:60]),
    "cut, 12 words": lambda title, text: " ".join(definition_text(text).split()[:12]),
    "cut, BM25": lambda title, text: definition_text(text),
}
EARLIER = SparseSpec(tokenizer=lexical.STANDARD, language="english", avg_len=48.0)  # Qdrant's k1, b; titles in


@dataclass(frozen=True, slots=True)
class Variant:
    """One way to search: `sparse` None is dense only; `fusion` "rrf" (with `k` and
    `weights`, dense then lexical) or "dbsf"; `definition` > 0 fuses the ranking of the
    definition vectors with that RRF weight, by article as the stores do
    (`ingest.store.base.with_definitions`), or with `by_point` as a third prefetch."""

    label: str
    sparse: SparseSpec | None
    fusion: str = "rrf"
    weights: tuple[float, float] = RRF_WEIGHTS
    k: int = RRF_K
    definition: float = 0.0
    by_point: bool = False  # the definitions fused as a third prefetch (their first chunks), not by article
    made_from: str = STORED  # which vectors rank the definitions: the collection's, or one of ALTERNATIVES


def default_variants() -> list[Variant]:
    """What was tried, the earliest default first and today's last: for the short queries,
    then for the descriptive ones."""
    new = lexical.default_spec()
    earlier = f"titles out, k1 {new.k1:g} b {new.b:g}, RRF 1:1.05"
    return [
        Variant("dense only", None),
        Variant("hybrid, earlier default (BM25 k1 1.2 b 0.75, titles in; RRF 1:1)", EARLIER, weights=(1.0, 1.0)),
        Variant("+ RRF weights 1:1.05 (ties settled)", EARLIER),
        Variant("+ DBSF instead of RRF", EARLIER, fusion="dbsf"),
        Variant("+ BM25 k1 0.5 b 0.3", replace(EARLIER, k1=0.5, b=0.3)),
        Variant("+ titles out of the terms (k1 1.2 b 0.75)", replace(EARLIER, include_title=False)),
        Variant("+ titles out, k1 0.5 b 0.3", replace(new, k1=0.5, b=0.3)),
        Variant("+ titles out, k1 0.5 b 0.3, DBSF", replace(new, k1=0.5, b=0.3), fusion="dbsf"),
        Variant(f"previous default ({earlier})", new),
        Variant("+ RRF k 10", new, k=10),
        Variant("+ DBSF", new, fusion="dbsf"),
        Variant("+ definitions, a third prefetch, DBSF", new, fusion="dbsf", definition=1.0, by_point=True),
        Variant(
            f"+ definitions, a third prefetch, RRF 1:1.05:{DEFINITION_WEIGHT:g}",
            new,
            definition=DEFINITION_WEIGHT,
            by_point=True,
        ),
        *(
            Variant(f"+ definitions by article, made from: {name}", new, definition=DEFINITION_WEIGHT, made_from=name)
            for name in ALTERNATIVES
        ),
        Variant("+ definitions by article, weight 0.5", new, definition=0.5),
        Variant("+ definitions by article, weight 1", new, definition=1.0),
        Variant(
            f"default now ({earlier}, definitions by article, weight {DEFINITION_WEIGHT:g})",
            new,
            definition=DEFINITION_WEIGHT,
        ),
    ]


class Replica:
    """A collection's points in memory, searched as the store searches them."""

    def __init__(self, store: Store, *, title_prefix: bool = True, embed_passages: Any = None) -> None:
        """`embed_passages`: the collection's model, for the definitions `ALTERNATIVES` embeds
        (without it, only the stored definitions and BM25 rank them)."""
        vectors, self.titles, self.ids, self.texts, self.embedded, self.point_ids = [], [], [], [], [], []
        defined: list[int] = []
        definitions: list[np.ndarray] = []
        firsts: list[int] = []
        for page in store.export_points():
            for point in page:
                if point.payload.get("chunk_index") == 0:
                    firsts.append(len(self.point_ids))
                if point.definition is not None:
                    defined.append(len(self.point_ids))
                    definitions.append(point.definition)
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
        self.defined = np.array(defined, dtype=np.int64)  # rows with a definition vector
        self.definitions = _unit_rows(np.stack(definitions).astype(np.float32)) if definitions else None
        self.firsts = np.array(firsts, dtype=np.int64)  # each article's first chunk
        self.embed_passages = embed_passages
        self._alternatives: dict[str, np.ndarray] = {}  # the embedded ALTERNATIVES, by name
        self._cut_postings: dict[int, tuple[np.ndarray, np.ndarray]] | None = None  # BM25 over the cuts
        self._postings: dict[SparseSpec, dict[int, tuple[np.ndarray, np.ndarray]]] = {}

    def can(self, variant: Variant) -> bool:
        """Whether this replica can replay `variant`: the stored definitions it needs are there,
        or the model to make others."""
        if not variant.definition:
            return True
        if variant.made_from == STORED:
            return self.definitions is not None
        return variant.made_from == "cut, BM25" or self.embed_passages is not None

    def __len__(self) -> int:
        return len(self.titles)

    def dense(self, query: np.ndarray) -> np.ndarray:
        return self.vectors @ (query / (np.linalg.norm(query) or 1))

    def definition(
        self, query: np.ndarray, depth: int, made_from: str = STORED, text: str = ""
    ) -> tuple[list[int], np.ndarray]:
        """The `depth` best rows by their definition (the stored vectors, the store's ranking,
        which only rows with one enter; or one of `ALTERNATIVES`, over the first chunks), and
        every row's score (-1 without one)."""
        scores = np.full(len(self), -1.0, dtype=np.float32)
        if made_from == "cut, BM25":
            rows, similarity = self.firsts, self._definition_terms(text)
            best = top(similarity, depth, positive=True)
        else:
            rows, matrix = (
                (self.defined, self.definitions) if made_from == STORED else (self.firsts, self._alternative(made_from))
            )
            if matrix is None:
                return [], scores
            similarity = matrix @ (query / (np.linalg.norm(query) or 1))
            best = top(similarity, depth)
        scores[rows] = similarity
        return [int(rows[i]) for i in best], scores

    def _alternative(self, made_from: str) -> np.ndarray:
        if made_from not in self._alternatives:
            make = ALTERNATIVES[made_from]
            texts = [make(self.titles[row], self.texts[row]) for row in self.firsts]
            self._alternatives[made_from] = _unit_rows(np.asarray(self.embed_passages(texts).vectors, np.float32))
        return self._alternatives[made_from]

    def _definition_terms(self, query: str) -> np.ndarray:
        """BM25 of `query` over the first chunks' definitions, with IDF over them."""
        spec = lexical.default_spec()
        if self._cut_postings is None:
            lists: dict[int, tuple[list[int], list[float]]] = defaultdict(lambda: ([], []))
            for i, row in enumerate(self.firsts):
                for term, value in zip(*lexical.passage_vector(definition_text(self.texts[row]), spec)):
                    lists[term][0].append(i)
                    lists[term][1].append(value)
            self._cut_postings = {t: (np.array(d), np.array(v, np.float32)) for t, (d, v) in lists.items()}
        postings = self._cut_postings
        scores = np.zeros(len(self.firsts), dtype=np.float32)
        terms = lexical.query_vector(query, spec)
        for term, weight in zip(terms.indices, terms.values):
            if term in postings:
                docs, values = postings[term]
                scores[docs] += weight * idf(len(self.firsts), len(docs)) * values
        return scores

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
        weights = list(variant.weights)
        if variant.definition > 0 and variant.by_point:  # a third prefetch, as any Qdrant client may send it
            rankings.append(self.definition(query, depth, variant.made_from, text))
            weights.append(variant.definition)
        if variant.fusion == "dbsf":
            return fuse_dbsf(rankings)[:limit]
        if variant.definition <= 0 or variant.by_point:
            return fuse_rrf([r for r, _ in rankings], variant.k, weights)[:limit]
        scores = rrf_scores([r for r, _ in rankings], variant.k, weights)
        wide = definition_depth(limit)  # as the stores fuse them
        fused = [Fused(row, score, {"id": self.ids[row] or self.titles[row]}, None) for row, score in scores.items()]
        fused.sort(key=lambda f: -f.score)
        ranked = self.definition(query, wide, variant.made_from, text)[0]
        defined = [Fused(row, 0.0, {"id": self.ids[row] or self.titles[row]}, None) for row in ranked]
        merged = with_definitions(
            fused[:wide], defined, lambda f: f.payload["id"], limit=limit, weight=variant.definition, k=variant.k
        )
        return [f.id for f in merged]


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1, norms)


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


def rrf_scores(rankings: Sequence[Sequence[int]], k: int, weights: Sequence[float]) -> dict[int, float]:
    fused: dict[int, float] = defaultdict(float)
    for ranking, weight in zip(rankings, weights):
        for position, row in enumerate(ranking):
            fused[row] += 0.0 if weight <= 0 else 1.0 / ((position + 1) / weight + k - 1)
    return fused


def fuse_rrf(rankings: Sequence[Sequence[int]], k: int, weights: Sequence[float]) -> list[int]:
    fused = rrf_scores(rankings, k, weights)
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
