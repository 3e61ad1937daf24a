"""Turn a text corpus into a searchable Qdrant index, and keep it fresh.

The public API, imported on first use (so that `import ingest.settings` in a Modal
image or a command's start-up loads none of the pipeline):

    >>> from ingest import index, open_store, make_embedder, StoreSettings, EmbedderSettings
    >>> store = open_store(StoreSettings(qdrant_path="qdrant"))          # doctest: +SKIP
    >>> summary = index("sample", store=store, embedder=make_embedder(EmbedderSettings()))  # doctest: +SKIP

`ingest.api.index` runs a source into a store with an embedder; `MemoryStore` and
`FakeEmbedder` are public test backends (milliseconds, no model, no engine). The command
line is `python -m ingest` (docs/manual.md); docs/python-api.md describes this API.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "index": "ingest.api",
    "RunSummary": "ingest.pipeline.summary",
    "IngestSettings": "ingest.settings",
    "StoreSettings": "ingest.settings",
    "EmbedderSettings": "ingest.settings",
    "ChunkingSettings": "ingest.settings",
    "Store": "ingest.store",
    "PointWriter": "ingest.store",
    "PointReader": "ingest.store",
    "Catalogue": "ingest.store",
    "open_store": "ingest.store",
    "MemoryStore": "ingest.store.memory",
    "Embedder": "ingest.embedders",
    "make_embedder": "ingest.embedders",
    "FakeEmbedder": "ingest.embedders.fake",
    "Source": "ingest.sources",
    "open_source": "ingest.sources",
    "IngestError": "ingest.errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ingest' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
