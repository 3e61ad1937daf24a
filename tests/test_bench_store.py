"""python -m ingest bench-store: the embedded store behind an instant TEI server."""

from __future__ import annotations

import json
import re

from ingest.bench.store import main, write_articles
from ingest.definitions import definition_text
from ingest.sources import sample_rows


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


def test_copies_of_the_sample_get_titles_and_definitions_of_their_own(tmp_path):
    """Past the sample's size the benchmarks' articles repeat its leads: each copy's title and first
    sentence carry its number, so that no two articles share a definition vector (thousands of ties
    would make a graph's ranking differ from an exact one for nothing a corpus has)."""
    size = len(sample_rows())
    titles = write_articles(tmp_path / "a.jsonl", size + 3)
    rows = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(set(titles)) == len(titles) == size + 3
    assert rows[size]["title"] == rows[0]["title"] + " (1)"
    assert definition_text(rows[size]["text"]) == definition_text(rows[0]["text"]) + " (1)"
