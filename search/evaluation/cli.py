"""`python -m search eval`: how well a collection answers a set of questions.

Each question names the article that answers it. The searcher's ranked chunks
are collapsed to ranked articles (the first chunk of an article gives its rank),
and the set is scored with article-level recall@k and the mean reciprocal rank
of the answering article (0 when it is not among the first max(k) articles).
Latency is measured per query, embedding included.

  python -m search eval                                        # the bundled sample set
  python -m search eval --questions my_questions.jsonl -k 1 3 10 --json
  python -m search eval --mode dense hybrid                    # the modes side by side
  python -m search eval --variants                             # the lexical and fusion settings tried,
                                                               # on every shipped set (search/evaluation/variants.py)

A question file holds one JSON object per line, {"question": "...", "title": "..."},
where title is the exact title of the answering article; blank lines are skipped.

Exit codes: 0 evaluated; 1 failed (a bad question file, a collection that cannot
be searched; the message names the problem); 2 bad usage.

From Python: `search.evaluation.metrics` (pure functions over ranked titles) and
`search.evaluation.runner` (a question set through a searcher).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Callable

from ingest.errors import SettingsError
from ingest.progress import Progress
from search.command import add_searcher_args, searcher_command
from search.evaluation.metrics import DEFAULT_KS
from search.evaluation.questions import (
    DESCRIPTIVE_HELDOUT,
    DESCRIPTIVE_QUESTIONS,
    HELDOUT_QUESTIONS,
    SAMPLE_QUESTIONS,
    SHORT_QUESTIONS,
    load_questions,
)
from search.evaluation.runner import (
    CHUNKS_PER_ARTICLE,
    compare_modes,
    format_comparison,
    format_table,
    unindexed_answers,
)
from search.evaluation.variants import Replica, compare_variants, default_variants, format_variants

PROG = "python -m search eval"
SHIPPED_SETS = {
    "sample": SAMPLE_QUESTIONS,
    "short": SHORT_QUESTIONS,
    "short_heldout": HELDOUT_QUESTIONS,
    "descriptive": DESCRIPTIVE_QUESTIONS,
    "descriptive_heldout": DESCRIPTIVE_HELDOUT,
}
log = logging.getLogger("search.eval")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--questions",
        type=Path,
        default=None,
        help=f"JSON-lines question file (default: the set for the bundled sample, {SAMPLE_QUESTIONS})",
    )
    parser.add_argument(
        "-k",
        type=int,
        nargs="+",
        default=list(DEFAULT_KS),
        metavar="K",
        help="report recall at each of these article cut-offs; MRR is cut off at the largest (default: %(default)s)",
    )
    parser.add_argument(
        "--chunks",
        type=int,
        default=None,
        help=f"chunks retrieved per question (default {CHUNKS_PER_ARTICLE} x the largest k)",
    )
    parser.add_argument(
        "--mode",
        nargs="+",
        choices=("dense", "hybrid"),
        default=None,
        help="retrieval mode(s); with several, each question is asked in each mode in turn and "
        "the modes are compared in one table (default: the collection's default mode)",
    )
    parser.add_argument(
        "--variants",
        action="store_true",
        help="score the retrieval settings tried for this project (BM25 parameters, the lexical "
        "text, the fusion) side by side, replayed over the collection's points; on the three "
        "shipped sets unless --questions is given",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object with every question's outcome")
    parser.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    parser.add_argument(
        "--misses",
        type=int,
        default=10,
        metavar="N",
        help="list up to N questions whose article was not found (default %(default)s)",
    )
    add_searcher_args(parser)
    parser.set_defaults(verbose=1)  # a long job: its steps (the model's load, timed) on stderr, as `ingest` does
    return parser


def _check(args: argparse.Namespace) -> None:
    if min(args.k) < 1:
        raise SettingsError(f"-k values must be at least 1, got {args.k}")
    if args.chunks is not None and args.chunks < max(args.k):
        raise SettingsError(
            f"--chunks {args.chunks} cannot fill {max(args.k)} articles: ask for at least {max(args.k)}"
        )


def _run(args: argparse.Namespace, open_searcher: Callable) -> int:
    if args.variants:
        return _variants(args, open_searcher)
    questions = load_questions(args.questions or SAMPLE_QUESTIONS)
    log.info("opening the collection and the model")
    with open_searcher() as searcher:
        missing = unindexed_answers(searcher.store, searcher.spec.dimension, questions)
        if missing:
            log.warning(
                "%d of the %d answering articles are not in the collection (a partial index?), e.g. %s: "
                "their questions count as misses",
                len(missing),
                len({q.title for q in questions}),
                ", ".join(repr(t) for t in missing[:3]),
            )
        modes = list(dict.fromkeys(args.mode or [searcher.default_mode]))
        results = compare_modes(
            searcher,
            questions,
            modes=modes,
            ks=args.k,
            chunks=args.chunks,
            progress=Progress(len(questions), enabled=not args.no_progress),
        )
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


def _variants(args: argparse.Namespace, open_searcher: Callable) -> int:
    sets = {args.questions.stem: args.questions} if args.questions else SHIPPED_SETS
    questions = {name: load_questions(path) for name, path in sets.items()}
    with open_searcher() as searcher:
        log.info("reading the collection's points")
        replica = Replica(
            searcher.store,
            title_prefix=bool(searcher.spec.chunking.get("title_prefix", True)),
            embed_passages=searcher.embedder.embed_passages,
        )
        variants = [v for v in default_variants() if replica.can(v)]
        if len(variants) < len(default_variants()):
            log.warning("the collection has no definition vectors: the variants that fuse them are left out")
        results = compare_variants(
            replica,
            searcher.embedder.embed_queries,
            questions,
            variants,
            ks=args.k,
            chunks=args.chunks or CHUNKS_PER_ARTICLE * max(args.k),
            progress=not args.no_progress,
        )
    if args.json:
        print(
            json.dumps(
                {label: {name: r.to_dict() for name, r in by_set.items()} for label, by_set in results.items()},
                ensure_ascii=False,
            )
        )
    else:
        print(format_variants(results))
    return 0


main = searcher_command(PROG, build_parser, _run, check=_check)
