"""The one command-line edge (ingest/edge.py): every command ends a failure through it."""

from __future__ import annotations

import argparse
import logging

import pytest

from ingest.edge import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, command, run_command
from ingest.errors import SettingsError, StoreError

pytestmark = pytest.mark.unit


def parser() -> argparse.ArgumentParser:
    built = argparse.ArgumentParser(prog="tool")
    built.add_argument("--n", type=int, default=1)
    built.add_argument("-v", "--verbose", action="count", default=0)
    return built


def check(args: argparse.Namespace) -> None:
    if args.n < 1:
        raise SettingsError("--n must be at least 1")


def test_a_bad_combination_of_flags_is_a_usage_error_before_any_work(capsys):
    work = []
    main = command("tool", parser, lambda args: work.append(args) or EXIT_OK, check=check)
    assert main(["--n", "0"]) == EXIT_USAGE and not work
    assert capsys.readouterr().err == "tool: error: --n must be at least 1\n"


def test_a_failure_in_the_work_is_one_line_and_exit_1(caplog):
    def work(args):
        raise StoreError("no store at qdrant_data: build one with `python -m ingest`")

    assert command("tool", parser, work)([]) == EXIT_FAILED
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.getMessage().startswith("no store at qdrant_data") and record.exc_info is None


def test_the_traceback_comes_with_v(caplog):
    def work(args):
        raise RuntimeError("boom")

    assert command("tool", parser, work)(["-v"]) == EXIT_FAILED
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "unexpected error (RuntimeError: boom)" in record.getMessage() and record.exc_info is not None


def test_a_settings_error_once_started_is_a_failure_not_usage(caplog):
    def body(edge):
        edge.ready()
        raise SettingsError("article 'x': the title leaves 3 tokens")

    assert run_command("tool", body) == EXIT_FAILED


def test_an_interrupt_is_130_and_said_once(caplog):
    def body(edge):
        edge.ready()
        raise KeyboardInterrupt

    assert run_command("tool", body) == EXIT_INTERRUPTED
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == ["interrupted"]


def test_a_closed_pipe_goes_to_the_process_edge():
    def body(edge):
        raise BrokenPipeError

    with pytest.raises(BrokenPipeError):
        run_command("tool", body)
