"""Dead letters: inputs that failed for good, kept with what is needed to find and
fix them, behind one interface (`DeadLetterSink`).

Nothing is dropped silently: an invalid article or a chunk the embedder refused
lands in a sink, and the run's exit code says so. `DeadLetterFile` appends JSON
lines to a file (the command line's); `MemorySink` keeps them in memory, to travel
back with a shard's result to the driver, which writes them to its own file."""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class DeadLetter:
    kind: str  # "article", "chunk", or "definition" (a first chunk refused with its definition)
    article_id: str | None
    chunk_index: int | None
    status: int | None
    message: str
    title: str | None = None


class DeadLetterSink(Protocol):
    count: int  # records written so far

    @property
    def where(self) -> str:
        """Where the records are, for the run's summary."""
        ...

    def write(self, record: DeadLetter) -> None: ...


class DeadLetterFile:
    """Appends records to a JSON-lines file, created on the first record only."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.count = 0
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        return str(self.path)

    def write(self, record: DeadLetter) -> None:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(asdict(record), ensure_ascii=False) + "\n")
            self.count += 1


class MemorySink:
    """Keeps records as plain dicts (`records`), which pickle; `label` says whose they are."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.count = 0
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        return f"the result of {self.label}"

    def write(self, record: DeadLetter) -> None:
        with self._lock:
            self.records.append(asdict(record))
            self.count += 1
