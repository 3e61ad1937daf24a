"""The dead-letter record: inputs that failed for good, one JSON object a line.

Nothing is dropped silently: an invalid article or a chunk the embedder refused
lands here with what is needed to find and fix it, and the run's exit code says so."""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class DeadLetter:
    kind: str  # "article" or "chunk"
    article_id: str | None
    chunk_index: int | None
    status: int | None
    message: str
    title: str | None = None


class DeadLetterFile:
    """Appends records to a JSON-lines file, created on the first record only."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.count = 0
        self._lock = threading.Lock()

    def write(self, record: DeadLetter) -> None:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(asdict(record), ensure_ascii=False) + "\n")
            self.count += 1
