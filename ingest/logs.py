"""Logging for the command lines: one format on stderr (stdout is for results),
and the chatty libraries held at WARNING unless debugging. How a command ends is
`ingest.edge`'s."""

from __future__ import annotations

import logging
import sys

NOISY = ("httpx", "httpcore", "urllib3", "datasets", "filelock", "sentence_transformers", "transformers")


def setup_logging(verbosity: int) -> None:
    """-1: warnings and errors only; 0: progress and results (INFO); 1 or more: DEBUG."""
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
