"""The command-line edge: how every command, benchmarks and console scripts included,
ends, in one place.

    exit 0   done (a command may document others: 3 dead letters, 4 drift)
    exit 1   failed: one line on stderr naming the problem and the fix
             (`ingest.errors.explain`), the traceback only with -v
    exit 2   bad usage: "PROG: error: ..." before anything was opened
    exit 130 interrupted (Ctrl-C): what was written is kept, the next run resumes
    exit 141 stdout closed by its reader (`| head`): quietly, as Unix tools do

A command's body gets an `Edge`: it parses and checks its arguments, then calls
`edge.ready(verbosity, qdrant=...)`. A `SettingsError` before that is bad usage (2);
any failure after it is a failure (1). `console` adds what only a whole process may
do (signal handling, the closed pipe) for `python -m ...` and the console scripts.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Callable, Sequence

from ingest.errors import SettingsError, explain
from ingest.logs import setup_logging

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a command stopped by Ctrl-C
EXIT_CLOSED_PIPE = 141  # 128 + SIGPIPE


@dataclass(slots=True)
class Edge:
    """What the edge needs to know of a running command (set by `ready`)."""

    prog: str
    logger: logging.Logger
    started: bool = False
    verbosity: int = 0
    qdrant: str | None = None  # a server's address without credentials, for a connection failure's line

    def ready(self, verbosity: int = 0, *, qdrant: str | None = None) -> None:
        """The arguments are good: from here on a failure is exit 1, not a usage error."""
        self.started, self.verbosity, self.qdrant = True, verbosity, qdrant


def run_command(prog: str, body: Callable[[Edge], int], *, logger: str = "ingest") -> int:
    """`body(edge)`'s exit code, or the one the edge gives its failure (module docstring)."""
    edge = Edge(prog, logging.getLogger(logger))
    try:
        return body(edge)
    except (SettingsError, ValueError) as exc:  # a bad flag or variable, found while checking them
        if edge.started:
            report_failure(edge.logger, exc, edge.verbosity, qdrant=edge.qdrant)
            return EXIT_FAILED
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        edge.logger.error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        raise  # `| head` closed stdout: `console` ends quietly
    except Exception as exc:
        report_failure(edge.logger, exc, edge.verbosity, qdrant=edge.qdrant)
        return EXIT_FAILED


def command(
    prog: str,
    build_parser: Callable[[], argparse.ArgumentParser],
    run: Callable[[argparse.Namespace], int],
    *,
    check: Callable[[argparse.Namespace], None] | None = None,
    qdrant: Callable[[argparse.Namespace], str | None] | None = None,
    quiet: bool = True,
    logger: str = "ingest",
) -> Callable[[Sequence[str] | None], int]:
    """A `main(argv) -> exit code` for a command whose parser is `build_parser()`: it
    logs warnings only unless -v (`quiet`; progress and results at INFO otherwise),
    `check(args)` raises SettingsError for a bad combination of flags (exit 2), then
    `run(args)` does the work, any failure ending through `run_command`. `qdrant(args)`:
    the server's address for a connection failure's line."""

    def main(argv: Sequence[str] | None = None) -> int:
        def body(edge: Edge) -> int:
            args = build_parser().parse_args(argv)
            setup_logging(args.verbose - 1 if quiet else args.verbose)
            if check is not None:
                check(args)
            edge.ready(args.verbose, qdrant=qdrant(args) if qdrant is not None else None)
            return run(args)

        return run_command(prog, body, logger=logger)

    return main


def report_failure(logger: logging.Logger, exc: BaseException, verbosity: int, *, qdrant: str | None = None) -> None:
    """The one line a failed command ends with (`ingest.errors.explain`); the traceback only with -v."""
    logger.error("%s", explain(exc, qdrant=qdrant), exc_info=exc if verbosity > 0 else None)


def console(main: Callable[[], int], name: str = "ingest") -> int:
    """A whole process's edge around a command's `main`: Ctrl-C and a closed pipe."""
    return stop_on_interrupt(lambda: quiet_on_closed_pipe(main), name)


def quiet_on_closed_pipe(main: Callable[[], int]) -> int:
    """Run a command's `main`; when the reader of its stdout goes away (`| head`),
    end quietly with 141, as Unix tools do, not with a traceback."""
    try:
        code = main()
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's own flush at exit must not fail again
        return EXIT_CLOSED_PIPE


def stop_on_interrupt(main: Callable[[], int], name: str = "ingest") -> int:
    """Run a command's `main` so that Ctrl-C ends it with 130 and what it wrote kept.

    The first Ctrl-C raises KeyboardInterrupt in the main thread: the command closes
    what it writes (store, manifest) and returns 130. A second one while it stops
    quits at once, like a kill, which every command survives (the next run resumes).
    Either way the process then ends without the interpreter's finalization: a worker
    thread still inside torch or Qdrant Edge aborted it there ("terminate called
    without an active exception", exit 134)."""
    if threading.current_thread() is not threading.main_thread():
        return main()

    def again(signum, frame) -> None:
        os.write(2, b"interrupted again: quitting now (what was written is kept: run the same command to resume)\n")
        os._exit(EXIT_INTERRUPTED)

    def first(signum, frame) -> None:
        signal.signal(signal.SIGINT, again)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, first)
    try:
        code = main()
    except KeyboardInterrupt:
        logging.getLogger(name).error("interrupted")  # `name`: the command's logger
        code = EXIT_INTERRUPTED
    if code == EXIT_INTERRUPTED:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(EXIT_INTERRUPTED)
    return code
