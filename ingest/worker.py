"""What one GPU container does, in plain Python: the Modal class in
`ingest.modal_app` only wraps it, so everything here runs (and is tested)
without Modal.

- `RouterConfig` and `router_command`: the `text-embeddings-router` (TEI) command
  line, every flag explicit;
- `Router`: runs that command, waits until `GET /health` answers 200, fails fast
  with the tail of the server's output when it dies or never gets healthy;
- `ingest_shard`: one slice of a `save_to_disk` dataset through the ordinary
  pipeline, embedding on the local router and writing straight to Qdrant (what
  the driver records of it, and the load around it: `ingest.runs`);
- `plan_shards`, `run_shards`, `run_report`: how the driver splits the corpus,
  retries what failed and reports time, throughput and cost.

    >>> config = RouterConfig("BAAI/bge-small-en-v1.5", port=8000)
    >>> with Router.from_config(config) as router:          # doctest: +SKIP
    ...     result = ingest_shard("/data/wiki", 0, 20_000, settings=settings, tei_url=router.url)
"""

from __future__ import annotations

import collections
import logging
import subprocess
import threading
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from typing import IO, Any, Callable, Iterable, Mapping, Sequence

import httpx

from ingest.chunking import ChunkingSettings
from ingest.deadletter import DeadLetter, DeadLetterFile
from ingest.errors import CollectionMismatchError, EmbedderError, IngestError, SettingsError, SourceError
from ingest.settings import EmbedderSettings, IngestSettings, StoreSettings

log = logging.getLogger(__name__)

ROUTER = "text-embeddings-router"
DTYPES = (None, "float16", "float32")

# Modal's base rate for one A10G (listed as "Nvidia A10" at $0.000306/s), read from
# modal.com/pricing; the same table's T4, L4, A100-80GB, L40S and H100 rates were
# confirmed unchanged by a third-party survey of 2026-05-07 (the A10 row itself was
# not re-checked here). Multipliers come on top: 1.5-1.75x for a pinned region, 3x
# for non-preemptible containers (neither is used by ingest.modal_app).
A10G_PRICE_PER_HOUR = 0.000306 * 3600  # USD, about 1.10


# -- the TEI server ------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RouterConfig:
    """How `text-embeddings-router` is started.

    `concurrent_requests` is how many client requests may be in flight at once;
    TEI 1.9 counts every *input* of a request against `--max-concurrent-requests`
    (and answers 429 past it), so that flag is sized to batch size x requests."""

    model_id: str
    port: int = 8000
    revision: str | None = None
    huggingface_hub_cache: str | None = None
    max_client_batch_size: int = 512
    max_batch_tokens: int = 512 * 512  # a full batch of 512-token inputs, as the reference runs it
    concurrent_requests: int = 32
    dtype: str | None = "float16"
    auto_truncate: bool = True
    executable: tuple[str, ...] = (ROUTER,)

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise SettingsError(f"router port {self.port} is not a TCP port")
        for name in ("max_client_batch_size", "max_batch_tokens", "concurrent_requests"):
            if getattr(self, name) < 1:
                raise SettingsError(f"router {name} must be at least 1, got {getattr(self, name)}")
        if self.dtype not in DTYPES:
            raise SettingsError(f"router dtype {self.dtype!r} is not one of float16, float32 (or None)")
        if not self.executable:
            raise SettingsError("router executable is empty")

    @property
    def max_concurrent_requests(self) -> int:
        return self.max_client_batch_size * self.concurrent_requests

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def router_command(config: RouterConfig) -> list[str]:
    """The argv that starts TEI for `config`; no flag is left to a default that
    could change under us between TEI releases."""
    command = [
        *config.executable,
        "--model-id", config.model_id,
        "--port", str(config.port),
        "--max-client-batch-size", str(config.max_client_batch_size),
        "--max-batch-tokens", str(config.max_batch_tokens),
        "--max-concurrent-requests", str(config.max_concurrent_requests),
    ]
    if config.revision:
        command += ["--revision", config.revision]
    if config.huggingface_hub_cache:
        command += ["--huggingface-hub-cache", config.huggingface_hub_cache]
    if config.dtype:
        command += ["--dtype", config.dtype]
    if config.auto_truncate:
        command.append("--auto-truncate")
    return command


class RouterError(EmbedderError):
    """The embedding server could not be started."""


class Router:
    """A TEI server in a child process; a context manager.

    `start()` returns once `GET {url}/health` answers 200. It raises `RouterError`
    at once if the process exits first, or after `startup_timeout` seconds; both
    messages carry the last lines the server printed (stdout and stderr, merged).
    `echo` receives every line as it comes (the container log, on Modal)."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        url: str,
        startup_timeout: float = 600.0,
        poll_interval: float = 0.25,
        echo: IO[str] | None = None,
        tail_lines: int = 40,
    ) -> None:
        if not command:
            raise SettingsError("router command is empty")
        self.command = list(command)
        self.url = url.rstrip("/")
        self.startup_timeout = startup_timeout
        self.poll_interval = poll_interval
        self.echo = echo
        self._tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    @classmethod
    def from_config(cls, config: RouterConfig, **kwargs: Any) -> "Router":
        return cls(router_command(config), url=config.url, **kwargs)

    def __repr__(self) -> str:
        return f"Router({self.command[0]!r}, url={self.url!r}, running={self.running})"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def tail(self) -> str:
        """The last lines the server printed."""
        return "\n".join(self._tail)

    def start(self) -> "Router":
        if self._process is not None:
            raise RouterError(f"{self!r} was already started")
        name = self.command[0]
        log.info("starting %s", " ".join(self.command))
        try:
            self._process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,  # one stream: TEI logs to stdout, fails to stderr
                text=True,
                errors="replace",
                bufsize=1,
            )
        except OSError as exc:
            raise RouterError(
                f"cannot run {name!r} ({exc}): the TEI image puts {ROUTER} on PATH; "
                "outside it, pass RouterConfig(executable=...)"
            ) from exc
        self._reader = threading.Thread(target=self._read_output, name="router-output", daemon=True)
        self._reader.start()
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        log.info("%s is healthy at %s", name, self.url)
        return self

    def _read_output(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        try:
            for line in self._process.stdout:
                self._tail.append(line.rstrip("\n"))
                if self.echo is not None:
                    self.echo.write(line)
        except (OSError, ValueError):  # the pipe was closed under us by stop()
            pass

    def _wait_healthy(self) -> None:
        assert self._process is not None
        started = time.monotonic()
        last = "no answer yet"
        # trust_env=False: a proxy from the environment must not sit between us and loopback.
        with httpx.Client(timeout=max(self.poll_interval, 2.0), trust_env=False) as client:
            while True:
                code = self._process.poll()
                if code is not None:
                    if self._reader is not None:
                        self._reader.join(timeout=2.0)  # collect what it printed before dying
                    raise RouterError(
                        f"{self.command[0]} exited with code {code} before it was healthy; "
                        f"its last output:\n{self.tail or '(nothing)'}"
                    )
                try:
                    response = client.get(f"{self.url}/health")
                    if response.status_code == 200:
                        return
                    last = f"GET /health answered {response.status_code}"
                except httpx.TransportError as exc:
                    last = f"GET /health failed: {type(exc).__name__}"
                elapsed = time.monotonic() - started
                if elapsed >= self.startup_timeout:
                    raise RouterError(
                        f"{self.command[0]} was not healthy at {self.url} within "
                        f"{self.startup_timeout:g} s ({last}); its last output:\n{self.tail or '(nothing)'}"
                    )
                time.sleep(min(self.poll_interval, max(self.startup_timeout - elapsed, 0.0)))

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds; safe to call twice."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                log.warning("%s ignored SIGTERM for %g s; killing it", self.command[0], grace)
                process.kill()
                process.wait()
        if self._reader is not None:
            self._reader.join(timeout=2.0)
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> "Router":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- one shard -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ShardResult:
    """What one shard did; plain data, so it pickles back to the driver."""

    start: int
    stop: int
    articles: int = 0
    skipped_empty: int = 0
    invalid: int = 0
    chunks: int = 0
    characters: int = 0
    points_written: int = 0
    rejected: int = 0
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    embed_seconds: float = 0.0

    @property
    def shard(self) -> tuple[int, int]:
        return (self.start, self.stop)


class ShardError(IngestError):
    """A shard failed; names the shard so the driver knows what to retry.
    (Modal returns exceptions from `starmap` without saying which input raised.)"""

    def __init__(self, start: int, stop: int, message: str) -> None:
        super().__init__(f"shard [{start}, {stop}): {message}")
        self.start, self.stop, self.message = start, stop, message

    def __reduce__(self):  # pickles with its fields, not just the formatted message
        return (type(self), (self.start, self.stop, self.message))

    @property
    def shard(self) -> tuple[int, int]:
        return (self.start, self.stop)


class InputRejected(EmbedderError):
    """The embedding server refused one input for good (too long without
    truncation, empty); `index` is its position in the request."""

    def __init__(self, index: int, status: int, message: str) -> None:
        super().__init__(f"input {index} refused ({status}): {message}")
        self.index, self.status, self.message = index, status, message

    def __reduce__(self):
        return (type(self), (self.index, self.status, self.message))


def embed_texts(embedder: Any, texts: Sequence[str]) -> list[list[float]]:
    """Vectors as plain lists (what the Modal `embed` method returns); raises
    `InputRejected` for the first input the server refused, so that no zero row
    ever passes for a vector."""
    result = embedder.embed_passages(list(texts))
    if result.rejected:
        first = result.rejected[0]
        raise InputRejected(first.index, first.status, first.message)
    return result.vectors.tolist()


class DeadLetterList(DeadLetterFile):
    """Dead letters kept in memory, to travel back to the driver with the result."""

    def __init__(self, label: str) -> None:
        super().__init__(label)
        self.records: list[dict[str, Any]] = []
        self._records_lock = threading.Lock()

    def write(self, record: DeadLetter) -> None:
        with self._records_lock:
            self.records.append(asdict(record))
            self.count += 1


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
    """Settings for `ingest_shard`, with Qdrant's address and key from `env`
    (on Modal, the `qdrant` secret). A Qdrant URL is required unless QDRANT_PATH
    names a local store explicitly: a container's disk vanishes with it."""
    url, path = env.get("QDRANT_URL") or None, env.get("QDRANT_PATH") or None
    if url is None and path is None:
        raise SettingsError(
            "QDRANT_URL is not set: the workers write straight to a Qdrant server "
            "(on Modal, create the secret: modal secret create qdrant QDRANT_URL=... QDRANT_API_KEY=...)"
        )
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
        store=StoreSettings(
            qdrant_path=path or StoreSettings().qdrant_path,
            qdrant_url=url,
            qdrant_api_key=env.get("QDRANT_API_KEY") or None,
            collection=collection,
            prefer_grpc=(env.get("QDRANT_NO_GRPC") or "").lower() not in ("1", "true", "yes", "on"),
        ),
    )


def load_rows(dataset_path: str, start: int, stop: int):
    """Rows [start, stop) of a `save_to_disk` dataset (memory-mapped; nothing is
    read before it is iterated). `stop` past the end is clipped."""
    import datasets

    datasets.disable_progress_bars()
    try:
        dataset = datasets.load_from_disk(str(dataset_path))
    except (FileNotFoundError, ValueError) as exc:
        raise SourceError(
            f"no saved dataset at {dataset_path} ({exc}): run the download step first "
            "(modal run -m ingest.modal_app::download_dataset)"
        ) from exc
    if isinstance(dataset, datasets.DatasetDict):
        dataset = dataset["train"] if "train" in dataset else next(iter(dataset.values()))
    stop = min(stop, len(dataset))
    return dataset.select(range(min(start, stop), stop))


def ingest_shard(
    dataset_path: str,
    start: int,
    stop: int,
    *,
    settings: IngestSettings,
    tei_url: str,
    manifest: Any = None,
) -> ShardResult:
    """Chunk, embed (TEI at `tei_url`) and upsert rows [start, stop) of the
    dataset saved at `dataset_path` into the collection `settings.store` names,
    creating it first if needed. Idempotent: point ids are deterministic, so a
    retried shard overwrites its own points. `manifest` (an `ingest.manifest.Manifest`,
    a throw-away one by default) receives the shard's articles as they land."""
    from ingest.embedders.tei import TEIEmbedder
    from ingest.jobs import client_for, collection_spec, make_chunker
    from ingest.pipeline import run_pipeline
    from ingest.progress import Progress
    from ingest.store import QdrantStore

    if not 0 <= start <= stop:
        raise SettingsError(f"shard [{start}, {stop}) is not a range of rows")
    rows = load_rows(dataset_path, start, stop)
    dead_letters = DeadLetterList(f"shard-{start}-{stop}")
    with ExitStack() as stack:
        embedder = TEIEmbedder(
            tei_url,
            max_concurrency=settings.embedder.tei_concurrency,
            model_name=settings.embedder.model,
            query_instruction=settings.embedder.query_instruction,
            wire=settings.embedder.tei_wire,  # base64 from the workers' own TEI 1.9: half the bytes
            tokenizer=settings.embedder.tei_tokenizer,
        )
        stack.callback(embedder.close)
        store = QdrantStore(client_for(settings.store), settings.store.collection)  # exactly this one
        stack.callback(store.close)
        ensure_collection(store, collection_spec(settings, embedder))
        summary = run_pipeline(
            rows,
            chunker=make_chunker(settings, embedder),
            embedder=embedder,
            store=store,
            dead_letters=dead_letters,
            window=settings.window,
            progress=Progress(len(rows), enabled=settings.progress),
            manifest=manifest,
        )
    return ShardResult(
        start=start,
        stop=stop,
        articles=summary.articles,
        skipped_empty=summary.skipped_empty,
        invalid=summary.invalid,
        chunks=summary.chunks,
        characters=summary.characters,
        points_written=summary.points_written,
        rejected=summary.rejected_chunks,
        dead_letters=dead_letters.records,
        seconds=summary.seconds,
        embed_seconds=summary.embed_seconds,
    )


def ensure_collection(store: Any, spec: Any) -> None:
    """`store.ensure_collection`, tolerating the race of many shards starting at
    once: if creating fails because another shard just created it, check the
    collection it made against ours instead."""
    try:
        store.ensure_collection(spec)
    except CollectionMismatchError:
        raise
    except Exception as exc:
        try:
            exists = store.client.collection_exists(store.collection)
        except Exception:
            raise exc from None
        if not exists:
            raise
        store.ensure_collection(spec)  # raises CollectionMismatchError if it differs


# -- the driver's arithmetic ---------------------------------------------------------
def plan_shards(n_rows: int, shard_size: int) -> list[tuple[int, int]]:
    """[start, stop) row ranges covering `n_rows`, each `shard_size` long but the last."""
    if n_rows < 0:
        raise SettingsError(f"cannot shard {n_rows} rows")
    if shard_size < 1:
        raise SettingsError(f"shard size must be at least 1, got {shard_size}")
    return [(start, min(start + shard_size, n_rows)) for start in range(0, n_rows, shard_size)]


@dataclass(slots=True)
class ShardRun:
    """All rounds of a fan-out: what finished, and what still failed at the end."""

    results: list[ShardResult] = field(default_factory=list)
    failed: dict[tuple[int, int], str] = field(default_factory=dict)
    rounds: int = 0
    unattributed: list[str] = field(default_factory=list)  # errors that named no shard

    @property
    def dead_letters(self) -> list[dict[str, Any]]:
        return [record for result in self.results for record in result.dead_letters]


def run_shards(
    shards: Sequence[tuple[int, int]],
    run_round: Callable[[list[tuple[int, int]]], Iterable[Any]],
    *,
    max_rounds: int = 3,
    on_output: Callable[[Any], None] | None = None,
) -> ShardRun:
    """Run `shards` through `run_round` (on Modal: a `starmap` with
    `return_exceptions=True`), then again for the shards with no result, up to
    `max_rounds` rounds in all. Outputs are `ShardResult`s or exceptions in any
    order; a shard counts as done only when its result arrived."""
    if max_rounds < 1:
        raise SettingsError(f"max_rounds must be at least 1, got {max_rounds}")
    run = ShardRun()
    pending = list(dict.fromkeys(shards))
    errors: dict[tuple[int, int], str] = {}
    while pending and run.rounds < max_rounds:
        run.rounds += 1
        done: set[tuple[int, int]] = set()
        for output in run_round(list(pending)):
            if on_output is not None:
                on_output(output)
            if isinstance(output, ShardResult):
                run.results.append(output)
                done.add(output.shard)
            elif isinstance(output, ShardError):
                errors[output.shard] = output.message
            elif isinstance(output, BaseException):
                run.unattributed.append(f"{type(output).__name__}: {output}")
            else:
                run.unattributed.append(f"unexpected output {type(output).__name__}")
        pending = [shard for shard in pending if shard not in done]
        if pending:
            log.warning("round %d: %d of the shards failed", run.rounds, len(pending))
    run.failed = {shard: errors.get(shard, "no result (the container failed or timed out)") for shard in pending}
    return run


def run_report(
    results: Sequence[ShardResult],
    wall_seconds: float,
    gpus: int,
    gpu_price_per_hour: float = A10G_PRICE_PER_HOUR,
    *,
    failed: Mapping[tuple[int, int], str] | None = None,
) -> str:
    """A plain-text report of a run. GPU time is `gpus x wall time`: what is billed
    while every container is held for the whole run (containers that scale down
    early make the real bill smaller)."""
    articles = sum(r.articles for r in results)
    chunks = sum(r.chunks for r in results)
    characters = sum(r.characters for r in results)
    points = sum(r.points_written for r in results)
    rejected = sum(r.rejected for r in results)
    invalid = sum(r.invalid for r in results)
    wall = max(wall_seconds, 1e-9)
    gpus = max(gpus, 1)
    gpu_seconds = gpus * wall_seconds
    lines = [
        f"shards               {len(results):,} done" + (f", {len(failed):,} failed" if failed else ""),
        f"articles             {articles:,} ({invalid:,} invalid)",
        f"chunks               {chunks:,} ({points:,} points written, {rejected:,} rejected)",
        f"characters           {characters:,}",
        f"wall time            {_duration(wall_seconds)} ({wall_seconds:,.1f} s)",
        f"chunks/s             {chunks / wall:,.0f}",
        f"characters/s per GPU {characters / wall / gpus:,.0f} ({gpus} GPUs)",
        f"GPU-seconds          {gpu_seconds:,.0f} ({gpu_seconds / 3600:,.2f} GPU-hours)",
        f"estimated cost       ${gpu_seconds / 3600 * gpu_price_per_hour:,.2f} at ${gpu_price_per_hour:.4f}/GPU-hour",
    ]
    for (start, stop), message in sorted((failed or {}).items()):
        lines.append(f"failed shard [{start}, {stop}): {message}")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
