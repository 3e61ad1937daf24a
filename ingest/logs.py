"""Logging for the command lines: one format on stderr (stdout is for results),
and the chatty libraries held at WARNING unless debugging."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import Callable

from ingest.errors import explain

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a command stopped by Ctrl-C
NOISY = ("httpx", "httpcore", "urllib3", "datasets", "filelock", "sentence_transformers", "transformers")


def setup_logging(verbosity: int) -> None:
    """-1: warnings and errors only; 0: progress and results (INFO); 1 or more: DEBUG."""
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def report_failure(logger: logging.Logger, exc: BaseException, verbosity: int, *, qdrant: str | None = None) -> None:
    """The one line a failed command ends with (`ingest.errors.explain`; `qdrant`:
    the server's address without credentials, when one was given); the traceback
    only with -v."""
    logger.error("%s", explain(exc, qdrant=qdrant), exc_info=exc if verbosity > 0 else None)


def quiet_on_closed_pipe(main: Callable[[], int]) -> int:
    """Run a command's `main`; when the reader of its stdout goes away (`| head`),
    end quietly with 141 (128 + SIGPIPE), as Unix tools do, not with a traceback."""
    try:
        code = main()
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's own flush at exit must not fail again
        return 141


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
