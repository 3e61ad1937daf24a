"""`python -m ingest bench-bookkeeping`: each bookkeeping path in a process of its own, checked and tabled."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ingest.bench import bookkeeping


@pytest.mark.parametrize("store", ["edge", "server"])
def test_each_path_runs_in_its_own_process_does_its_job_and_is_tabled(tmp_path, store):
    folder = tmp_path / "built"
    command = [sys.executable, "-m", "ingest", "bench-bookkeeping", "--articles", "300", "--store", store]
    done = subprocess.run([*command, "--folder", str(folder)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("300 one-chunk articles") and lines[1].split()[:3] == ["path", "time", "peak"]
    table = {line.split()[0]: line for line in lines[2:]}
    assert list(table) == ["build", *bookkeeping.PATHS]
    assert "in sync, 300 points" in table["verify"] and "300 articles adopted" in table["repair"]
    assert "300 unchanged, nothing embedded or deleted" in table["reindex"]
    assert "300 points, manifest of 300 articles" in table["copy"] and "GiB" in table["copy"]
    assert not (folder / "copy").exists()  # the copy is deleted once measured
    again = subprocess.run([*command, "--folder", str(folder), "--paths", "verify"], capture_output=True, text=True)
    assert again.returncode == 0 and "using the store built" in again.stderr  # built once, measured again
    assert [line.split()[0] for line in again.stdout.splitlines()[2:]] == ["verify"]


def test_a_child_reports_its_own_peak_memory(tmp_path):
    row = bookkeeping.run_child(["build", str(tmp_path), "50", "8", "server"], "the build")
    assert row["articles"] == 50 and 20 * 2**20 < row["peak_rss_bytes"] < 4 * 2**30


def test_the_synthetic_server_answers_what_the_bookkeeping_asks():
    from ingest.embedders.fake import FakeEmbedder
    from ingest.jobs import collection_spec, make_chunker

    settings = bookkeeping.settings_for(bookkeeping.Path("unused"))
    fake = FakeEmbedder(bookkeeping.embedder(8).spec)
    store = bookkeeping.SyntheticStore(5, collection_spec(settings, fake), make_chunker(settings, fake))
    refs = [ref for page in store.scan_chunks(batch=2) for ref in page]
    assert [r.article_id for r in refs] == ["1", "2", "3", "4", "5"] and {r.chunk_index for r in refs} == {0}
    points = [p for page in store.export_points(batch=3) for p in page]
    assert len(points) == 5 and points[0].payload["title"] == "Synthetic 1" and points[0].vector.shape == (8,)
    assert store.count() == 5 and store.count_excluding(["2", "9"]) == 4


def test_bad_sizes_are_usage_errors(capsys):
    assert bookkeeping.main(["--articles", "0"]) == 2 and "at least 1" in capsys.readouterr().err
