"""python -m ingest bench-faults: a whole ingest through a TEI server that answers 429s."""

from __future__ import annotations

import re

from ingest.bench.faults import main


def test_a_run_through_a_storm_of_429s_finishes_with_every_chunk_and_counts_them(capsys):
    assert main(["--rates", "0.5", "--articles", "12"]) == 0
    line = capsys.readouterr().out.splitlines()[1]
    found = re.search(
        r"^429s 50%, run 1: finished in [\d.]+ s: (\d+) points of (\d+) chunks; retries 429 (\d+); "
        r"the server answered (\d+) 429s$",
        line,
    )
    assert found, line
    points, chunks, retried, served = map(int, found.groups())
    assert points == chunks >= 12 and retried > 0 and served >= retried


def test_bad_rates_are_a_usage_error(capsys):
    assert main(["--rates", "1.0"]) == 2
    assert "each rate in [0, 1)" in capsys.readouterr().err
