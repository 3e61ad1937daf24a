"""The one error edge: every failure a user can cause or meet ends with one line on
stderr naming the thing and the fix, exit 1, and a traceback only with -v."""

from __future__ import annotations

import errno
import os
import socket
import sqlite3
import subprocess
import sys

import pytest

from ingest.errors import StoreError, explain


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args, tmp_path, timeout=120):
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize(
    "command",
    [
        ["-m", "ingest", "--no-progress"],
        ["-m", "ingest", "verify"],
        ["-m", "search", "hello"],
    ],
)
@pytest.mark.parametrize("grpc", [True, False])
def test_an_unreachable_qdrant_server_is_one_line_naming_it(tmp_path, command, grpc):
    url = f"http://admin:secret@127.0.0.1:{free_port()}"
    done = run([*command, "--qdrant-url", url] + ([] if grpc else ["--no-grpc"]), tmp_path)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "cannot use the Qdrant server at http://127.0.0.1:" in lines[0] and "check --qdrant-url" in lines[0]
    assert "secret" not in done.stderr and "admin" not in done.stderr


def test_with_v_the_traceback_comes_too(tmp_path):
    done = run(["-m", "ingest", "verify", "--qdrant-url", f"http://127.0.0.1:{free_port()}", "-v"], tmp_path)
    assert done.returncode == 1 and "Traceback" in done.stderr and "cannot use the Qdrant server" in done.stderr


def test_a_bad_tei_port_is_one_line(tmp_path):
    done = run(
        [
            "-m",
            "ingest",
            "--embedder",
            "tei",
            "--tei-url",
            f"http://127.0.0.1:{free_port()}",
            "-q",
            "--no-progress",
            "--limit",
            "2",
        ],
        tmp_path,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "failed GET /info after 4 attempts" in line and "check the URL and that the server is up" in line


def test_a_full_disk_is_named_with_the_file_and_what_to_do():
    full = OSError(errno.ENOSPC, "No space left on device", "/data/qdrant_data-state/wiki.sqlite")
    assert explain(full) == (
        "the disk is full writing /data/qdrant_data-state/wiki.sqlite: free some space and "
        "run the same command again (what was written before is kept, and the run resumes)"
    )
    assert explain(sqlite3.OperationalError("database or disk is full")).startswith("the disk is full: ")
    assert explain(PermissionError(errno.EACCES, "Permission denied", "/srv/q")).startswith(
        "no permission to use /srv/q"
    )
    assert explain(StoreError("as the store said")) == "as the store said"
    assert "run again with -v" in explain(KeyError("x"))


def test_a_full_disk_in_a_run_ends_in_one_line(tmp_path, monkeypatch, caplog):
    from ingest import cli

    def fill_the_disk(settings, mode, **_):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "qdrant_data-state" / "m.sqlite"))

    monkeypatch.setattr(cli, "run_ingest", fill_the_disk)
    assert cli.main(["--no-progress", "--limit", "1"]) == 1
    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert record.getMessage().startswith("the disk is full writing ") and record.exc_info is None


def test_a_closed_pipe_ends_quietly(tmp_path):
    code = (
        "import sys\nfrom ingest.edge import quiet_on_closed_pipe\n"
        "def main():\n    for i in range(200000):\n        print('hit', i)\n    return 0\n"
        "sys.exit(quiet_on_closed_pipe(main))\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert child.stdout.readline() == b"hit 0\n"
    child.stdout.close()  # `| head -1`
    assert child.wait(timeout=60) == 141
    assert child.stderr.read() == b""
    child.stderr.close()
