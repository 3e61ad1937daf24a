"""`python -m ingest bench-cpu`: the CPU side of a GPU container, per core, on real
articles, the real tokenizer and an instant TEI server (ingest/bench/cpu.py)."""

from __future__ import annotations

import pytest

from ingest.bench import cpu
from ingest.embedders.local import DEFAULT_MODEL, resolve_model
from ingest.sources import sample_rows


def test_every_stage_is_timed_on_the_same_text_and_sums_to_the_pipeline(capsys):
    rows = sample_rows()[:200]
    server = cpu.InstantServer.start(max_batch=256, wide_floats=False)
    try:
        stages = cpu.measure(rows, f"{resolve_model(DEFAULT_MODEL)[1]}/tokenizer.json", server.url)
    finally:
        server.stop()
    characters = sum(len(row["text"]) for row in rows)
    assert {stage.characters for stage in stages} == {characters}
    assert all(stage.cpu_seconds >= 0 for stage in stages) and stages[1].cpu_seconds > 0  # chunking does work
    assert [s.ours for s in stages].count(False) == 1  # TEI's tokenization is counted apart
    text = cpu.report(stages, len(rows), 1_000_000)
    ours = sum(s.cpu_seconds for s in stages if s.ours)
    assert f"{ours:8.2f}" in text and "needs" in text.splitlines()[-1]


def test_the_command_prints_the_table_and_the_cores(capsys):
    assert cpu.main(["--articles", "50"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("50 articles,") and "chunk, counting tokens" in out and "cores of our pipeline" in out


@pytest.mark.parametrize("argv", [["--articles", "0"], ["--gpu-chars-per-s", "0"]])
def test_bad_usage_is_exit_2(argv, capsys):
    assert cpu.main(argv) == 2 and "error:" in capsys.readouterr().err
