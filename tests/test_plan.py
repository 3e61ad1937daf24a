"""ingest.bench.plan: the full-corpus projection and its table."""

from __future__ import annotations

import io

import pytest

from ingest.bench.plan import Assumptions, main, project


def test_the_reference_throughput_reproduces_the_reference_run():
    # 100 A10Gs at 212.6k characters/s each took 15:19 for the corpus in Jan 2024.
    p = project(100, Assumptions())
    assert p.bound == "GPU"
    assert p.wall_seconds == pytest.approx(15 * 60 + 19, abs=2)
    assert p.gpu_hours == pytest.approx(100 * p.wall_seconds / 3600)
    assert p.cost == pytest.approx(p.gpu_hours * 1.1016)


def test_about_forty_million_chunks_of_512_characters():
    assert 38_000_000 < Assumptions().chunks < 42_000_000


def test_a_slow_client_bounds_the_gpu_and_raises_the_cost():
    slow = Assumptions(client_chunks_per_s=200)  # 200 x ~472 characters < 212,600
    p = project(10, slow)
    assert p.bound == "client" and p.chars_per_gpu == pytest.approx(200 * slow.chars_per_chunk)
    assert p.cost > project(10, Assumptions()).cost
    assert project(10, Assumptions(client_chunks_per_s=200, client_cores=4)).bound == "GPU"


def test_one_shared_qdrant_bounds_many_gpus():
    a = Assumptions(qdrant_points_per_s=20_000)
    assert project(10, a).bound == "GPU"
    many = project(100, a)
    assert many.bound == "Qdrant" and many.chars_per_gpu * 100 == pytest.approx(20_000 * a.chars_per_chunk)


def test_main_prints_a_row_per_gpu_count():
    out = io.StringIO()
    assert main(["--gpus", "10", "50", "100", "--client-chunks-per-s", "900", "--startup-seconds", "60"], out=out) == 0
    text = out.getvalue()
    rows = [line.split() for line in text.splitlines() if line.strip() and line.split()[0].isdigit()]
    assert [row[0] for row in rows] == ["10", "50", "100"]
    assert all(row[2] == "GPU" for row in rows)
    assert "60 s of start-up added" in text and "$1.1016 per GPU-hour" in text
    with pytest.raises(SystemExit):
        main(["--gpus", "0"], out=io.StringIO())
