"""Embedding backends behind one interface (`Embedder`): `local` (in-process
sentence-transformers), `tei` (a Text Embeddings Inference server) and `modal`
(the deployed Modal class). Backends are imported only when chosen."""

from __future__ import annotations

from ingest.embedders.base import (
    Embedder,
    EmbedderError,
    PassageEmbeddings,
    Rejection,
    with_query_instruction,
)
from ingest.settings import EmbedderSettings

__all__ = [
    "Embedder",
    "EmbedderError",
    "PassageEmbeddings",
    "Rejection",
    "make_embedder",
    "with_query_instruction",
]


def make_embedder(
    settings: EmbedderSettings, *, model: str | None = None, query_instruction: str | None = None
) -> Embedder:
    """The backend `settings` names. `model`/`query_instruction` override the
    settings (search passes the collection's recorded model here)."""
    model = model or settings.model
    instruction = query_instruction if query_instruction is not None else settings.query_instruction
    # Each backend is imported only when chosen: the local one needs torch, the Modal one modal.
    if settings.embedder == "local":
        from ingest.embedders.local import DEFAULT_MODEL, LocalEmbedder

        return LocalEmbedder(
            model or DEFAULT_MODEL,
            device=settings.device,
            dtype=settings.dtype,
            engine=settings.engine,
            batch_size=settings.batch_size,
            query_instruction=instruction,
        )
    if settings.embedder == "tei":
        from ingest.embedders.tei import TEIEmbedder

        return TEIEmbedder(
            settings.tei_url,
            max_concurrency=settings.tei_concurrency,
            query_instruction=instruction,
            model_name=model,
            api_key=settings.tei_api_key,
            wire=settings.tei_wire,
            tokenizer=settings.tei_tokenizer,
            retry_budget=settings.tei_retry_budget,
            timeout=settings.tei_timeout,
        )
    if settings.embedder == "modal":
        from ingest.embedders.modal import ModalEmbedder

        return ModalEmbedder(
            app_name=settings.modal_app,
            class_name=settings.modal_class,
            query_instruction=instruction,
            model_name=model,
        )
    raise EmbedderError(f"unknown embedder {settings.embedder!r}")
