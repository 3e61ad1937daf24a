"""The freshness tests' embedder: `ingest.embedders.fake.FakeEmbedder` (deterministic
vectors, every passage it embeds recorded, hooks to fail or act at a chosen call),
under the name these tests have always used."""

from __future__ import annotations

from ingest.embedders.fake import SPEC, FakeEmbedder

CountingEmbedder = FakeEmbedder

__all__ = ["SPEC", "CountingEmbedder"]
