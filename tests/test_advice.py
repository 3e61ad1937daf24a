"""Every piece of advice the command line prints after a fault, followed as printed:
it must do what it says and never delete what the user did not ask to delete.

The scenario of issue 19: a user's own file written into the collection that held
another source, the run stopped; `verify` used to advise `reindex`, which, run as
advised (no --source: the default source), deleted the user's articles. Each command
is `python -m ingest` in a subprocess, embedding through the TEI stand-in, configured
from the environment (EMBEDDER, TEI_URL, …) so that the advised command runs verbatim."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shlex
import subprocess
import sys
import time

import pytest

from tests.fault_runs import WINDOW, env, expected, killed, stored, tei, write_rows  # noqa: F401 - tei: a fixture

CHUNK = 300


def _env(tei_url: str, crash_at: str | None = None) -> dict[str, str]:
    return {
        **env(crash_at),
        "EMBEDDER": "tei",
        "TEI_URL": tei_url,
        "CHUNK_SIZE": str(CHUNK),
        "INGEST_WINDOW": str(WINDOW),
        "INGEST_DEAD_LETTER": "dl.jsonl",
    }


def _run(tmp_path, tei, command: str, crash_at: str | None = None) -> subprocess.CompletedProcess:
    """A command line as a user types it: `python -m ingest …`."""
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "ingest"], command
    return subprocess.run(
        [sys.executable, *argv[1:], "--no-progress"]
        if argv[3:4] in (["run"], ["reindex"])
        else [sys.executable, *argv[1:]],
        cwd=tmp_path,
        env=_env(tei.url, crash_at),
        capture_output=True,
        text=True,
        timeout=180,
    )


def _advised(text: str) -> list[str]:
    """The commands an advice quotes (between backticks)."""
    return re.findall(r"`(python -m ingest [^`]*)`", text)


@pytest.fixture
def two_sources(tmp_path, tei, sample):
    """The sample-like source `a` (30 articles), then the user's own `b` (40), whose run stops."""
    a, b = [dict(r) for r in sample[:30]], [dict(r) for r in sample[100:140]]
    write_rows(tmp_path / "a.jsonl", a)
    write_rows(tmp_path / "b.jsonl", b)
    flags = "--qdrant-path qdrant --collection wiki"
    assert _run(tmp_path, tei, f"python -m ingest run --source a.jsonl {flags}").returncode == 0
    stopped = _run(tmp_path, tei, f"python -m ingest run --source b.jsonl {flags}", crash_at="before-manifest-write:2")
    assert killed(stopped)
    return a, b


def test_verify_after_a_stopped_run_advises_running_it_again_and_that_restores_everything(tmp_path, tei, two_sources):
    a, b = two_sources
    verified = _run(tmp_path, tei, "python -m ingest verify --qdrant-path qdrant --collection wiki")
    assert verified.returncode == 4
    advice = verified.stdout.strip().splitlines()[-1]
    assert advice.startswith("a run was stopped before it finished: run it again") and "reindex" not in advice
    (command,) = _advised(advice)
    assert command == f"python -m ingest run --source {tmp_path / 'b.jsonl'} --qdrant-path qdrant --collection wiki"
    assert _run(tmp_path, tei, command).returncode == 0
    assert stored(tmp_path / "qdrant") == expected(a + b, CHUNK)  # nothing of either source lost
    assert _run(tmp_path, tei, "python -m ingest verify --qdrant-path qdrant --collection wiki").returncode == 0


def test_a_reindex_without_source_is_refused_when_the_collection_holds_another_source(tmp_path, tei, two_sources):
    a, b = two_sources
    assert (
        _run(tmp_path, tei, "python -m ingest run --source b.jsonl --qdrant-path qdrant --collection wiki").returncode
        == 0
    )
    before = stored(tmp_path / "qdrant")
    refused = _run(tmp_path, tei, "python -m ingest reindex --qdrant-path qdrant --collection wiki")
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert f"wiki was written from {tmp_path / 'a.jsonl'}, {tmp_path / 'b.jsonl'}" in refused.stderr
    assert stored(tmp_path / "qdrant") == before  # nothing deleted, nothing added

    (command,) = _advised(refused.stderr)  # the advice: name the source to mirror
    asked = _run(tmp_path, tei, command + " --qdrant-path qdrant --collection wiki")
    assert asked.returncode == 1 and "30 of the 70 articles of wiki-" in asked.stderr, asked.stderr
    assert "were not deleted: not confirmed" in asked.stderr and "with --yes" in asked.stderr
    assert stored(tmp_path / "qdrant") == before  # not on a terminal, not confirmed: nothing deleted

    deleted = _run(tmp_path, tei, command + " --qdrant-path qdrant --collection wiki --yes")  # as advised
    assert deleted.returncode == 0, deleted.stderr
    assert stored(tmp_path / "qdrant") == expected(b, CHUNK)  # the user asked for exactly this
    assert _run(tmp_path, tei, "python -m ingest verify --qdrant-path qdrant --collection wiki").returncode == 0
    quiet = _run(tmp_path, tei, "python -m ingest reindex --qdrant-path qdrant --collection wiki")
    assert quiet.returncode == 1 and f"written from {tmp_path / 'b.jsonl'}:" in quiet.stderr  # b alone now


def _on_terminal(tmp_path, tei, command: str, answer: bytes) -> tuple[int, str]:
    """`command` with a terminal for stdin and stderr (a pty); `answer` typed at the question."""
    main, child_end = pty.openpty()
    argv = shlex.split(command)
    child = subprocess.Popen(
        [sys.executable, *argv[1:], "--no-progress"],
        cwd=tmp_path,
        env=_env(tei.url),
        stdin=child_end,
        stdout=subprocess.PIPE,
        stderr=child_end,
    )
    os.close(child_end)
    seen, deadline = b"", time.monotonic() + 120
    while b"[y/N]" not in seen and time.monotonic() < deadline and child.poll() is None:
        if select.select([main], [], [], 0.5)[0]:
            seen += os.read(main, 4096)
    if b"[y/N]" in seen:
        os.write(main, answer)
    child.wait(timeout=120)
    while select.select([main], [], [], 0.2)[0]:
        try:
            seen += os.read(main, 4096)
        except OSError:
            break
    os.close(main)
    child.stdout.close()
    return child.returncode, seen.decode("utf-8", "replace")


def test_on_a_terminal_a_large_delete_is_asked_first(tmp_path, tei, sample):
    a, b = [dict(r) for r in sample[:30]], [dict(r) for r in sample[100:140]]
    write_rows(tmp_path / "ab.jsonl", a + b)
    write_rows(tmp_path / "b.jsonl", b)
    assert _run(tmp_path, tei, "python -m ingest run --source ab.jsonl --qdrant-path qdrant").returncode == 0
    reindex = "python -m ingest reindex --source b.jsonl --qdrant-path qdrant"
    code, screen = _on_terminal(tmp_path, tei, reindex, b"n\n")
    assert "delete 30 of the 70 articles of wikipedia-" in screen and "(43%), which b.jsonl lacks? [y/N]" in screen
    assert code == 1 and stored(tmp_path / "qdrant", "wikipedia") == expected(a + b, CHUNK)
    code, screen = _on_terminal(tmp_path, tei, reindex, b"y\n")
    assert code == 0, screen
    assert stored(tmp_path / "qdrant", "wikipedia") == expected(b, CHUNK)


def test_the_advice_for_a_folder_without_a_record_and_a_damaged_alias_file_works_as_given(tmp_path, tei, sample):
    rows = [dict(r) for r in sample[:20]]
    write_rows(tmp_path / "rows.jsonl", rows)
    run = "python -m ingest run --source rows.jsonl --qdrant-path qdrant --collection wiki"
    assert _run(tmp_path, tei, run).returncode == 0
    (tmp_path / "qdrant" / "edge" / "aliases.json").write_text('{"wiki": "wi', encoding="utf-8")  # cut short
    damaged = _run(tmp_path, tei, run)
    assert damaged.returncode == 1 and "aliases.json is damaged" in damaged.stderr, damaged.stderr
    assert "delete it and run the command that built the collection again" in damaged.stderr
    (tmp_path / "qdrant" / "edge" / "aliases.json").unlink()  # as advised
    assert _run(tmp_path, tei, run).returncode == 0
    assert stored(tmp_path / "qdrant") == expected(rows, CHUNK)
    assert json.loads((tmp_path / "qdrant" / "edge" / "aliases.json").read_text())["wiki"].startswith("wiki-")

    (spec,) = (tmp_path / "qdrant" / "edge" / "specs").glob("wiki-*.json")
    spec.write_text(spec.read_text()[:40], encoding="utf-8")  # cut short
    damaged = _run(tmp_path, tei, run)
    assert damaged.returncode == 1 and f"{spec.name} is damaged" in damaged.stderr, damaged.stderr
    spec.unlink()  # as advised
    again = _run(tmp_path, tei, run)
    assert again.returncode == 0 and "unchanged 20" in again.stdout, again.stderr  # nothing embedded again
    assert stored(tmp_path / "qdrant") == expected(rows, CHUNK)
