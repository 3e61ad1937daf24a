"""`python -m ingest bench-scale`: the growth curve, each size in a process of its own."""

from __future__ import annotations

from ingest.bench import scale


def test_each_size_is_measured_in_its_own_process_and_tabled(capsys):
    assert scale.main(["--points", "300", "600", "--queries", "20"]) == 0
    out = capsys.readouterr().out.splitlines()
    header, small, large, exact = out[-4:]
    assert header.split()[:2] == ["points", "points/s"] and small.split()[0] == "300" and large.split()[0] == "600"
    for row in (small, large):
        assert "drift!" not in row and "written!" not in row  # verify in sync; the re-run embedded nothing
        assert "GiB" in row and "MiB" in row
    assert exact.startswith("the recall check's exact scoring") and "GiB at 600" in exact


def test_a_child_reports_its_own_peak_memory():
    row = scale.run_child(200, 5)
    assert row["points"] == 200 and row["rerun_written"] == 0 and row["in_sync"]
    assert 50 * 2**20 < row["peak_rss_bytes"] < 8 * 2**30  # an interpreter with numpy and the engine, not zero
    assert row["run_rss_bytes"] <= row["exact_rss_bytes"] <= row["peak_rss_bytes"] and 0.9 <= row["recall"] <= 1


def test_bad_sizes_are_usage_errors(capsys):
    assert scale.main(["--points", "1"]) == 2 and "at least 2" in capsys.readouterr().err
