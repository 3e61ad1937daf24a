"""Question files: one JSON object per line, {"question": "...", "title": "..."},
where title is the exact title of the answering article; blank lines are skipped.
Every error names the file, the line and the field at fault."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ingest.errors import IngestError

SAMPLE_QUESTIONS = Path(__file__).resolve().parents[1] / "questions" / "sample.jsonl"
# Short search-box queries: the search defaults are tuned on SHORT_QUESTIONS; HELDOUT_QUESTIONS is never
# used for tuning, only reported.
SHORT_QUESTIONS = SAMPLE_QUESTIONS.with_name("short.jsonl")
HELDOUT_QUESTIONS = SAMPLE_QUESTIONS.with_name("short_heldout.jsonl")
# Descriptive queries, the way a short description reads under an article's title ("Dutch painter
# (1853-1890)"): tuned on DESCRIPTIVE_QUESTIONS; DESCRIPTIVE_HELDOUT is never used for tuning, only reported.
DESCRIPTIVE_QUESTIONS = SAMPLE_QUESTIONS.with_name("descriptive.jsonl")
DESCRIPTIVE_HELDOUT = SAMPLE_QUESTIONS.with_name("descriptive_heldout.jsonl")


class QuestionFileError(IngestError, ValueError):
    """A question file cannot be read, or one of its lines is not a valid question."""


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
    questions = [
        parse_question(line, number, path) for number, line in enumerate(text.splitlines(), start=1) if line.strip()
    ]
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
        raise QuestionFileError(
            f"{where}: expected a JSON object with 'question' and 'title', got {type(record).__name__}"
        )
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
