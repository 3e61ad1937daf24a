"""The settings: typed objects built at the edge (a command line, the Modal app, an
integration) and passed down; library code does not read the environment.

Each setting is declared once, in `ingest.settings.models`; the command lines add its
flag with `add_flags` (or the groups' helpers below) and read it back with `from_args`;
everything else calls `...Settings.from_env()`. Every flag falls back to the
environment variable its help names; docs/configuration.md lists them all.
"""

from __future__ import annotations

import argparse
import os
from typing import Mapping

from ingest.errors import SettingsError
from ingest.settings.declare import Settings, add_flags, declared, env_name, from_args, setting
from ingest.settings.models import (
    EMBEDDER,
    INGEST,
    REBUILD,
    STATE,
    STORE,
    ChunkingSettings,
    EmbedderSettings,
    IngestSettings,
    ServerLayout,
    StoreSettings,
)
from ingest.settings.serve import SERVE, ServeSettings
from ingest.settings.urls import check_url, grpc_port_for, redact_url

__all__ = [
    "EMBEDDER",
    "INGEST",
    "REBUILD",
    "SERVE",
    "STATE",
    "STORE",
    "ServeSettings",
    "ChunkingSettings",
    "EmbedderSettings",
    "IngestSettings",
    "ServerLayout",
    "Settings",
    "SettingsError",
    "StoreSettings",
    "add_embedder_args",
    "add_flags",
    "add_ingest_args",
    "add_rebuild_args",
    "add_state_args",
    "add_store_args",
    "check_url",
    "declared",
    "env_name",
    "embedder_settings",
    "from_args",
    "grpc_port_for",
    "ingest_settings",
    "redact_url",
    "setting",
    "store_settings",
]


def add_store_args(parser: argparse.ArgumentParser, env: Mapping[str, str] = os.environ) -> None:
    add_flags(parser.add_argument_group("store (Qdrant)"), StoreSettings, (STORE,), env)


def add_state_args(parser: argparse.ArgumentParser, env: Mapping[str, str] = os.environ) -> None:
    add_flags(parser, StoreSettings, (STATE,), env)


def add_rebuild_args(parser: argparse.ArgumentParser, env: Mapping[str, str] = os.environ) -> None:
    add_flags(parser, IngestSettings, (REBUILD,), env)


def add_embedder_args(
    parser: argparse.ArgumentParser, env: Mapping[str, str] = os.environ, *, retry_budget: float | None = None
) -> None:
    """`retry_budget`: the default of --tei-retry-budget (a search answers a person, so
    it gives up in seconds where a run waits minutes)."""
    defaults = {} if retry_budget is None else {"tei_retry_budget": retry_budget}
    add_flags(parser.add_argument_group("embedder"), EmbedderSettings, (EMBEDDER,), env, defaults=defaults)


def add_ingest_args(parser: argparse.ArgumentParser, env: Mapping[str, str] = os.environ) -> None:
    add_flags(parser, IngestSettings, (INGEST,), env)


def store_settings(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> StoreSettings:
    return from_args(StoreSettings, args, env)


def embedder_settings(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> EmbedderSettings:
    return from_args(EmbedderSettings, args, env)


def ingest_settings(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> IngestSettings:
    return from_args(IngestSettings, args, env)
