"""`python -m search eval`: how well a collection answers a set of questions.

Each question names the article that answers it. The searcher's ranked chunks
are collapsed to ranked articles (the first chunk of an article gives its rank),
and the set is scored with article-level recall@k and the mean reciprocal rank
of the answering article (0 when it is not among the first max(k) articles).
Latency is measured per query, embedding included.

  python -m search eval                                        # the bundled sample set
  python -m search eval --questions my_questions.jsonl -k 1 3 10 --json
  python -m search eval --mode dense hybrid                    # the modes side by side

A question file holds one JSON object per line, {"question": "...", "title": "..."},
where title is the exact title of the answering article; blank lines are skipped.

Exit codes: 0 evaluated; 1 failed (a bad question file, a collection that cannot
be searched; the message names the problem); 2 bad usage.

From Python, with the pure functions over ranked title lists:

>>> evaluate([["Paris", "Lyon"], ["Rome"]], ["Lyon", "Milan"], ks=(1, 5)).recall
{1: 0.0, 5: 0.5}
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import textwrap
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Protocol, Sequence

from ingest.errors import IngestError, SettingsError

log = logging.getLogger("search.eval")

SAMPLE_QUESTIONS = Path(__file__).parent / "questions" / "sample.jsonl"
DEFAULT_KS = (1, 5, 10)
CHUNKS_PER_ARTICLE = 3  # chunks asked for per wanted article, so that dedupe still leaves max(k) articles


class QuestionFileError(IngestError, ValueError):
    """A question file cannot be read, or one of its lines is not a valid question."""


# -- questions ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Question:
    question: str
    title: str
    line: int = 0  # where it came from in its file, for messages


def load_questions(path: str | Path) -> list[Question]:
    """Read a JSON-lines question file; every error names the line and the field at fault."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise QuestionFileError(f"question file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise QuestionFileError(f"cannot read question file {path}: {exc}") from exc
    questions = [parse_question(line, number, path) for number, line in enumerate(text.splitlines(), start=1)
                 if line.strip()]
    if not questions:
        raise QuestionFileError(f"question file {path} holds no questions")
    return questions


def parse_question(line: str, number: int = 0, path: str | Path = "<questions>") -> Question:
    where = f"{path}:{number}"
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise QuestionFileError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from exc
    if not isinstance(record, dict):
        raise QuestionFileError(f"{where}: expected a JSON object with 'question' and 'title', "
                                f"got {type(record).__name__}")
    values = {}
    for name in ("question", "title"):
        if name not in record:
            raise QuestionFileError(f"{where}: missing field {name!r}")
        value = record[name]
        if not isinstance(value, str):
            raise QuestionFileError(f"{where}: field {name!r} must be a string, got {type(value).__name__}")
        if not value.strip():
            raise QuestionFileError(f"{where}: field {name!r} is empty")
        values[name] = value.strip()
    return Question(values["question"], values["title"], number)


# -- metrics: pure functions over ranked titles --------------------------------
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


def evaluate(ranked_titles_per_question: Sequence[Sequence[str]], answers: Sequence[str], *,
             ks: Sequence[int] = DEFAULT_KS, questions: Sequence[str] | None = None,
             seconds: Sequence[float] | None = None) -> EvalResult:
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
        results.append(QuestionResult(
            question=questions[i] if questions is not None else "",
            answer=answer,
            rank=rank,
            top=tuple(articles[:cutoff]),
            seconds=seconds[i] if seconds is not None else None,
        ))
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


# -- running a question set through a searcher --------------------------------
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


def run_eval(searcher: _SearcherLike, questions: Sequence[Question], *, ks: Sequence[int] = DEFAULT_KS,
             chunks: int | None = None, mode: str | None = None,
             clock: Callable[[], float] = time.perf_counter) -> EvalResult:
    """Ask every question, rank the articles behind the chunks it gets back, and score the set.

    `chunks` is how many chunks to retrieve per question (default 3 x max(k)), so that
    max(k) distinct articles usually remain after several chunks of one article collapse.
    `mode`: the searcher's retrieval mode ("dense", "hybrid"; None: its default).
    """
    return compare_modes(searcher, questions, modes=(mode,), ks=ks, chunks=chunks, clock=clock)[mode]


def compare_modes(searcher: _SearcherLike, questions: Sequence[Question], *, modes: Sequence[str | None],
                  ks: Sequence[int] = DEFAULT_KS, chunks: int | None = None,
                  clock: Callable[[], float] = time.perf_counter) -> dict[str | None, EvalResult]:
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
    if short:
        log.warning("%d searches of %d got fewer than %d distinct articles from %d chunks: raise --chunks",
                    short, len(questions) * len(modes), cutoff, chunks)
    answers, texts = [q.title for q in questions], [q.question for q in questions]
    return {mode: replace(evaluate(rankings[mode], answers, ks=ks, questions=texts, seconds=seconds[mode]),
                          chunks=chunks)
            for mode in modes}


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
        rows.append(("latency", f"median {result.latency_ms['median']:.1f} ms, "
                                f"p95 {result.latency_ms['p95']:.1f} ms (embedding included)"))
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
            lines.append("    " + textwrap.shorten(f"want {q.answer} ({where}); got {got}", width=width - 4,
                                                   placeholder=" …"))
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


# -- command line ------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from ingest.settings import add_embedder_args, add_store_args

    parser = argparse.ArgumentParser(prog="python -m search eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=Path, default=SAMPLE_QUESTIONS,
                        help="JSON-lines question file (default: the set for the bundled sample, %(default)s)")
    parser.add_argument("-k", type=int, nargs="+", default=list(DEFAULT_KS), metavar="K",
                        help="report recall at each of these article cut-offs; MRR is cut off at the largest "
                             "(default: %(default)s)")
    parser.add_argument("--chunks", type=int, default=None,
                        help=f"chunks retrieved per question (default {CHUNKS_PER_ARTICLE} x the largest k)")
    parser.add_argument("--mode", nargs="+", choices=("dense", "hybrid"), default=None,
                        help="retrieval mode(s); with several, each question is asked in each mode in turn and "
                             "the modes are compared in one table (default: the collection's default mode)")
    parser.add_argument("--json", action="store_true", help="one JSON object with every question's outcome")
    parser.add_argument("--misses", type=int, default=10, metavar="N",
                        help="list up to N questions whose article was not found (default %(default)s)")
    add_embedder_args(parser)
    add_store_args(parser)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from ingest.cli import setup_logging
    from ingest.settings import embedder_settings, store_settings
    from search.api import Searcher

    try:
        args = build_parser().parse_args(argv)
        setup_logging(args.verbose - 1)
        if min(args.k) < 1:
            raise SettingsError(f"-k values must be at least 1, got {args.k}")
        if args.chunks is not None and args.chunks < max(args.k):
            raise SettingsError(f"--chunks {args.chunks} cannot fill {max(args.k)} articles: "
                                f"ask for at least {max(args.k)}")
        stores, embedders = store_settings(args), embedder_settings(args)
    except SettingsError as exc:
        print(f"python -m search eval: error: {exc}", file=sys.stderr)
        return 2
    try:
        questions = load_questions(args.questions)
        with Searcher.open(stores, embedders) as searcher:
            modes = list(dict.fromkeys(args.mode or [searcher.default_mode]))
            results = compare_modes(searcher, questions, modes=modes, ks=args.k, chunks=args.chunks)
    except IngestError as exc:
        log.error("%s", exc)
        return 1
    if args.json:  # one mode: its report; several: {mode: report}
        reports = {mode: {"mode": mode, **result.to_dict()} for mode, result in results.items()}
        print(json.dumps(reports if len(reports) > 1 else reports[modes[0]], ensure_ascii=False))
    elif len(results) == 1:
        ((mode, result),) = results.items()
        print(f"mode {mode}")
        print(format_table(result, misses=args.misses))
    else:
        print(format_comparison(results))
        for mode, result in results.items():
            if args.misses > 0 and result.misses:
                print(f"\n{mode}: " + format_table(result, misses=args.misses).split("\n\n", 1)[-1])
    return 0
