"""How well a collection answers a set of questions: `questions` (the files),
`metrics` (recall@k, MRR, percentiles), `runner` (a set through a searcher) and
`cli` (`python -m search eval`)."""

from search.evaluation.cli import build_parser, main
from search.evaluation.metrics import (
    DEFAULT_KS,
    EvalResult,
    QuestionResult,
    dedupe,
    evaluate,
    percentile,
    recall_at,
    reciprocal_rank,
)
from search.evaluation.questions import (
    DESCRIPTIVE_HELDOUT,
    DESCRIPTIVE_QUESTIONS,
    HELDOUT_QUESTIONS,
    SAMPLE_QUESTIONS,
    SHORT_QUESTIONS,
    Question,
    QuestionFileError,
    load_questions,
    parse_question,
)
from search.evaluation.runner import (
    CHUNKS_PER_ARTICLE,
    compare_modes,
    format_comparison,
    format_table,
    rank_articles,
    run_eval,
)

__all__ = [
    "CHUNKS_PER_ARTICLE",
    "DEFAULT_KS",
    "DESCRIPTIVE_HELDOUT",
    "DESCRIPTIVE_QUESTIONS",
    "HELDOUT_QUESTIONS",
    "SAMPLE_QUESTIONS",
    "SHORT_QUESTIONS",
    "EvalResult",
    "Question",
    "QuestionFileError",
    "QuestionResult",
    "build_parser",
    "compare_modes",
    "dedupe",
    "evaluate",
    "format_comparison",
    "format_table",
    "load_questions",
    "main",
    "parse_question",
    "percentile",
    "rank_articles",
    "recall_at",
    "reciprocal_rank",
    "run_eval",
]
