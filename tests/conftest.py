"""Shared fixtures: the real bundled model (loaded once), the real sample, and
the embedded store. Nothing here mocks the embedder or the store.

Tests come in three tiers, as markers:
- `unit`: fakes at the boundary, no model, no store, no server; seconds in all
  (`python -m pytest -m unit`);
- `integration`: the real model, the real store, loopback servers, subprocesses;
- `slow`: whole end-to-end runs (marked where they are defined), minutes.
A test is `integration` when its module works on real parts or it uses one of the
fixtures below that load them; every other unmarked test is `unit`."""

from __future__ import annotations

import os

import pytest

from ingest.modal_settings import DeploySettings
from ingest.settings import IngestSettings, ServeSettings, declared

# Every variable a setting reads (ingest/settings/models.py), and the families the tools read besides.
DECLARED_ENV = {
    item.option.env
    for cls in (IngestSettings, ServeSettings, DeploySettings)
    for item in declared(cls)
    if item.option.env
}
_ENV_PREFIXES = (
    "QDRANT_",
    "EMBED",
    "TEI_",
    "INGEST_",
    "CHUNK_",
    "MODAL_",
    "QUERY_INSTRUCTION",
    "WIKI_EMBED_",
    "EMBEDDER",
)


INTEGRATION_MODULES = {
    "test_integrations",
    "test_bench_faults",
    "test_bench_quantization",
    "test_bench_store",
    "test_bench_bookkeeping",
    "test_bench_graph",
    "test_edge_index",
    "test_errors",
    "test_transfer",
    "test_cli",
    "test_evaluation",
    "test_preflight",
    "test_golden_vectors",
    "test_ingest_and_search",
    "test_mcp_server",
    "test_modal_app",
    "test_rebuild",
    "test_reindex",
    "test_resume",
    "test_runs",
    "test_search_api",
    "test_search_page",
    "test_server",
    "test_store",
    "test_store_edge",
    "test_store_server",
    "test_tei_contract",
    "test_tei_embedder",
    "test_tei_ingest",
    "test_worker",
    "test_qdrant_grpc",
    "test_containers",
    "test_qdrant_standin",
    "test_rehearsal",
    "test_store_faults",
    "test_disk_faults",
    "test_interrupts",
    "test_advice",
    "test_serving_faults",
    "test_doctests",
    "test_bench_cpu",
    "test_bench_scale",
}
INTEGRATION_FIXTURES = {"local_embedder", "memory_store"}


def pytest_collection_modifyitems(items):
    for item in items:
        if item.get_closest_marker("slow"):
            continue
        integration = item.module.__name__.rpartition(".")[2] in INTEGRATION_MODULES or (
            INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ()))
        )
        item.add_marker(pytest.mark.integration if integration else pytest.mark.unit)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """Tests never see the developer's Qdrant, TEI or Modal settings."""
    for name in list(os.environ):
        if name.startswith(_ENV_PREFIXES) or name in DECLARED_ENV:
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def local_embedder():
    from ingest.embedders.local import LocalEmbedder

    return LocalEmbedder(device="cpu", dtype="float32")  # the golden vectors' precision


@pytest.fixture(scope="session")
def sample():
    from ingest.sources import sample_rows

    return sample_rows()


@pytest.fixture()
def memory_store():
    from ingest.store.edge import EdgeStore

    store = EdgeStore.open(":memory:", collection="test")  # a throw-away folder of the real engine
    yield store
    store.close()
