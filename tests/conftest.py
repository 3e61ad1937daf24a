"""Shared fixtures: the real bundled model (loaded once), the real sample, and
qdrant-client local mode. Nothing here mocks the embedder or the store."""

from __future__ import annotations

import os

import pytest

_ENV_PREFIXES = ("QDRANT_", "EMBED", "TEI_", "INGEST_", "CHUNK_", "MODAL_", "QUERY_INSTRUCTION", "WIKI_EMBED_", "EMBEDDER")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """Tests never see the developer's Qdrant, TEI or Modal settings."""
    for name in list(os.environ):
        if name.startswith(_ENV_PREFIXES):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def local_embedder():
    from ingest.embedders.local import LocalEmbedder

    return LocalEmbedder(device="cpu")


@pytest.fixture(scope="session")
def sample():
    from ingest.sources import sample_rows

    return sample_rows()


@pytest.fixture()
def memory_store():
    from ingest.store.local import LocalStore

    store = LocalStore.open(":memory:", collection="test")
    yield store
    store.close()
