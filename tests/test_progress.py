"""The progress line: rates, and an ETA that stays true while embedding lags reading."""

from __future__ import annotations

import io
import time

from ingest.progress import Progress, _eta


def test_the_eta_counts_the_chunks_still_being_embedded_after_the_last_article_is_read():
    # every article read (10,033), 10,255 chunks queued, 8,704 written in 119 s
    assert _eta(119.0, 10_033, 10_255, 8_704, 10_033) > 20  # not 0:00: 1,551 chunks are still to write
    assert _eta(100.0, 500, 1_000, 500, 1_000) == 100.0 * (500 + 1_000) / 500  # halfway through reading
    assert _eta(10.0, 500, 0, 0, 1_000) == 10.0  # nothing to write yet (all unchanged): by articles
    assert _eta(10.0, 500, 100, 0, 1_000) is None  # writing has not started: no honest guess yet
    assert _eta(10.0, 0, 0, 0, 1_000) is None and _eta(10.0, 5, 5, 5, None) is None


def test_lines_for_articles_and_for_any_unit():
    stream = io.StringIO()
    progress = Progress(4, stream=stream, log_every=0.0)
    progress.update(2, 4, 2)
    progress.tick(3, "points")
    first, second = stream.getvalue().splitlines()
    assert first.startswith("articles 2/4 at ") and "written 2" in first and "| ETA " in first
    assert second.startswith("points 3/4 at ") and "| ETA " in second
    quiet = io.StringIO()
    Progress(4, enabled=False, stream=quiet).update(1, 1, 1, force=True)
    assert quiet.getvalue() == ""


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_an_80_column_terminal_the_line_fits_and_moves_between_updates(monkeypatch):
    """Issue 19: the line was 81-88 characters (each redraw left half a line on an 80-column
    terminal) and moved only when a window was written, every 22-46 s, its clock frozen."""
    monkeypatch.setenv("COLUMNS", "80")
    screen = Terminal()
    progress = Progress(6_407_814, stream=screen)
    progress.update(6_400_000, 41_000_000, 40_990_000, force=True)
    counts = [(100, 200, 150)]
    progress.watch(lambda: counts[0])
    time.sleep(1.3)  # no update() call: the watcher redraws on its own, twice a second
    counts[0] = (120, 240, 200)
    time.sleep(0.7)
    progress.close()
    lines = [line.replace("\x1b[2K", "") for line in screen.getvalue().split("\r") if line]
    assert len(lines) >= 4 and all(len(line.rstrip("\n")) <= 79 for line in lines), lines
    assert lines[0].startswith("articles 6,400,000/6,407,814 at ") and "written 40,990,000" in lines[0]
    assert any("articles 120/" in line for line in lines) and any("articles 100/" in line for line in lines)
    assert any(" | 0:01" in line for line in lines)  # the clock moved with no update() call
