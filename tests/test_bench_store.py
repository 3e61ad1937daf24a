"""python -m ingest bench-store: the embedded store behind an instant TEI server."""

from __future__ import annotations

import re

from ingest.bench.store import main


def test_points_per_second_and_search_latency_with_and_without_the_graph(capsys):
    assert main(["--articles", "40", "--queries", "5", "--optimize"]) == 0
    exact, graph = capsys.readouterr().out.splitlines()[1:]
    assert re.search(
        r"^40 points in [\d.]+ s = [\d,]+ points/s .*exact: median [\d.]+ ms, p95 [\d.]+ ms, "
        r"recall@10 against exact 1\.000$",
        exact,
    )
    assert re.search(
        r"^after optimize\(\) \([\d.]+ s.*median [\d.]+ ms.*top-10 overlap with exact [01]\.\d{3}$", graph
    ), graph


def test_bad_sizes_are_a_usage_error(capsys):
    assert main(["--articles", "1"]) == 2
    assert "--articles must be at least 2" in capsys.readouterr().err
