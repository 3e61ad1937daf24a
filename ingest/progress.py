"""A progress line on stderr: articles and chunks per second, and an ETA."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _eta(elapsed: float, articles: int, chunks: int, written: int, total: int | None) -> float | None:
    """Seconds left: the chunks still to write (those read and queued, and those the
    unread articles will make, at the rate so far) at the rate chunks are written.
    Reading runs ahead of embedding, so the articles read alone would say 0:00 while
    the last windows are still being embedded."""
    if not total or not articles:
        return None
    if not written:
        return None if chunks else elapsed * (total - articles) / articles  # nothing to write yet
    remaining = chunks - written + chunks / articles * max(total - articles, 0)
    return remaining * elapsed / written


class Progress:
    """Redraws one line on a terminal; prints a line every `log_every` seconds otherwise."""

    def __init__(self, total: int | None, *, enabled: bool = True, stream: TextIO | None = None,
                 log_every: float = 10.0) -> None:
        self.total = total
        self.enabled = enabled
        self.stream = stream or sys.stderr  # looked up now: stderr may have been replaced since import
        self.tty = self.stream.isatty()
        self.interval = 0.5 if self.tty else log_every
        self.started = time.perf_counter()
        self._last = 0.0

    def _due(self, force: bool) -> float | None:
        """Seconds since the start when a line is due now, None when not."""
        if not self.enabled:
            return None
        now = time.perf_counter()
        if not force and now - self._last < self.interval:
            return None
        self._last = now
        return max(now - self.started, 1e-9)

    def update(self, articles: int, chunks: int, written: int, *, force: bool = False) -> None:
        if (elapsed := self._due(force)) is None:
            return
        done = f"{articles:,}" + (f"/{self.total:,}" if self.total else "")
        line = (
            f"articles {done} ({articles / elapsed:,.0f}/s) | chunks {chunks:,} ({chunks / elapsed:,.0f}/s)"
            f" | written {written:,} | {_duration(elapsed)}"
        )
        eta = _eta(elapsed, articles, chunks, written, self.total)
        if eta is not None:
            line += f" | ETA {_duration(eta)}"
        self._emit(line)

    def tick(self, done: int, unit: str, *, force: bool = False) -> None:
        """One count of `unit` (a copy's points, say) out of `total`."""
        if (elapsed := self._due(force)) is None:
            return
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
