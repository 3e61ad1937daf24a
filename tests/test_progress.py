"""The progress line: rates, and an ETA that stays true while embedding lags reading."""

from __future__ import annotations

import io

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
    assert first.startswith("articles 2/4 (") and "written 2" in first and "| ETA " in first
    assert second.startswith("points 3/4 (") and "| ETA " in second
    quiet = io.StringIO()
    Progress(4, enabled=False, stream=quiet).update(1, 1, 1, force=True)
    assert quiet.getvalue() == ""
