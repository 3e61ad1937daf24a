"""One typed settings object, read from flags with environment-variable fallbacks.

Every flag can also be set through the environment variable named in its help.
The environment is read here, at the edge, and nowhere else: the command lines
build their parsers from it, and the Modal app passes its containers' environment
to `store_settings_from_env` and `deploy_settings`. Secrets (the Qdrant and TEI API
keys) come from the environment only, live in fields that `repr` hides, and are
never printed; `StoreSettings.location` is the store's address safe for messages.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import urlsplit, urlunsplit

from ingest.chunking import ChunkingSettings
from ingest.errors import SettingsError

EMBEDDERS = ("local", "tei", "modal")
SPARSE_KINDS = ("bm25", "none")


QUANTIZATIONS = ("int8", "none")


@dataclass(frozen=True, slots=True)
class ServerLayout:
    """How a collection is laid out on a Qdrant server or cluster (the embedded store
    ignores it). The default fits the whole corpus on modest nodes: ~41M points of 384
    float32 are ~63 GB, so the originals go to disk and an int8 copy (a quarter of
    that) stays in RAM, searched first and rescored with the originals."""

    quantization: str = "int8"  # "none": every float32 vector in RAM
    shards: int | None = None  # shard_number; None: the server's default (1). On a cluster: a few per node
    replicas: int | None = None  # replication_factor; None: the server's default (1)
    write_consistency: int | None = None  # write_consistency_factor; None: the server's default (1)

    def __post_init__(self) -> None:
        if self.quantization not in QUANTIZATIONS:
            raise SettingsError(f"--quantization {self.quantization!r} is not one of {', '.join(QUANTIZATIONS)}")
        for flag, value in (("--shards", self.shards), ("--replicas", self.replicas),
                            ("--write-consistency", self.write_consistency)):
            if value is not None and value < 1:
                raise SettingsError(f"{flag} must be at least 1, got {value}")
        if self.replicas is not None and self.write_consistency is not None and self.write_consistency > self.replicas:
            raise SettingsError(f"--write-consistency {self.write_consistency} cannot exceed --replicas "
                                f"{self.replicas}: a write could never be acknowledged")


@dataclass(frozen=True, slots=True)
class StoreSettings:
    qdrant_path: str = "qdrant_data"
    qdrant_url: str | None = None
    qdrant_api_key: str | None = field(default=None, repr=False)
    collection: str = "wikipedia"
    prefer_grpc: bool = True
    timeout: int = 120
    state_dir: str | None = None  # the manifests; None: next to a local store, ./ingest_state for a server
    layout: ServerLayout = field(default_factory=ServerLayout)
    grpc_port: int | None = None  # None: one above the URL's port (6334 for 6333, or when it names none)

    def __post_init__(self) -> None:
        if self.grpc_port is not None and not 0 < self.grpc_port < 65536:
            raise SettingsError(f"--qdrant-grpc-port {self.grpc_port} is not a TCP port")
        if self.qdrant_url:
            check_url("--qdrant-url", self.qdrant_url, "http://localhost:6333")

    @property
    def location(self) -> str:
        """Where the store is, safe to print: the folder, or the URL without credentials."""
        return redact_url(self.qdrant_url) if self.qdrant_url else self.qdrant_path

    @property
    def grpc_port_used(self) -> int | None:
        """The port gRPC is dialled on (None: REST, or no server)."""
        if not self.qdrant_url or not self.prefer_grpc:
            return None
        return self.grpc_port or grpc_port_for(self.qdrant_url)

    @property
    def address(self) -> str:
        """`location`, and the gRPC port when gRPC is used: for messages about a connection."""
        port = self.grpc_port_used
        return self.location + (f" (gRPC on port {port})" if port else "")


@dataclass(frozen=True, slots=True)
class EmbedderSettings:
    embedder: str = "local"
    model: str | None = None  # None: the default model, or the collection's recorded one
    device: str = "auto"
    dtype: str = "auto"  # local backend: float16 on a GPU, bfloat16 on a CPU that has it, else float32
    engine: str = "auto"  # local backend: "direct", "sentence-transformers", or auto (direct when it can)
    batch_size: int = 64
    query_instruction: str | None = None
    tei_url: str | None = None
    tei_concurrency: int = 8
    tei_wire: str = "json"
    tei_tokenizer: str | None = None
    tei_retry_budget: float = 600.0  # seconds a request to TEI may keep retrying (429/503, timeouts) before the run fails
    tei_api_key: str | None = field(default=None, repr=False)
    modal_app: str = "wiki-embed"
    modal_class: str = "Embedder"

    def __post_init__(self) -> None:
        if self.embedder not in EMBEDDERS:
            raise SettingsError(f"--embedder {self.embedder!r} is not one of {', '.join(EMBEDDERS)}")
        if self.embedder == "tei" and not self.tei_url:
            raise SettingsError("--embedder tei needs --tei-url (or TEI_URL), e.g. http://localhost:8080")
        if self.tei_url:
            check_url("--tei-url", self.tei_url, "http://localhost:8080")
        if self.batch_size < 1:
            raise SettingsError(f"--batch-size must be at least 1, got {self.batch_size}")


@dataclass(frozen=True, slots=True)
class IngestSettings:
    source: str | None = None  # None: the bundled sample, and a reindex checks the collection holds only it
    limit: int | None = None
    window: int = 512  # chunks handed to the embedder at once (sorted by length inside)
    dead_letter: str = "dead_letter.jsonl"
    progress: bool = True
    chunking: ChunkingSettings = field(default_factory=ChunkingSettings)
    embedder: EmbedderSettings = field(default_factory=EmbedderSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    sparse: str = "bm25"  # lexical vectors beside the dense ones, for hybrid search; "none": dense only
    drop_old: bool = False  # delete the collection a rebuild replaced
    max_delete_share: float = 0.5  # a reindex refuses to delete more of the indexed articles
    index_wait: float = 600.0  # seconds a rebuilt collection may take to index before the alias moves
    yes: bool = False  # a reindex deletes more than a small share of the articles without asking

    @property
    def source_name(self) -> str:
        return self.source or "sample"

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 0:
            raise SettingsError(f"--limit must be a positive number, got {self.limit}")
        if self.sparse not in SPARSE_KINDS:
            raise SettingsError(f"--sparse {self.sparse!r} is not one of {', '.join(SPARSE_KINDS)}")
        if self.index_wait < 0:
            raise SettingsError(f"--index-wait must be 0 or more seconds, got {self.index_wait}")
        if not 0 <= self.max_delete_share <= 1:
            raise SettingsError(f"--max-delete-share must be between 0 and 1, got {self.max_delete_share}")


def check_url(flag: str, url: str, example: str) -> None:
    """A server's URL, or a SettingsError naming the flag and what is wrong (no credentials shown)."""
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises on a port out of range or not a number
    except ValueError as exc:
        raise SettingsError(f"{flag} {redact_url(url)!r}: {exc}; e.g. {example}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"{flag} {redact_url(url)!r} is not an http(s) URL with a host, e.g. {example}")


def redact_url(url: str) -> str:
    """The URL without user info or query string, safe to put in a message."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]  # as written, a bad port too (`parts.port` raises on it)
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def grpc_port_for(url: str) -> int:
    """The gRPC port beside a REST URL: Qdrant serves gRPC one port above REST (6333 and
    6334 by default). qdrant-client dials 6334 whatever port the URL names
    (`qdrant_remote.py:55-72, 103-110, 366-368` in 1.20), so the port is always given."""
    port = urlsplit(url).port
    return port + 1 if port else 6334


def parse_flag(raw: str | None) -> bool:
    """An environment variable read as a switch: 1, true, yes or on (any case) mean on."""
    return (raw or "").strip().lower() in ("1", "true", "yes", "on")


# -- argparse glue -----------------------------------------------------------
def env_default(env: Mapping[str, str], name: str, default: Any, kind: type = str) -> Any:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        if kind is bool:
            return parse_flag(raw)
        return kind(raw)
    except ValueError as exc:
        raise SettingsError(f"environment variable {name}={raw!r} is not a valid {kind.__name__}") from exc


def add_store_args(parser: argparse.ArgumentParser, env: Mapping[str, str] = os.environ) -> None:
    group = parser.add_argument_group("store (Qdrant)")
    d = StoreSettings()
    group.add_argument("--qdrant-path", default=env_default(env, "QDRANT_PATH", d.qdrant_path),
                       help="folder of the embedded store, Qdrant's own engine in this process (Qdrant Edge) "
                            "(env QDRANT_PATH; default %(default)s)")
    group.add_argument("--qdrant-url", default=env_default(env, "QDRANT_URL", None),
                       help="Qdrant server URL; overrides --qdrant-path (env QDRANT_URL). "
                            "The API key is read from QDRANT_API_KEY")
    group.add_argument("--collection", default=env_default(env, "QDRANT_COLLECTION", d.collection),
                       help="collection name (env QDRANT_COLLECTION; default %(default)s)")
    group.add_argument("--no-grpc", action="store_true", default=env_default(env, "QDRANT_NO_GRPC", False, bool),
                       help="talk REST instead of gRPC to a server (env QDRANT_NO_GRPC)")
    group.add_argument("--qdrant-grpc-port", type=int, default=env_default(env, "QDRANT_GRPC_PORT", None, int),
                       help="the server's gRPC port (env QDRANT_GRPC_PORT; default: one above the URL's port, "
                            "6334 for 6333 or a URL without one)")
    group.add_argument("--quantization", choices=QUANTIZATIONS,
                       default=env_default(env, "QDRANT_QUANTIZATION", ServerLayout().quantization),
                       help="a new server collection keeps int8 vectors in RAM, the float32 originals on disk, and "
                            "rescores with them; none: float32 in RAM (env QDRANT_QUANTIZATION; default %(default)s)")
    group.add_argument("--shards", type=int, default=env_default(env, "QDRANT_SHARDS", None, int),
                       help="shards of a new server collection (env QDRANT_SHARDS; default: the server's, 1)")
    group.add_argument("--replicas", type=int, default=env_default(env, "QDRANT_REPLICAS", None, int),
                       help="copies of each shard on a cluster (env QDRANT_REPLICAS; default: the server's, 1)")
    group.add_argument("--write-consistency", type=int, default=env_default(env, "QDRANT_WRITE_CONSISTENCY", None, int),
                       help="replicas that must acknowledge a write (env QDRANT_WRITE_CONSISTENCY; default: 1)")


def add_state_args(parser: argparse.ArgumentParser, env: Mapping[str, str] = os.environ) -> None:
    parser.add_argument("--state-dir", default=env_default(env, "INGEST_STATE_DIR", None),
                        help="folder of the manifests, what is indexed (env INGEST_STATE_DIR; default: "
                             "next to --qdrant-path, e.g. qdrant_data-state, or ./ingest_state with --qdrant-url)")


def add_rebuild_args(parser: argparse.ArgumentParser, env: Mapping[str, str] = os.environ) -> None:
    d = IngestSettings()
    parser.add_argument("--drop-old", action="store_true", default=env_default(env, "INGEST_DROP_OLD", False, bool),
                        help="after a rebuild (other model or chunking), delete the collection it replaced "
                             "(env INGEST_DROP_OLD; default: keep it)")
    parser.add_argument("--max-delete-share", type=float,
                        default=env_default(env, "INGEST_MAX_DELETE_SHARE", d.max_delete_share, float),
                        help="a reindex deletes the articles the source lacks, unless they are more than this "
                             "share of the index (env INGEST_MAX_DELETE_SHARE; default %(default)s)")
    parser.add_argument("--yes", action="store_true", default=env_default(env, "INGEST_YES", False, bool),
                        help="delete without asking when a reindex removes more than a small share of the "
                             "articles (asked on a terminal, refused elsewhere without it; env INGEST_YES)")
    parser.add_argument("--index-wait", type=float, default=env_default(env, "INGEST_INDEX_WAIT", d.index_wait, float),
                        metavar="SECONDS",
                        help="a rebuilt collection on a server must finish indexing within this long before the "
                             "alias moves onto it; else the alias stays and a second run switches "
                             "(env INGEST_INDEX_WAIT; default %(default)s)")


def add_embedder_args(parser: argparse.ArgumentParser, env: Mapping[str, str] = os.environ, *,
                      retry_budget: float | None = None) -> None:
    """`retry_budget`: the default of --tei-retry-budget (a search answers a person, so
    it gives up in seconds where a run waits minutes)."""
    group = parser.add_argument_group("embedder")
    d = EmbedderSettings() if retry_budget is None else EmbedderSettings(tei_retry_budget=retry_budget)
    group.add_argument("--embedder", choices=EMBEDDERS, default=env_default(env, "EMBEDDER", d.embedder),
                       help="embedding backend (env EMBEDDER; default %(default)s)")
    group.add_argument("--model", default=env_default(env, "EMBED_MODEL", None),
                       help="model id or local folder for the local backend (env EMBED_MODEL; default: "
                            "the bundled all-MiniLM-L6-v2, or the model the collection was built with)")
    group.add_argument("--device", default=env_default(env, "EMBED_DEVICE", d.device),
                       help="cpu, cuda, mps or auto (env EMBED_DEVICE; default %(default)s)")
    group.add_argument("--dtype", choices=("auto", "float32", "float16", "bfloat16"),
                       default=env_default(env, "EMBED_DTYPE", d.dtype),
                       help="local model's precision: auto is float16 on a GPU, bfloat16 on a CPU that computes it "
                            "in hardware (about 3x float32), float32 elsewhere (env EMBED_DTYPE; default %(default)s)")
    group.add_argument("--engine", choices=("auto", "direct", "sentence-transformers"),
                       default=env_default(env, "EMBED_ENGINE", d.engine),
                       help="local backend's forward pass: direct (one tokenizer call and length sorting per "
                            "window, pooling on the device) or sentence-transformers' encode; auto picks direct "
                            "when the model allows (env EMBED_ENGINE; default %(default)s)")
    group.add_argument("--batch-size", type=int, default=env_default(env, "EMBED_BATCH_SIZE", d.batch_size, int),
                       help="texts per model forward pass (env EMBED_BATCH_SIZE; default %(default)s)")
    group.add_argument("--query-instruction", default=env_default(env, "QUERY_INSTRUCTION", None),
                       help="prefix for queries, for models not known to this tool (env QUERY_INSTRUCTION)")
    group.add_argument("--tei-url", default=env_default(env, "TEI_URL", None),
                       help="Text Embeddings Inference server for --embedder tei (env TEI_URL)")
    group.add_argument("--tei-concurrency", type=int,
                       default=env_default(env, "TEI_CONCURRENCY", d.tei_concurrency, int),
                       help="requests in flight to TEI at most; halved on each 429/503 and grown back as "
                            "answers succeed (env TEI_CONCURRENCY; default %(default)s)")
    group.add_argument("--tei-retry-budget", type=float,
                       default=env_default(env, "TEI_RETRY_BUDGET", d.tei_retry_budget, float),
                       help="seconds one request to TEI may keep retrying a busy or unreachable server before "
                            "the run fails (env TEI_RETRY_BUDGET; default %(default)s)")
    group.add_argument("--tei-tokenizer", default=env_default(env, "TEI_TOKENIZER", None),
                       help="the served model's tokenizer.json, so chunks are budgeted in tokens rather than "
                            "characters (env TEI_TOKENIZER)")
    group.add_argument("--tei-wire", choices=("json", "base64"), default=env_default(env, "TEI_WIRE", d.tei_wire),
                       help="json: POST /embed; base64: POST /v1/embeddings with base64 vectors, half the bytes "
                            "and twice the client speed, truncation as the server's --auto-truncate says "
                            "(env TEI_WIRE; default %(default)s). A TEI API key is read from TEI_API_KEY")
    group.add_argument("--modal-app", default=env_default(env, "MODAL_APP", d.modal_app),
                       help="deployed Modal app for --embedder modal (env MODAL_APP; default %(default)s)")
    group.add_argument("--modal-class", default=env_default(env, "MODAL_CLASS", d.modal_class),
                       help="its embedding class (env MODAL_CLASS; default %(default)s)")


def add_ingest_args(parser: argparse.ArgumentParser, env: Mapping[str, str] = os.environ) -> None:
    d = IngestSettings()
    c = ChunkingSettings()
    parser.add_argument("--source", default=env_default(env, "INGEST_SOURCE", d.source),
                        help="'sample' (the bundled Wikipedia sample), a hub dataset such as "
                             "wikimedia/wikipedia:20231101.en, or a parquet/JSON-lines file or a "
                             "save_to_disk folder (env INGEST_SOURCE; default: sample; a reindex of a collection "
                             "written from another source needs it)")
    parser.add_argument("--limit", type=int, default=env_default(env, "INGEST_LIMIT", None, int),
                        help="read at most N articles (env INGEST_LIMIT)")
    parser.add_argument("--chunk-size", type=int, default=env_default(env, "CHUNK_SIZE", c.max_chars, int),
                        help="most characters in a chunk (env CHUNK_SIZE; default %(default)s)")
    parser.add_argument("--chunk-overlap", type=int, default=env_default(env, "CHUNK_OVERLAP", c.overlap_chars, int),
                        help="characters of the previous chunk repeated at the start of the next, "
                             "whole sentences only (env CHUNK_OVERLAP; default %(default)s)")
    parser.add_argument("--no-title-prefix", action="store_true",
                        default=not env_default(env, "CHUNK_TITLE_PREFIX", True, bool),
                        help="embed chunks without the article title in front (env CHUNK_TITLE_PREFIX=0)")
    parser.add_argument("--sparse", choices=SPARSE_KINDS, default=env_default(env, "INGEST_SPARSE", d.sparse),
                        help="also give each chunk a BM25 sparse vector, for hybrid (lexical + semantic) search; "
                             "none: dense vectors only (env INGEST_SPARSE; default %(default)s)")
    parser.add_argument("--window", type=int, default=env_default(env, "INGEST_WINDOW", d.window, int),
                        help="chunks per embedder call, length-sorted inside (env INGEST_WINDOW; default %(default)s)")
    parser.add_argument("--dead-letter", default=env_default(env, "INGEST_DEAD_LETTER", d.dead_letter),
                        help="JSON-lines file for rejected articles and chunks (env INGEST_DEAD_LETTER; "
                             "default %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress line on stderr")


def store_settings(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> StoreSettings:
    return StoreSettings(
        qdrant_path=args.qdrant_path,
        qdrant_url=args.qdrant_url,
        qdrant_api_key=env.get("QDRANT_API_KEY") or None,
        collection=args.collection,
        prefer_grpc=not args.no_grpc,
        grpc_port=args.qdrant_grpc_port,
        state_dir=getattr(args, "state_dir", None),
        layout=ServerLayout(quantization=args.quantization, shards=args.shards, replicas=args.replicas,
                            write_consistency=args.write_consistency),
    )


def embedder_settings(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> EmbedderSettings:
    return EmbedderSettings(
        embedder=args.embedder,
        model=args.model,
        device=args.device,
        dtype=args.dtype,
        engine=args.engine,
        batch_size=args.batch_size,
        query_instruction=args.query_instruction,
        tei_url=args.tei_url,
        tei_concurrency=args.tei_concurrency,
        tei_wire=args.tei_wire,
        tei_tokenizer=args.tei_tokenizer,
        tei_retry_budget=args.tei_retry_budget,
        tei_api_key=env.get("TEI_API_KEY") or None,
        modal_app=args.modal_app,
        modal_class=args.modal_class,
    )


def ingest_settings(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> IngestSettings:
    return IngestSettings(
        source=args.source,
        limit=args.limit,
        window=args.window,
        dead_letter=args.dead_letter,
        progress=not args.no_progress,
        chunking=ChunkingSettings(
            max_chars=args.chunk_size,
            overlap_chars=args.chunk_overlap,
            title_prefix=not args.no_title_prefix,
        ),
        embedder=embedder_settings(args, env),
        store=store_settings(args, env),
        sparse=getattr(args, "sparse", IngestSettings().sparse),
        drop_old=getattr(args, "drop_old", False),
        max_delete_share=getattr(args, "max_delete_share", IngestSettings().max_delete_share),
        index_wait=getattr(args, "index_wait", IngestSettings().index_wait),
        yes=getattr(args, "yes", False),
    )
