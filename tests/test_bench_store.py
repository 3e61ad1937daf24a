"""python -m ingest bench-store: both embedded engines behind an instant TEI server."""

from __future__ import annotations

import re

from ingest.bench.store import main


def test_each_engine_gets_a_line_of_points_per_second_and_search_latency(capsys):
    assert main(["--articles", "40", "--queries", "5"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert set(lines) == {"local", "edge"}
    for line in lines.values():
        assert re.search(r"40 points in +[\d.]+ s = +[\d,]+ points/s .*hybrid search median [\d.]+ ms", line), line


def test_bad_sizes_are_a_usage_error(capsys):
    assert main(["--articles", "1"]) == 2
    assert "--articles must be at least 2" in capsys.readouterr().err
