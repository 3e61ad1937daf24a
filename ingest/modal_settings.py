"""The settings the Modal app reads from environments rather than flags: the
deploying shell's (`DeploySettings.from_env`: how many GPUs, the schedule, the dataset
and its snapshots, what search serves), and a container's (`store_settings_from_env`:
Qdrant's address and key from the `qdrant` secret; `shard_settings`: a GPU worker's
whole settings). The same declared settings as the command lines read
(`ingest.settings`), read at the Modal app's edge and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping

from ingest.errors import SettingsError
from ingest.settings import ChunkingSettings, EmbedderSettings, IngestSettings, Settings, StoreSettings, setting


def store_settings_from_env(
    env: Mapping[str, str], *, collection: str = StoreSettings().collection, require_url: bool = True
) -> StoreSettings:
    """Qdrant's address and key from `env` (on Modal, the `qdrant` secret). A URL is
    required unless `require_url` is off or QDRANT_PATH names a local store
    explicitly: a container's disk vanishes with it."""
    if require_url and not env.get("QDRANT_URL") and not env.get("QDRANT_PATH"):
        raise SettingsError(
            "QDRANT_URL is not set: the workers write straight to a Qdrant server "
            "(on Modal, create the secret: modal secret create qdrant QDRANT_URL=... QDRANT_API_KEY=...)"
        )
    return replace(StoreSettings.from_env(env), collection=collection, state_dir=None)


@dataclass(frozen=True, slots=True)
class DeploySettings(Settings):
    """What `modal deploy -m ingest.modal_app` reads from the deploying shell."""

    gpus: int = setting(10, env="WIKI_EMBED_GPUS", minimum=1, help="A10G containers at once")
    reindex_cron: str = setting(
        "0 3 * * 0",
        env="WIKI_REINDEX_CRON",
        help="when the scheduled reindex runs (cron, UTC; default: Sundays, 03:00)",
    )
    # wikimedia/wikipedia publishes one English dump, 20231101.en; a dataset of newer dumps (the
    # same columns: id, url, title, text) is named here, with its configs.
    dataset: str = setting("wikimedia/wikipedia", env="WIKI_DATASET", help="the hub dataset the Modal app loads")
    snapshots: tuple[str, ...] = setting(
        ("20231101.en",), env="WIKI_SNAPSHOTS", help="the dataset's configs the schedule picks from, comma-separated"
    )
    search_collection: str = setting(
        "wikipedia", env="WIKI_SEARCH_COLLECTION", help="what the HTTP search endpoint serves"
    )
    search_min_containers: int = setting(
        1, env="WIKI_SEARCH_MIN_CONTAINERS", minimum=0, help="warm search containers (a CPU each)"
    )


def deploy_settings(env: Mapping[str, str]) -> DeploySettings:
    return DeploySettings.from_env(env)


def shard_settings(
    env: Mapping[str, str],
    *,
    tei_url: str,
    collection: str = StoreSettings().collection,
    model: str | None = None,
    chunking: Mapping[str, Any] | ChunkingSettings | None = None,
    window: int = 2048,
    tei_concurrency: int = 8,
    tei_wire: str = "base64",
    tei_tokenizer: str | None = None,
    progress: bool = False,
    drop_old: bool = False,
    sparse: str = IngestSettings().sparse,
) -> IngestSettings:
    """Settings for a GPU container's work (`ingest.sharded`): its own TEI at
    `tei_url` (base64 vectors from TEI 1.9: half the bytes), Qdrant's address and key
    from `env` (`store_settings_from_env`)."""
    if not isinstance(chunking, ChunkingSettings):
        chunking = ChunkingSettings(**dict(chunking or {}))
    return IngestSettings(
        source="save_to_disk dataset",
        window=window,
        progress=progress,
        drop_old=drop_old,
        sparse=sparse,
        chunking=chunking,
        embedder=EmbedderSettings(
            embedder="tei",
            tei_url=tei_url,
            model=model,
            tei_concurrency=tei_concurrency,
            tei_wire=tei_wire,
            tei_tokenizer=tei_tokenizer,
        ),
        store=store_settings_from_env(env, collection=collection),
    )
