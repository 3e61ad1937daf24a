"""A progress line on stderr: articles per second, chunks and points written, the
time so far and an ETA. On a terminal it is redrawn in place, twice a second from a
thread of its own (`watch`), so the clock and counts move while a window embeds, and
it fits the terminal's width (a wrapped line leaves half a line at each redraw)."""

from __future__ import annotations

import shutil
import sys
import threading
import time
from typing import Callable, TextIO


def duration(seconds: float) -> str:
    """M:SS, or H:MM:SS from an hour."""
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

    def __init__(
        self, total: int | None, *, enabled: bool = True, stream: TextIO | None = None, log_every: float = 10.0
    ) -> None:
        self.total = total
        self.enabled = enabled
        self.stream = stream or sys.stderr  # looked up now: stderr may have been replaced since import
        self.tty = self.stream.isatty()
        self.interval = 0.5 if self.tty else log_every
        self.started = time.perf_counter()
        self._last = 0.0
        self._lock = threading.Lock()  # the pipeline's writer and the `watch` thread both draw
        self._watching: threading.Event | None = None
        self._watcher: threading.Thread | None = None

    def watch(self, counts: Callable[[], tuple[int, int, int]]) -> None:
        """Redraw from `counts()` (articles, chunks, written) every interval until `close()`."""
        if not self.enabled or self._watching is not None:
            return
        self._watching = stop = threading.Event()

        def redraw() -> None:
            while not stop.wait(self.interval):
                self.update(*counts())

        self._watcher = threading.Thread(target=redraw, name="progress", daemon=True)
        self._watcher.start()

    def _due(self, force: bool) -> float | None:
        """Seconds since the start when a line is due now, None when not."""
        if not self.enabled:
            return None
        with self._lock:
            now = time.perf_counter()
            if not force and now - self._last < self.interval * 0.9:
                return None
            self._last = now
        return max(now - self.started, 1e-9)

    def update(self, articles: int, chunks: int, written: int, *, force: bool = False) -> None:
        if (elapsed := self._due(force)) is None:
            return
        done = f"{articles:,}" + (f"/{self.total:,}" if self.total else "")
        parts = [
            f"articles {done} at {articles / elapsed:,.0f}/s",
            f"chunks {chunks:,}",
            f"written {written:,}",
            duration(elapsed),
        ]
        eta = _eta(elapsed, articles, chunks, written, self.total)
        if eta is not None:
            parts.append(f"ETA {duration(eta)}")
        self._emit(parts)

    def tick(self, done: int, unit: str, *, force: bool = False) -> None:
        """One count of `unit` (a copy's points, say) out of `total`."""
        if (elapsed := self._due(force)) is None:
            return
        parts = [
            f"{unit} {done:,}" + (f"/{self.total:,}" if self.total else "") + f" at {done / elapsed:,.0f}/s",
            duration(elapsed),
        ]
        if self.total and done:
            parts.append(f"ETA {duration(elapsed * (self.total - done) / done)}")
        self._emit(parts)

    def _emit(self, parts: list[str]) -> None:
        line = " | ".join(parts)
        if self.tty:  # fit the terminal: drop the chunks count, then cut
            width = shutil.get_terminal_size((80, 24)).columns - 1
            if len(line) > width and len(parts) > 3:
                line = " | ".join(parts[:1] + parts[2:])
            line = "\r\x1b[2K" + line[:width]
        else:
            line += "\n"
        with self._lock:
            self.stream.write(line)
            self.stream.flush()

    def close(self) -> None:
        if self._watching is not None and self._watcher is not None:
            self._watching.set()
            self._watcher.join(timeout=2)
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
