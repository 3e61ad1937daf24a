"""A progress line on stderr: articles and chunks per second, and an ETA."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """Redraws one line on a terminal; prints a line every `log_every` seconds otherwise."""

    def __init__(self, total: int | None, *, enabled: bool = True, stream: TextIO = sys.stderr,
                 log_every: float = 10.0) -> None:
        self.total = total
        self.enabled = enabled
        self.stream = stream
        self.tty = stream.isatty()
        self.interval = 0.5 if self.tty else log_every
        self.started = time.perf_counter()
        self._last = 0.0

    def update(self, articles: int, chunks: int, written: int, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        elapsed = max(now - self.started, 1e-9)
        done = f"{articles:,}" + (f"/{self.total:,}" if self.total else "")
        line = (
            f"articles {done} ({articles / elapsed:,.0f}/s) | chunks {chunks:,} ({chunks / elapsed:,.0f}/s)"
            f" | written {written:,} | {_duration(elapsed)}"
        )
        if self.total and articles:
            line += f" | ETA {_duration(elapsed * (self.total - articles) / articles)}"
        self._emit(line)

    def tick(self, done: int, unit: str, *, force: bool = False) -> None:
        """One count of `unit` (a copy's points, say) out of `total`."""
        if not self.enabled:
            return
        now = time.perf_counter()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        elapsed = max(now - self.started, 1e-9)
        line = f"{unit} {done:,}" + (f"/{self.total:,}" if self.total else "") + \
            f" ({done / elapsed:,.0f}/s) | {_duration(elapsed)}"
        if self.total and done:
            line += f" | ETA {_duration(elapsed * (self.total - done) / done)}"
        self._emit(line)

    def _emit(self, line: str) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
