"""The settings objects, each setting declared once (`ingest.settings.declare.setting`):
its default, flag, environment variable and help. The command lines derive their flags
from these declarations, `from_env` reads the same variables for library code and the
Modal app, and docs/configuration.md is generated from them
(`python -m ingest.settings.reference --write`).

Secrets (the Qdrant and TEI API keys) come from the environment only, live in fields
that `repr` hides, and are never printed; `StoreSettings.location` is the store's
address safe for messages.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from ingest.errors import SettingsError
from ingest.settings.declare import Settings, setting
from ingest.settings.urls import check_url, grpc_port_for, redact_url

Embedder = Literal["local", "tei", "modal"]
Sparse = Literal["bm25", "none"]
Definitions = Literal["copula-v1", "none"]  # ingest.definitions.CUT, or none
Quantization = Literal["int8", "none"]
Precision = Literal["auto", "float32", "float16", "bfloat16"]
Engine = Literal["auto", "direct", "sentence-transformers"]
Wire = Literal["json", "base64"]

# The flag groups: a command adds the groups it takes (`ingest.settings.add_flags`).
STORE, STATE, REBUILD, EMBEDDER, INGEST = "store", "state", "rebuild", "embedder", "ingest"


@dataclass(frozen=True, slots=True)
class ChunkingSettings(Settings):
    """How articles are cut into passages; part of what a collection is built with."""

    max_chars: int = setting(
        1000, flag="--chunk-size", env="CHUNK_SIZE", group=INGEST, help="most characters in a chunk"
    )
    overlap_chars: int = setting(
        0,
        flag="--chunk-overlap",
        env="CHUNK_OVERLAP",
        group=INGEST,
        help="characters of the previous chunk repeated at the start of the next, whole sentences only",
    )
    title_prefix: bool = setting(
        True,
        flag="--no-title-prefix",
        switch=False,
        env="CHUNK_TITLE_PREFIX",
        group=INGEST,
        help="embed chunks without the article title in front",
    )

    def __post_init__(self) -> None:
        if self.max_chars < 32:
            raise SettingsError(f"chunk size {self.max_chars} is too small: use at least 32 characters")
        if not 0 <= self.overlap_chars <= self.max_chars // 2:
            raise SettingsError(
                f"chunk overlap {self.overlap_chars} must be between 0 and half the chunk size ({self.max_chars // 2})"
            )

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ServerLayout(Settings):
    """How a collection is laid out on a Qdrant server or cluster (the embedded store
    ignores it). The default fits the whole corpus on modest nodes: the originals go to
    disk and an int8 copy (a quarter of their size) stays in RAM, searched first and
    rescored with the originals (sizes in docs/operations.md)."""

    quantization: Quantization = setting(
        "int8",
        flag="--quantization",
        env="QDRANT_QUANTIZATION",
        group=STORE,
        help="a new server collection keeps int8 vectors in RAM, the float32 originals on disk, and rescores "
        "with them; none: float32 in RAM",
    )
    shards: int | None = setting(
        None,
        flag="--shards",
        env="QDRANT_SHARDS",
        group=STORE,
        minimum=1,
        shown_default="the server's, 1",
        help="shards of a new server collection",
    )
    replicas: int | None = setting(
        None,
        flag="--replicas",
        env="QDRANT_REPLICAS",
        group=STORE,
        minimum=1,
        shown_default="the server's, 1",
        help="copies of each shard on a cluster",
    )
    write_consistency: int | None = setting(
        None,
        flag="--write-consistency",
        env="QDRANT_WRITE_CONSISTENCY",
        group=STORE,
        minimum=1,
        shown_default="1",
        help="replicas that must acknowledge a write",
    )

    def __post_init__(self) -> None:
        Settings.__post_init__(self)
        if self.replicas is not None and self.write_consistency is not None and self.write_consistency > self.replicas:
            raise SettingsError(
                f"--write-consistency {self.write_consistency} cannot exceed --replicas "
                f"{self.replicas}: a write could never be acknowledged"
            )


@dataclass(frozen=True, slots=True)
class StoreSettings(Settings):
    """Which Qdrant, which collection, and where the manifests are."""

    qdrant_path: str = setting(
        "qdrant_data",
        flag="--qdrant-path",
        env="QDRANT_PATH",
        group=STORE,
        help="folder of the embedded store, Qdrant's own engine in this process (Qdrant Edge)",
    )
    qdrant_url: str | None = setting(
        None, flag="--qdrant-url", env="QDRANT_URL", group=STORE, help="Qdrant server URL; overrides --qdrant-path"
    )
    qdrant_api_key: str | None = setting(
        None, env="QDRANT_API_KEY", secret=True, help="the Qdrant server's API key (environment only)"
    )
    collection: str = setting(
        "wikipedia",
        flag="--collection",
        env="QDRANT_COLLECTION",
        group=STORE,
        help="collection name (an alias over the collection a build made)",
    )
    prefer_grpc: bool = setting(
        True,
        flag="--no-grpc",
        switch=False,
        env="QDRANT_NO_GRPC",
        env_inverted=True,
        group=STORE,
        help="talk REST instead of gRPC to a server",
    )
    timeout: int = setting(120, help="seconds a request to a Qdrant server may take")
    state_dir: str | None = setting(
        None,
        flag="--state-dir",
        env="INGEST_STATE_DIR",
        group=STATE,
        shown_default="next to --qdrant-path, e.g. qdrant_data-state, or ./ingest_state with --qdrant-url",
        help="folder of the manifests, what is indexed",
    )
    layout: ServerLayout = field(default_factory=ServerLayout)
    grpc_port: int | None = setting(
        None,
        flag="--qdrant-grpc-port",
        env="QDRANT_GRPC_PORT",
        group=STORE,
        shown_default="one above the URL's port, 6334 for 6333 or a URL without one",
        help="the server's gRPC port",
    )

    def __post_init__(self) -> None:
        if self.grpc_port is not None and not 0 < self.grpc_port < 65536:
            raise SettingsError(f"--qdrant-grpc-port {self.grpc_port} is not a TCP port")
        Settings.__post_init__(self)
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
class EmbedderSettings(Settings):
    """Which embedder turns text into vectors, and how it is driven."""

    embedder: Embedder = setting("local", flag="--embedder", env="EMBEDDER", group=EMBEDDER, help="embedding backend")
    model: str | None = setting(
        None,
        flag="--model",
        env="EMBED_MODEL",
        group=EMBEDDER,
        shown_default="the bundled all-MiniLM-L6-v2, or the model the collection was built with",
        help="model id or local folder for the local backend",
    )
    device: str = setting("auto", flag="--device", env="EMBED_DEVICE", group=EMBEDDER, help="cpu, cuda, mps or auto")
    dtype: Precision = setting(
        "auto",
        flag="--dtype",
        env="EMBED_DTYPE",
        group=EMBEDDER,
        help="local model's precision: auto is float16 on a GPU, bfloat16 on a CPU that "
        "computes it in hardware, float32 elsewhere",
    )
    engine: Engine = setting(
        "auto",
        flag="--engine",
        env="EMBED_ENGINE",
        group=EMBEDDER,
        help="local backend's forward pass: direct (one tokenizer call and length sorting per "
        "window, pooling on the device) or sentence-transformers' encode; auto picks "
        "direct when the model allows",
    )
    batch_size: int = setting(
        64, flag="--batch-size", env="EMBED_BATCH_SIZE", group=EMBEDDER, minimum=1, help="texts per model forward pass"
    )
    query_instruction: str | None = setting(
        None,
        flag="--query-instruction",
        env="QUERY_INSTRUCTION",
        group=EMBEDDER,
        help="prefix for queries, for models not known to this tool",
    )
    tei_url: str | None = setting(
        None,
        flag="--tei-url",
        env="TEI_URL",
        group=EMBEDDER,
        help="Text Embeddings Inference server for --embedder tei",
    )
    tei_concurrency: int = setting(
        8,
        flag="--tei-concurrency",
        env="TEI_CONCURRENCY",
        group=EMBEDDER,
        minimum=1,
        help="requests in flight to TEI at most; halved on each 429/503 and grown back as answers succeed",
    )
    tei_wire: Wire = setting(
        "json",
        flag="--tei-wire",
        env="TEI_WIRE",
        group=EMBEDDER,
        help="json: POST /embed; base64: POST /v1/embeddings with base64 vectors, half the "
        "bytes and twice the client speed, truncation as the server's --auto-truncate says",
    )
    tei_tokenizer: str | None = setting(
        None,
        flag="--tei-tokenizer",
        env="TEI_TOKENIZER",
        group=EMBEDDER,
        help="the served model's tokenizer.json, so chunks are budgeted in tokens rather than characters",
    )
    tei_retry_budget: float = setting(
        600.0,
        flag="--tei-retry-budget",
        env="TEI_RETRY_BUDGET",
        group=EMBEDDER,
        minimum=0,
        help="seconds one request to TEI may keep retrying a busy or "
        "unreachable server before the run fails (a search: 10)",
    )
    tei_timeout: float = setting(
        60.0,
        flag="--tei-timeout",
        env="TEI_TIMEOUT",
        group=EMBEDDER,
        minimum=1,
        help="seconds one request to TEI may take before it is retried (a long batch on a busy GPU takes longer)",
    )
    tei_api_key: str | None = setting(
        None, env="TEI_API_KEY", secret=True, help="the TEI server's API key (environment only)"
    )
    modal_app: str = setting(
        "wiki-embed",
        flag="--modal-app",
        env="MODAL_APP",
        group=EMBEDDER,
        help="deployed Modal app for --embedder modal",
    )
    modal_class: str = setting(
        "GPUWorker", flag="--modal-class", env="MODAL_CLASS", group=EMBEDDER, help="its embedding class"
    )

    def __post_init__(self) -> None:
        Settings.__post_init__(self)
        if self.embedder == "tei" and not self.tei_url:
            raise SettingsError("--embedder tei needs --tei-url (or TEI_URL), e.g. http://localhost:8080")
        if self.tei_url:
            check_url("--tei-url", self.tei_url, "http://localhost:8080")


@dataclass(frozen=True, slots=True)
class IngestSettings(Settings):
    """A whole run: what to read, how to cut and embed it, where to write it."""

    source: str | None = setting(
        None,
        flag="--source",
        env="INGEST_SOURCE",
        group=INGEST,
        shown_default="sample; a reindex of a collection written from another source needs it",
        help="'sample' (the bundled Wikipedia sample), a hub dataset such as wikimedia/wikipedia:20231101.en, "
        "or a parquet/JSON-lines file or a save_to_disk folder",
    )
    limit: int | None = setting(None, flag="--limit", env="INGEST_LIMIT", group=INGEST, help="read at most N articles")
    window: int = setting(
        512,
        flag="--window",
        env="INGEST_WINDOW",
        group=INGEST,
        minimum=1,
        help="chunks per embedder call, length-sorted inside",
    )
    dead_letter: str = setting(
        "dead_letter.jsonl",
        flag="--dead-letter",
        env="INGEST_DEAD_LETTER",
        group=INGEST,
        help="JSON-lines file for rejected articles, chunks and definitions",
    )
    progress: bool = setting(True, flag="--no-progress", switch=False, group=INGEST, help="no progress line on stderr")
    chunking: ChunkingSettings = field(default_factory=ChunkingSettings)
    embedder: EmbedderSettings = field(default_factory=EmbedderSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    sparse: Sparse = setting(
        "bm25",
        flag="--sparse",
        env="INGEST_SPARSE",
        group=INGEST,
        help="also give each chunk a BM25 sparse vector, for hybrid (lexical + semantic) "
        "search; none: dense vectors only",
    )
    definitions: Definitions = setting(
        "copula-v1",
        flag="--definitions",
        env="INGEST_DEFINITIONS",
        group=INGEST,
        help="also embed each article's definition (its first sentence from the word after 'is'/'was') as a "
        "second dense vector on its first chunk, a third ranking in hybrid search (needs --sparse bm25); "
        "none: chunks' vectors only",
    )
    drop_old: bool = setting(
        False,
        flag="--drop-old",
        switch=True,
        env="INGEST_DROP_OLD",
        group=REBUILD,
        help="after a rebuild (other model or chunking), delete the collection it replaced",
    )
    max_delete_share: float = setting(
        0.5,
        flag="--max-delete-share",
        env="INGEST_MAX_DELETE_SHARE",
        group=REBUILD,
        minimum=0,
        maximum=1,
        help="a reindex deletes the articles the source lacks, unless they are more than this share of the index",
    )
    index_wait: float = setting(
        600.0,
        flag="--index-wait",
        env="INGEST_INDEX_WAIT",
        group=REBUILD,
        minimum=0,
        metavar="SECONDS",
        help="a rebuilt collection on a server must finish indexing within this long before "
        "the alias moves onto it; else the alias stays and a second run switches",
    )
    yes: bool = setting(
        False,
        flag="--yes",
        switch=True,
        env="INGEST_YES",
        group=REBUILD,
        help="delete without asking when a reindex removes more than a small share of the "
        "articles (asked on a terminal, refused elsewhere without it)",
    )

    @property
    def source_name(self) -> str:
        return self.source or "sample"

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 0:
            raise SettingsError(f"--limit must be a positive number, got {self.limit}")
        Settings.__post_init__(self)
