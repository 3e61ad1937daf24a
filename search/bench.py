"""`python -m search bench`: query latency of each search option, side by side.

Each question of the set is asked once with every option in turn (so all options
share the machine's moods), embedding included, against whichever collection and
backend are configured. Prints the median and p95 per option.

  python -m search bench                        # 100 questions of the bundled set
  python -m search bench --queries 416 -k 10

Exit codes: 0 measured; 1 failed; 2 bad usage.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from ingest.errors import SettingsError
from search.command import add_searcher_args, searcher_command
from search.evaluation.metrics import percentile
from search.evaluation.questions import SAMPLE_QUESTIONS, Question, load_questions

PROG = "python -m search bench"
K = 10  # hits per search


def options(searcher: Any, question: Question, others: Sequence[str]) -> dict[str, Callable[[], Any]]:
    """The calls compared for one question: each mode plain, then each option."""
    q = question.question
    modes = ["hybrid", "dense"] if searcher.spec.sparse else ["dense"]
    titles = [question.title, *others]  # a filter that keeps the answer and a few others
    calls: dict[str, Callable[[], Any]] = {}
    for mode in modes:
        calls[f"{mode}"] = lambda mode=mode: searcher.search(q, k=K, mode=mode)
        calls[f"{mode}, title filter (4 articles)"] = lambda mode=mode: searcher.search(
            q, k=K, mode=mode, titles=titles
        )
        calls[f"{mode}, max_per_article=1"] = lambda mode=mode: searcher.search(q, k=K, mode=mode, max_per_article=1)
    calls[f"{modes[0]}, neighbours=1"] = lambda: searcher.search(q, k=K, neighbours=1)
    calls[f"{modes[0]}, score_threshold=0.3"] = lambda: searcher.search(q, k=K, score_threshold=0.3)
    calls[f"{modes[0]}, context of 4,000 characters"] = lambda: searcher.context(q, k=K, max_chars=4000)
    return calls


def run(
    searcher: Any, questions: Sequence[Question], clock: Callable[[], float] = time.perf_counter
) -> dict[str, list[float]]:
    seconds: dict[str, list[float]] = {}
    titles = sorted({q.title for q in questions})
    for number, question in enumerate(questions):
        others = [titles[(number * 7 + i) % len(titles)] for i in (1, 2, 3)]
        for name, call in options(searcher, question, others).items():
            started = clock()
            call()
            seconds.setdefault(name, []).append(clock() - started)
    return seconds


def format_report(seconds: dict[str, list[float]]) -> str:
    width = max(len(name) for name in seconds)
    lines = [f"{'option':<{width}}  {'median':>9}  {'p95':>9}  queries"]
    for name, values in seconds.items():
        lines.append(
            f"{name:<{width}}  {percentile(values, 50) * 1000:>6.1f} ms  "
            f"{percentile(values, 95) * 1000:>6.1f} ms  {len(values):>7}"
        )
    lines.append(f"(k={K}, embedding included, each question asked with every option in turn)")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--questions",
        type=Path,
        default=SAMPLE_QUESTIONS,
        help="JSON-lines question file (default: the set for the bundled sample)",
    )
    parser.add_argument("--queries", type=int, default=100, help="ask the first N questions (default %(default)s)")
    add_searcher_args(parser)
    return parser


def _check(args: argparse.Namespace) -> None:
    if args.queries < 1:
        raise SettingsError(f"--queries must be at least 1, got {args.queries}")


def _run(args: argparse.Namespace, open_searcher: Callable) -> int:
    questions = load_questions(args.questions)[: args.queries]
    with open_searcher() as searcher:
        searcher.search(questions[0].question)  # warm-up: first-call costs are not latency
        seconds = run(searcher, questions)
    print(format_report(seconds))
    return 0


main = searcher_command(PROG, build_parser, _run, check=_check)
