"""`python -m ingest rehearse`: the Modal app's driver (`ingest.sharded.driver.run_load`)
over a local pool of workers, each with its own TEI-protocol server started the way
TEI is, run as the command line runs it (a subprocess). With a sick GPU, a dead
router, a storm of 429s and a killed worker it ends with exactly the points of a clean
run; when the faults outlast the retries, it fails, names the shards, and moves no alias."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.qdrant_server import QdrantStandIn
from tests.qdrant_standin import edge_points

ARTICLES = ["--articles", "400", "--shard-size", "40"]


def rehearse(tmp_path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ingest", "rehearse", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def digest(done: subprocess.CompletedProcess) -> str:
    found = re.search(r"^point set +([\d,]+) points, digest ([0-9a-f]+)$", done.stdout, re.M)
    assert found, done.stdout + done.stderr
    return found.group(2)


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> subprocess.CompletedProcess:
    folder = tmp_path_factory.mktemp("clean")
    done = rehearse(folder, *ARTICLES, "--workers", "2")
    assert done.returncode == 0, done.stderr
    done.points = edge_points(folder / "rehearsal_data", "wikipedia")  # payload, dense and sparse vector by id
    return done


def test_a_clean_rehearsal_switches_and_reports_the_phases(clean):
    out = clean.stdout
    assert re.search(
        r"^manifest of wikipedia-[0-9a-f]{8}: 400 articles; wikipedia now leads to wikipedia-[0-9a-f]{8}$", out, re.M
    )
    for line in (
        "shards               10 done this attempt",
        "articles             400 (0 invalid)",
        "load ",
        "GPU-seconds held",
        "index build",
        "alias switch",
        "time to searchable",
    ):
        assert line in out


def test_faults_on_every_worker_end_with_the_clean_runs_points(tmp_path, clean):
    done = rehearse(tmp_path, *ARTICLES, "--workers", "4", "--faults", "sick-gpu,dead-router,429-storm,killed-worker")
    assert done.returncode == 0, done.stderr
    assert digest(done) == digest(clean)
    assert edge_points(tmp_path / "rehearsal_data", "wikipedia") == clean.points  # every point exactly, once
    err = done.stderr
    assert "its health check answers 503: its GPU is broken" in err  # the sick GPU: failed loudly, not dead letters
    assert "exited (code 134)" in err  # the dead router
    assert re.search(r"WorkerLost: worker-3 \(killed-worker\) died holding shard", err)
    assert re.search(r"^embedder retries +429 [\d,]+", done.stdout, re.M)  # the storm, ridden out
    assert re.search(r"^workers replaced +[34]$", done.stdout, re.M)
    assert "(2 rounds)" in done.stdout


def test_when_the_faults_outlast_the_rounds_the_alias_does_not_move_and_the_shards_are_named(tmp_path):
    done = rehearse(tmp_path, *ARTICLES, "--workers", "2", "--faults", "sick-gpu,dead-router", "--max-rounds", "1")
    assert done.returncode == 1
    failed = re.findall(r"^failed shard \[(\d+), (\d+)\): (.*)$", done.stdout, re.M)
    assert failed and all(
        "GPU is broken" in why or "exited (code 134)" in why or "is gone" in why for _, _, why in failed
    )
    assert "the alias did not move" in done.stderr and "wikipedia now leads" not in done.stdout
    from ingest.settings import StoreSettings
    from ingest.store import open_store

    store = open_store(StoreSettings(qdrant_path=str(tmp_path / "rehearsal_data")))
    try:
        assert store.resolve("wikipedia").collection is None
    finally:
        store.close()
    again = rehearse(tmp_path, *ARTICLES, "--workers", "2")  # the same command: only the failed shards again
    assert again.returncode == 0, again.stderr
    assert f"{10 - len(failed)} shards already done by an earlier attempt" in again.stderr


def test_a_trial_lives_under_its_own_name(tmp_path):
    done = rehearse(tmp_path, *ARTICLES, "--workers", "2", "--limit", "80")
    assert done.returncode == 0, done.stderr
    assert re.search(r"; wikipedia-trial now leads to wikipedia-trial-[0-9a-f]{8}$", done.stdout, re.M)


def test_processes_against_a_qdrant_server_in_strict_mode_end_with_the_same_points(tmp_path, clean):
    """Against a server the workers are processes, each with its own TEI and connection; the
    server here is the Qdrant stand-in with Qdrant Cloud's strict mode, refusing some writes
    with 429 and Retry-After as its rate limiter would."""
    from ingest.settings import StoreSettings
    from ingest.store import open_live

    with QdrantStandIn(strict=True, optimize_seconds=0.2) as server:
        server.refuse_writes(3, retry_after=1)
        done = rehearse(
            tmp_path, *ARTICLES, "--workers", "2", "--faults", "sick-gpu", "--qdrant-url", server.url, "--no-grpc"
        )
        store = open_live(StoreSettings(qdrant_url=server.url, prefer_grpc=False, collection="wikipedia"))
        try:
            stored = {p.id: p for page in store.export_points() for p in page}
        finally:
            store.close()
    assert done.returncode == 0, done.stderr
    assert "(processes, 2 shards each at once)" in done.stderr and 429 in [s for *_, s in server.requests]
    assert digest(done) == digest(clean)  # the same points as the embedded store's clean run
    assert set(stored) == set(clean.points)
    for point_id, point in stored.items():  # a server normalizes a cosine vector again: its last bit may move
        assert point.payload == clean.points[point_id][0]
        assert max(abs(a - b) for a, b in zip(point.vector, clean.points[point_id][1])) < 1e-6
