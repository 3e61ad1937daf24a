"""The command lines as users run them: subprocesses, exit codes, stdout and stderr."""

import json
import os
import subprocess
import sys

import pytest

HAL_QUERY = "the space film in which the computer HAL 9000 turns on its crew"


def run(*args, cwd, env=None):
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": os.getcwd(), **(env or {})},
    )


@pytest.mark.parametrize("module", ["ingest", "search"])
def test_help_is_on_stdout_and_exits_zero(module, tmp_path):
    done = run(module, "--help", cwd=tmp_path)
    assert done.returncode == 0 and "usage: python -m " + module in done.stdout


@pytest.mark.parametrize(
    "args, env, message",
    [
        (["--bogus"], {}, "unrecognized arguments: --bogus"),
        (["--limit", "-3"], {}, "--limit must be a positive number"),
        (["--embedder", "tei"], {}, "needs --tei-url"),
        ([], {"INGEST_LIMIT": "many"}, "INGEST_LIMIT='many' is not a valid int"),
        (["--chunk-size", "5"], {}, "chunk size 5 is too small"),
        (
            ["--qdrant-url", "http://user:pw@localhost:99999"],
            {},
            "--qdrant-url 'http://localhost:99999': Port out of range 0-65535; e.g. http://localhost:6333",
        ),
        (
            ["--embedder", "tei", "--tei-url", "http://localhost:70000"],
            {},
            "--tei-url 'http://localhost:70000': Port out of range",
        ),
        (["--qdrant-url", "localhost:6333"], {}, "is not an http(s) URL with a host"),
    ],
)
def test_bad_usage_exits_two_naming_the_setting(args, env, message, tmp_path):
    done = run("ingest", *args, cwd=tmp_path, env=env)
    assert done.returncode == 2 and message in done.stderr and done.stdout == ""
    assert "Traceback" not in done.stderr and "pw" not in done.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["  "], "argument query: is empty: say what to look for"),
        (["-k", "0", "x"], "argument -k: must be between 1 and 100, got 0"),
        (["x", "--qdrant-url", "http://localhost:99999"], "Port out of range 0-65535"),
        (["serve", "--open", "--port", "80000"], "argument --port: must be between 0 and 65535, got 80000"),
    ],
)
def test_bad_search_usage_exits_two_before_loading_anything(args, message, tmp_path):
    """Issue 19: these exited 1 after seconds of model start-up, or with tracebacks."""
    done = run("search", *args, cwd=tmp_path)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert "loading" not in done.stderr and done.stdout == ""


@pytest.mark.parametrize(
    "args, env, message",
    [
        (["--device", "cuda"], {}, "--device cuda: this torch ("),
        (
            ["--model", "no-such/model"],
            {"HF_HUB_OFFLINE": "1"},
            "model 'no-such/model' is not in the Hugging Face cache and HF_HUB_OFFLINE is set",
        ),
    ],
)
def test_a_model_or_device_that_cannot_be_had_fails_in_seconds_saying_why(args, env, message, tmp_path):
    import time

    started = time.perf_counter()
    done = run("ingest", "--limit", "1", "--no-progress", *args, cwd=tmp_path, env=env)
    assert done.returncode == 1 and message in done.stderr and done.stderr.count("ERROR") == 1, done.stderr
    assert time.perf_counter() - started < 30  # the model name was once blamed for cuda; no-such/model took 80 s


def test_a_source_without_a_column_exits_one_naming_it(tmp_path):
    (tmp_path / "rows.jsonl").write_text(json.dumps({"id": "1", "title": "T", "text": "x"}) + "\n")
    done = run("ingest", "--source", "rows.jsonl", cwd=tmp_path)
    assert done.returncode == 1 and "lacks the required column 'url'" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "qdrant_data").exists()


def test_search_before_any_ingest_says_what_to_do(tmp_path):
    done = run("search", "anything", cwd=tmp_path)
    assert done.returncode == 1 and "no store at qdrant_data: build one with `python -m ingest`" in done.stderr
    assert not (tmp_path / "qdrant_data").exists()  # searching makes no empty store


@pytest.mark.slow
def test_ingest_then_search_from_the_command_line(tmp_path, sample):
    rows = sample[:25] + [{**sample[25], "text": 42}]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = run("ingest", "--source", "rows.jsonl", cwd=tmp_path, env={"QDRANT_COLLECTION": "cli"})
    assert done.returncode == 3, done.stderr  # finished, with one article dead-lettered
    assert done.stdout.startswith("articles read 26, skipped (empty) 0, invalid 1,")
    assert "collection cli now holds" in done.stdout and "dead_letter.jsonl" in done.stdout
    assert json.loads((tmp_path / "dead_letter.jsonl").read_text())["article_id"] == sample[25]["id"]

    found = run("search", "--collection", "cli", "--json", "-k", "2", HAL_QUERY, cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    hits = [json.loads(line) for line in found.stdout.splitlines()]
    assert [h["rank"] for h in hits] == [1, 2] and hits[0]["title"] == "2001: A Space Odyssey"
    assert set(hits[0]) >= {"score", "url", "text", "article_id", "chunk_index"}


def test_the_top_level_help_lists_the_commands_and_every_flag_of_run(capsys):
    from ingest.cli import COMMANDS, main

    with pytest.raises(SystemExit) as done:
        main(["--help"])
    shown = capsys.readouterr().out
    assert done.value.code == 0
    assert all(f"\n  {command} " in shown or f"\n  {command}\n" in shown for command in ("run", "reindex", "verify"))
    for flag in ("--limit", "--source", "--embedder", "--qdrant-url", "--state-dir", "--drop-old", "--window"):
        assert flag in shown, flag
    assert set(COMMANDS) >= {"run", "reindex", "verify", "repair", "bench", "plan"}


def test_control_characters_from_the_corpus_never_reach_the_terminal_raw():
    """ESC sequences, BEL, NUL and C1's CSI in an indexed text: shown as U+FFFD in the
    human format, escaped in JSON (which still round-trips them exactly)."""
    import json as json_module

    from search.cli import format_hit, json_line, terminal_safe
    from search.query import Hit

    evil = "a \x1b[31mred\x1b[0m bell\x07 nul\x00 csi\x9b2J del\x7f\tand a tab\nline"
    hit = Hit(
        rank=1,
        score=0.5,
        similarity=0.5,
        article_id="a",
        title="Title\x1b]0;pwned\x07",
        url="https://x/\x1b",
        text=evil,
        chunk_index=0,
        start=0,
        end=1,
        point_id="p",
    )
    raw = "\x1b\x07\x00\x9b\x7f"
    assert not any(c in format_hit(hit) for c in raw) and "\ufffd[31mred" in format_hit(hit)
    line = json_line(hit.model_dump())
    assert not any(c in line for c in raw) and json_module.loads(line)["text"] == evil
    assert terminal_safe("tab\tand\nnewline stay") == "tab\tand\nnewline stay"
