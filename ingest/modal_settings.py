"""The settings the Modal app reads from environments rather than flags: the
deploying shell's (`deploy_settings`: how many GPUs, the schedule, the dataset and
its snapshots, what search serves), and a container's (`store_settings_from_env`:
Qdrant's address and key from the `qdrant` secret; `shard_settings`: a GPU worker's
whole settings). The same settings objects as the command lines build
(`ingest.settings`), read at the Modal app's edge and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ingest.chunking import ChunkingSettings
from ingest.errors import SettingsError
from ingest.settings import (
    EmbedderSettings,
    IngestSettings,
    ServerLayout,
    StoreSettings,
    env_default,
    parse_flag,
)


def store_settings_from_env(env: Mapping[str, str], *, collection: str = StoreSettings().collection,
                            require_url: bool = True) -> StoreSettings:
    """Qdrant's address and key from `env` (on Modal, the `qdrant` secret). A URL is
    required unless `require_url` is off or QDRANT_PATH names a local store
    explicitly: a container's disk vanishes with it."""
    url, path = env.get("QDRANT_URL") or None, env.get("QDRANT_PATH") or None
    if require_url and url is None and path is None:
        raise SettingsError(
            "QDRANT_URL is not set: the workers write straight to a Qdrant server "
            "(on Modal, create the secret: modal secret create qdrant QDRANT_URL=... QDRANT_API_KEY=...)"
        )
    return StoreSettings(
        qdrant_path=path or StoreSettings().qdrant_path,
        qdrant_url=url,
        qdrant_api_key=env.get("QDRANT_API_KEY") or None,
        collection=collection,
        prefer_grpc=not parse_flag(env.get("QDRANT_NO_GRPC")),
        grpc_port=env_default(env, "QDRANT_GRPC_PORT", None, int),
        layout=ServerLayout(
            quantization=env_default(env, "QDRANT_QUANTIZATION", ServerLayout().quantization),
            shards=env_default(env, "QDRANT_SHARDS", None, int),
            replicas=env_default(env, "QDRANT_REPLICAS", None, int),
            write_consistency=env_default(env, "QDRANT_WRITE_CONSISTENCY", None, int),
        ),
    )


@dataclass(frozen=True, slots=True)
class DeploySettings:
    """What `modal deploy -m ingest.modal_app` reads from the deploying shell."""

    gpus: int = 10  # WIKI_EMBED_GPUS: A10G containers at once
    reindex_cron: str = "0 3 * * 0"  # WIKI_REINDEX_CRON: Sundays, 03:00 UTC
    # WIKI_DATASET and WIKI_SNAPSHOTS: the hub dataset and the configs the schedule picks from.
    # wikimedia/wikipedia publishes one English dump, 20231101.en; a dataset of newer dumps (the
    # same columns: id, url, title, text) is named here, with its configs.
    dataset: str = "wikimedia/wikipedia"
    snapshots: tuple[str, ...] = ("20231101.en",)
    search_collection: str = "wikipedia"  # WIKI_SEARCH_COLLECTION: what the HTTP search serves
    search_min_containers: int = 1  # WIKI_SEARCH_MIN_CONTAINERS: warm search containers (a CPU each)


def _whole_number(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = (env.get(name) or "").strip()
    if raw and (not raw.isdigit() or int(raw) < minimum):
        raise SettingsError(f"{name}={raw!r} must be a whole number of at least {minimum}")
    return int(raw) if raw else default


def deploy_settings(env: Mapping[str, str]) -> DeploySettings:
    d = DeploySettings()
    snapshots = tuple(c.strip() for c in (env.get("WIKI_SNAPSHOTS") or "").split(",") if c.strip())
    return DeploySettings(
        gpus=_whole_number(env, "WIKI_EMBED_GPUS", d.gpus, 1),
        reindex_cron=env.get("WIKI_REINDEX_CRON") or d.reindex_cron,
        dataset=env.get("WIKI_DATASET") or d.dataset,
        snapshots=snapshots or d.snapshots,
        search_collection=env.get("WIKI_SEARCH_COLLECTION") or d.search_collection,
        search_min_containers=_whole_number(env, "WIKI_SEARCH_MIN_CONTAINERS", d.search_min_containers, 0),
    )


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
        embedder=EmbedderSettings(embedder="tei", tei_url=tei_url, model=model, tei_concurrency=tei_concurrency,
                                  tei_wire=tei_wire, tei_tokenizer=tei_tokenizer),
        store=store_settings_from_env(env, collection=collection),
    )
