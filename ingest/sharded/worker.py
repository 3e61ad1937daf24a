"""What one GPU container does, whatever runs it: `ingest.modal_app.GPUWorker` on
Modal, a local pool's worker in `python -m ingest rehearse`.

A worker starts its own TEI server once, embeds queries and shards with it, and
before each shard checks that the server still runs and answers its health check
(TEI's `/health` runs a forward pass once a batch failed, and answers 503 while
the backend stays broken). A broken worker fails the shard it was given with a
`ShardError` marked `broken`, and stops taking work: on Modal the container stops
fetching inputs and Modal starts another; in a local pool another worker is started.
Every result and error carries a `WorkerStamp` (which worker, since when, until
when), from which the driver counts the GPU-seconds the load held.

    >>> worker = Worker(WorkerConfig(RouterConfig(MODEL_ID)), name="gpu-0").start()   # doctest: +SKIP
    >>> dataset = "/dataset/wikipedia-20231101.en"
    >>> worker.ingest_shard(0, 5_000, dataset, "wikipedia-1a2b3c4d", layout, 2048)   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Callable, ContextManager, Mapping, Sequence

import httpx

from ingest.embedders.tei import TEIEmbedder
from ingest.errors import ShardError
from ingest.modal_settings import shard_settings
from ingest.settings import IngestSettings
from ingest.sharded.records import ShardRecords, ingest_recorded_shard
from ingest.sharded.shard import ShardResult, WorkerStamp, embed_texts
from ingest.sharded.tei_process import Router, RouterConfig, router_environment
from ingest.store import Store

log = logging.getLogger(__name__)

SPARSE = "bm25"  # lexical vectors beside the dense ones unless a load's layout says "none"
HEALTH_TIMEOUT = 10.0  # seconds: TEI's health check waits behind the batch on the GPU


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """How a worker starts its TEI server and reaches Qdrant.

    `env`: the container's environment, where the Qdrant secret's variables are (and
    from which TEI's own flag variables are removed, `router_environment`);
    `tokenizer`: the served model's tokenizer.json, for the chunker's token budget."""

    router: RouterConfig
    tokenizer: str | None = None
    tei_concurrency: int = 8  # requests in flight from one shard's embedder
    startup_timeout: float = 600.0
    env: Mapping[str, str] = field(default_factory=dict)


class Worker:
    """One container's TEI server and the work it does with it (see the module docstring).

    `store`: a store connection shared by the shards (an embedded store is held by one
    process, so a local pool of threads shares one); None: each shard opens its own."""

    def __init__(
        self, config: WorkerConfig, *, name: str, echo: IO[str] | None = None, store: Store | None = None
    ) -> None:
        self.config, self.name, self.echo, self.store = config, name, echo, store
        self.router: Router | None = None
        self.embedder: TEIEmbedder | None = None
        self.started = 0.0

    def __repr__(self) -> str:
        return f"Worker({self.name!r}, router={self.router!r})"

    # -- life ---------------------------------------------------------------------------------
    def start(self) -> Worker:
        self.started = time.time()
        self.router = Router.from_config(
            self.config.router,
            startup_timeout=self.config.startup_timeout,
            echo=self.echo,
            env=router_environment(self.config.env),
        ).start()
        try:
            self.embedder = self._embedder()
        except BaseException:
            self.router.stop()
            raise
        return self

    def __enter__(self) -> Worker:
        return self if self.router is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.embedder is not None:
            self.embedder.close()
            self.embedder = None
        if self.router is not None:
            self.router.stop()

    def broken(self) -> str | None:
        """Why this worker's TEI server can embed no more, or None while it can."""
        router = self.router
        if router is None:
            return "TEI server was never started"
        if not router.running:
            return f"TEI server exited (code {router.returncode})"
        try:
            # trust_env=False: a proxy from the environment must not sit between us and loopback
            with httpx.Client(timeout=HEALTH_TIMEOUT, trust_env=False) as client:
                status = client.get(f"{router.url}/health").status_code
        except httpx.HTTPError as exc:
            return f"TEI server does not answer its health check ({type(exc).__name__})"
        return None if status == 200 else f"TEI server answers {status} to its health check"

    def stamp(self) -> WorkerStamp:
        return WorkerStamp(self.name, self.started, time.time())

    def _embedder(self) -> TEIEmbedder:
        router = self.router
        assert router is not None
        return TEIEmbedder(
            router.url,
            max_concurrency=self.config.tei_concurrency,
            wire="base64",
            model_name=self.config.router.model_id,
            tokenizer=self.config.tokenizer,
            alive=lambda: router.running,
        )

    # -- the work ---------------------------------------------------------------------------------
    def settings(
        self, collection: str, layout: Mapping[str, Any], window: int = 2048, drop_old: bool = False
    ) -> IngestSettings:
        """A shard's settings: `layout` is the chunker's settings and "sparse" (the
        lexical vectors' kind); Qdrant's address and key come from the worker's env."""
        assert self.router is not None, "start() the worker first"
        chunking = dict(layout)
        sparse = chunking.pop("sparse", SPARSE)
        return shard_settings(
            self.config.env,
            tei_url=self.router.url,
            collection=collection,
            model=self.config.router.model_id,
            chunking=chunking,
            window=window,
            tei_concurrency=self.config.tei_concurrency,
            drop_old=drop_old,
            tei_tokenizer=self.config.tokenizer,
            sparse=sparse,
        )

    def spec(self) -> dict:
        assert self.embedder is not None, "start() the worker first"
        return self.embedder.spec.to_dict()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        assert self.embedder is not None, "start() the worker first"
        return embed_texts(self.embedder, texts)

    def ingest_shard(
        self,
        start: int,
        stop: int,
        dataset: str,
        collection: str,
        layout: Mapping[str, Any],
        window: int,
        records: ShardRecords | None = None,
        *,
        commit: Callable[[], None] | None = None,
        lock: ContextManager | None = None,
    ) -> ShardResult:
        """Rows [start, stop) of the saved dataset into `collection`, recorded in
        `records` once they all landed; a `ShardError` names the shard otherwise."""
        if (why := self.broken()) is not None:
            raise ShardError(start, stop, f"not started: this worker's {why}", broken=True, stamp=self.stamp())
        try:
            embedder = self._embedder()
            try:
                result = ingest_recorded_shard(
                    dataset,
                    start,
                    stop,
                    settings=self.settings(collection, layout, window),
                    records=records,
                    commit=commit,
                    lock=lock or contextlib.nullcontext(),
                    embedder=embedder,
                    store=self.store,
                )
            finally:
                embedder.close()
        except Exception as exc:
            why = self.broken()
            message = f"{type(exc).__name__}: {exc}" + (f"; this worker's {why}" if why else "")
            raise ShardError(start, stop, message, broken=why is not None, stamp=self.stamp()) from exc
        return replace(result, stamp=self.stamp())


def records_folder(records: str) -> ShardRecords | None:
    return ShardRecords(Path(records)) if records else None
