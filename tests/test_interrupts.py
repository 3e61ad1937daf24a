"""Ctrl-C, as a terminal sends it (SIGINT to the process), to `python -m ingest` with
the real bundled model while it embeds, and to `python -m search`: the command ends
with 130 and one line, never with an abort; the store it wrote resumes exactly.

Before: a second Ctrl-C while the run stopped (or one arriving as the interpreter
finalized with torch's threads alive) ended in "terminate called without an active
exception", exit -6 (134 in a shell)."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.fault_runs import ROOT

ARTICLES = 1500


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}


def _interrupt(args: list[str], cwd, *, when: str, after: float, signals: int) -> tuple[int, str]:
    """Start `args`, wait for a stderr line holding `when`, then `after` seconds, then send
    `signals` SIGINTs 0.3 s apart; (exit code, stderr)."""
    child = subprocess.Popen(
        [sys.executable, *args], cwd=cwd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in child.stderr], daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + 120
    while not any(when in line for line in seen):
        assert time.monotonic() < deadline and child.poll() is None, "".join(seen)
        try:
            seen.append(lines.get(timeout=1))
        except queue.Empty:
            pass
    time.sleep(after)
    for n in range(signals):
        if n:
            time.sleep(0.3)
        child.send_signal(signal.SIGINT)
    child.wait(timeout=120)
    time.sleep(0.2)
    while not lines.empty():
        seen.append(lines.get())
    child.stderr.close()
    return child.returncode, "".join(seen)


def _ingest(tmp_path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ingest", *extra], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_ctrl_c_once_or_twice_ends_an_ingest_or_a_search_with_130_and_the_run_resumes_exactly(tmp_path):
    run = ["-m", "ingest", "--source", "sample", "--limit", str(ARTICLES), "--qdrant-path", "q", "--no-progress"]
    code, err = _interrupt(run, tmp_path, when="ingesting", after=2.0, signals=1)
    assert code == 130 and err.rstrip().endswith("ERROR ingest: interrupted"), err
    code, err = _interrupt(run, tmp_path, when="ingesting", after=1.0, signals=2)
    assert code == 130, err
    assert "terminate called" not in err and "Traceback" not in err, err
    done = _ingest(tmp_path, *run[2:])
    assert done.returncode == 0, done.stderr
    added, unchanged = (
        int(re.search(rf"{word} ([\d,]+)", done.stdout)[1].replace(",", "")) for word in ("articles added", "unchanged")
    )
    assert unchanged > 0 and added + unchanged == ARTICLES, done.stdout  # resumed: what was written is kept
    verified = _ingest(tmp_path, "verify", "--qdrant-path", "q")
    assert verified.returncode == 0 and "in sync" in verified.stdout, verified.stdout + verified.stderr

    code, err = _interrupt(
        ["-m", "search", "who wrote hamlet", "--qdrant-path", "q", "-v"], tmp_path, when="loading", after=0.5, signals=2
    )  # a search, while its model loads
    assert code == 130, err
    assert "Traceback" not in err and "terminate called" not in err, err
