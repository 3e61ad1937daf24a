"""What every search command shares: the embedder and store flags, and the start-up
of a command that opens a searcher (parse, log, one-line usage errors, exit codes)."""

from __future__ import annotations

import argparse
import logging
import os
from typing import Callable, Mapping, Sequence

from ingest.edge import command
from ingest.settings import (
    EmbedderSettings,
    StoreSettings,
    add_embedder_args,
    add_store_args,
    embedder_settings,
    store_settings,
)
from search.api import Searcher

log = logging.getLogger("search")

OpenSearcher = Callable[[], Searcher]


SEARCH_RETRY_BUDGET = 10.0


def add_searcher_args(parser: argparse.ArgumentParser, env: Mapping[str, str] = os.environ) -> None:
    """The embedder and store flags (with their environment fallbacks) and -v. A
    query's request to TEI is retried for SEARCH_RETRY_BUDGET seconds at most, not
    the run's minutes: the caller gets a 503 while it can still do something else."""
    add_embedder_args(parser, env, retry_budget=SEARCH_RETRY_BUDGET)
    add_store_args(parser, env)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")


def settings_from_env(env: Mapping[str, str] = os.environ) -> tuple[StoreSettings, EmbedderSettings]:
    """The store and embedder `python -m search` would use with no flags: its
    defaults and the environment variables its flags fall back to (QDRANT_PATH,
    QDRANT_URL, QDRANT_COLLECTION, EMBEDDER, TEI_URL, ...). For code that opens a
    searcher the way the command line does, such as the framework integrations."""
    return StoreSettings.from_env(env), EmbedderSettings.from_env(env, tei_retry_budget=SEARCH_RETRY_BUDGET)


def open_searcher_from_env(env: Mapping[str, str] = os.environ) -> Searcher:
    """`Searcher.open` with the settings `python -m search` would use (`settings_from_env`)."""
    return Searcher.open(*settings_from_env(env))


def searcher_command(
    prog: str,
    build_parser: Callable[[], argparse.ArgumentParser],
    run: Callable[[argparse.Namespace, OpenSearcher], int],
    *,
    check: Callable[[argparse.Namespace], None] | None = None,
) -> Callable[[Sequence[str] | None], int]:
    """A `main(argv) -> exit code` for a command that works on a searcher.

    `check(args)` raises `SettingsError` for a bad combination of flags (exit 2,
    one line on stderr); `run(args, open_searcher)` does the work and returns the
    exit code, opening the searcher when it is ready for it; `ingest.edge.command`
    does the rest (logging, the exit codes, one line per failure)."""

    def checked(args: argparse.Namespace) -> None:
        if check is not None:
            check(args)
        store_settings(args), embedder_settings(args)  # a bad flag or variable is a usage error

    def qdrant(args: argparse.Namespace) -> str | None:
        stores = store_settings(args)
        return stores.address if stores.qdrant_url else None

    def opened(args: argparse.Namespace) -> int:
        return run(args, lambda: Searcher.open(store_settings(args), embedder_settings(args)))

    return command(prog, build_parser, opened, check=checked, qdrant=qdrant, logger="search")
