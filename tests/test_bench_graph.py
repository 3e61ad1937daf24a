"""`python -m ingest bench-graph`: one HNSW configuration measured on vectors with real structure."""

from __future__ import annotations

from ingest.bench import graph


def test_the_graph_is_built_and_its_recall_read_at_each_search_width(capsys):
    assert graph.main(["--points", "2000"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "m 16, ef_construct 100, int8: graph built in" in out[0]
    rows = [line.split() for line in out[2:]]
    assert [(int(r[0]), r[1]) for r in rows] == [(ef, kind) for ef in graph.WIDTHS for kind in ("as", "rescored")]
    recalls = {(int(r[0]), r[1]): float(r[-2]) for r in rows}
    assert all(0.5 <= recall <= 1.0 for recall in recalls.values())
    assert recalls[(512, "rescored")] >= 0.98  # rescored with the originals: as good as exact, nearly


def test_float32_has_no_int8_ranking_to_rescore(capsys):
    assert graph.main(["--points", "1000", "--float32", "--m", "8", "--ef-construct", "16"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "float32" in out[0] and [line.split()[1] for line in out[2:]] == ["float32"] * len(graph.WIDTHS)


def test_bad_parameters_are_usage_errors(capsys):
    assert graph.main(["--points", "10"]) == 2 and "at least 1000" in capsys.readouterr().err
