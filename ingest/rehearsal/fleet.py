"""The local fleet of `python -m ingest rehearse`: the sharded load's workers on
this machine, as threads (sharing the embedded store, which one process holds) or as
processes (against a Qdrant server), each a `ingest.sharded.worker.Worker` with its own
TEI server. It answers the driver's calls as Modal does: a round's shards come back
in any order, failures as outputs; a worker that reports itself broken stops taking
work and is replaced, and one that dies loses the shards it held (`WorkerLost`, naming
no shard, as a lost container's `RemoteError` does). Faults (`FAULTS`) are given to
the first worker of a slot; replacements are healthy, as a new container's GPU is.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import queue
import signal
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from ingest.errors import ShardError
from ingest.rehearsal.standin_router import free_port, runner
from ingest.settings import StoreSettings
from ingest.sharded.driver import LoadRequest
from ingest.sharded.load import LoadPlan, finish_load, prepare_load
from ingest.sharded.records import ShardRecords
from ingest.sharded.tei_process import RouterConfig
from ingest.sharded.worker import Worker, WorkerConfig
from ingest.store import Store, open_store

MODEL = "BAAI/bge-small-en-v1.5"  # what the stand-in says it serves (its vectors are deterministic, 384 wide)
FAULTS = {  # the stand-in's flags for each fault
    "429-storm": ("--rate-429", "0.6"),
    "sick-gpu": ("--sick-after", "4"),
    "dead-router": ("--die-after", "4"),
    "killed-worker": (),
}


class WorkerLost(Exception):
    """A worker died holding a shard: what Modal returns for a lost container names no
    input (`modal.exception.RemoteError`), so this names none either."""


@dataclass(frozen=True, slots=True)
class Task:
    start: int
    stop: int
    dataset: str
    collection: str
    layout: dict
    window: int
    records: str

    @property
    def shard(self) -> tuple[int, int]:
        return (self.start, self.stop)


# -- one worker's slot in the pool, as threads or as a process ---------------------------------
def _run_task(worker: Worker, task: Task) -> Any:
    records = ShardRecords(Path(task.records)) if task.records else None
    try:
        return worker.ingest_shard(
            task.start, task.stop, task.dataset, task.collection, task.layout, task.window, records
        )
    except ShardError as exc:
        return exc


class _Slot:
    """What the pool knows of a worker: the shards it holds, whether it was killed (what
    its shards return is lost) or retired (it said it is broken: no more work)."""

    name: str
    concurrency: int
    fault: str | None
    submitted: int = 0
    killed: bool = False
    retired: bool = False

    @property
    def done(self) -> bool:
        """Ready to be replaced: killed or retired, and holding nothing."""
        return (self.killed or self.retired) and not self.running

    @property
    def takes_work(self) -> bool:
        return not (self.killed or self.retired) and len(self.running) < self.concurrency


class ThreadSlot(_Slot):
    """A worker run by threads of this process, sharing the embedded store's connection."""

    def __init__(
        self, name: str, config: WorkerConfig, concurrency: int, store: Store | None, fault: str | None
    ) -> None:
        self.name, self.concurrency, self.fault = name, concurrency, fault
        self.worker = Worker(config, name=name, store=store).start()
        self.pool = ThreadPoolExecutor(concurrency, thread_name_prefix=name)
        self.running: dict[Any, Task] = {}

    def submit(self, task: Task) -> None:
        self.submitted += 1
        self.running[self.pool.submit(_run_task, self.worker, task)] = task

    def outputs(self) -> list[Any]:
        done = [future for future in self.running if future.done()]
        found = []
        for future in done:
            task = self.running.pop(future)
            result = future.result()
            found.append(
                WorkerLost(f"{self.name} died holding shard [{task.start}, {task.stop})") if self.killed else result
            )
        return found

    def kill(self) -> None:
        """The container dies: its TEI with it, and whatever its shards return is lost."""
        self.killed = True
        if self.worker.router is not None and self.worker.router.running:
            os.kill(self.worker.router.pid, signal.SIGKILL)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.worker.stop()


def _process_main(name: str, config: WorkerConfig, concurrency: int, inbox: Any, outbox: Any) -> None:
    """A worker process: its own TEI server and store connection; tasks in, outputs out."""
    worker = Worker(config, name=name).start()
    try:
        with ThreadPoolExecutor(concurrency) as pool:
            while (task := inbox.get()) is not None:
                pool.submit(lambda t=task: outbox.put((t.shard, _run_task(worker, t))))
    finally:
        worker.stop()


class ProcessSlot(_Slot):
    """A worker run as a process of its own (against a Qdrant server)."""

    def __init__(self, name: str, config: WorkerConfig, concurrency: int, fault: str | None) -> None:
        context = multiprocessing.get_context("spawn")
        self.name, self.concurrency, self.fault = name, concurrency, fault
        self.inbox, self.outbox = context.Queue(), context.Queue()
        self.process = context.Process(
            target=_process_main, args=(name, config, concurrency, self.inbox, self.outbox), name=name, daemon=True
        )
        self.process.start()
        self.running: dict[tuple[int, int], Task] = {}

    def submit(self, task: Task) -> None:
        self.submitted += 1
        self.running[task.shard] = task
        self.inbox.put(task)

    def outputs(self) -> list[Any]:
        found = []
        while True:
            try:
                shard, output = self.outbox.get_nowait()
            except queue.Empty:
                break
            self.running.pop(shard, None)
            found.append(output)
        if not self.process.is_alive():
            self.killed = True
            found += [
                WorkerLost(f"{self.name} died holding shard [{t.start}, {t.stop})") for t in self.running.values()
            ]
            self.running.clear()
        return found

    def kill(self) -> None:
        self.killed = True
        os.kill(self.process.pid, signal.SIGKILL)

    def close(self) -> None:
        if self.process.is_alive():
            self.inbox.put(None)
            self.process.join(timeout=60)
        if self.process.is_alive():
            self.process.kill()


# -- the fleet ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FleetConfig:
    workers: int = 4
    shards_per_worker: int = 2
    faults: tuple[str, ...] = ()
    tei_command: tuple[str, ...] = ()  # a real router's argv prefix; () for the stand-in
    tokenizer: str | None = None
    processes: bool = False
    state_dir: Path = Path("rehearsal-state")


class LocalFleet:
    """`ingest.sharded.driver.Fleet` on this machine (see the module docstring)."""

    def __init__(self, config: FleetConfig, store: StoreSettings) -> None:
        self.config, self.store_settings = config, store
        self.store = None if config.processes else open_store(store)
        self.replaced = 0
        self.service = Worker(self._worker_config(()), name="service", store=self.store).start()
        self.slots: list[ThreadSlot | ProcessSlot | None] = [None] * config.workers

    def _worker_config(self, flags: Sequence[str]) -> WorkerConfig:
        command = self.config.tei_command or runner(*flags)
        router = RouterConfig(
            MODEL,
            executable=tuple(command),
            port=free_port(),
            max_client_batch_size=64,
            concurrent_requests=self.config.shards_per_worker * 8 + 8,
            dtype=None,
        )
        env = {**os.environ, **_store_env(self.store_settings)}
        return WorkerConfig(router, tokenizer=self.config.tokenizer, tei_concurrency=4, startup_timeout=120.0, env=env)

    def _start(self, index: int, *, first: bool) -> ThreadSlot | ProcessSlot:
        """A worker for slot `index`: the first one with its fault, replacements healthy."""
        fault = self.config.faults[index] if first and index < len(self.config.faults) else None
        config = self._worker_config(FAULTS.get(fault or "", ()))
        name = f"worker-{index}" + (f" ({fault})" if fault else "") + ("" if first else f" #{self.replaced}")
        if self.config.processes:
            return ProcessSlot(name, config, self.config.shards_per_worker, fault)
        return ThreadSlot(name, config, self.config.shards_per_worker, self.store, fault)

    # -- Fleet --
    def prepare(self, request: LoadRequest) -> LoadPlan:
        settings = self.service.settings(request.name, request.layout, drop_old=request.drop_old)
        return prepare_load(
            settings,
            records_root=str(self.config.state_dir / "runs"),
            key=request.key,
            fresh=request.fresh,
            trial=request.trial,
            store=self._store(),
        )

    def run_round(self, request: LoadRequest, plan: LoadPlan, shards: list[tuple[int, int]]) -> Iterator[Any]:
        pending = deque(
            Task(start, stop, request.dataset, plan.collection, dict(request.layout), request.window, plan.records)
            for start, stop in shards
        )
        outstanding = len(pending)
        while outstanding:
            for index in range(len(self.slots)):
                slot = self.slots[index]
                if slot is None or slot.done:
                    if slot is not None:
                        slot.close()
                        self.replaced += 1
                    self.slots[index] = slot = self._start(index, first=slot is None)
                while pending and slot.takes_work:
                    slot.submit(pending.popleft())
                    if slot.fault == "killed-worker" and slot.submitted == 2:
                        slot.kill()  # with both its shards under way: what they return is lost
                for output in slot.outputs():
                    outstanding -= 1
                    if isinstance(output, ShardError) and output.broken:
                        slot.retired = True  # it stops taking work; a new worker takes its place
                    yield output
            time.sleep(0.02)

    def wait_until_indexed(self, collection: str) -> bool:
        store = self._store()
        return store.at(collection).finish_bulk_load(wait_seconds=600.0)

    def finish(self, request: LoadRequest, plan: LoadPlan) -> str:
        settings = self.service.settings(request.name, request.layout, drop_old=request.drop_old)
        return finish_load(
            settings, plan, state_dir=str(self.config.state_dir), store=self._store(), wait_seconds=600.0
        )

    def _store(self) -> Store:
        if self.store is None:
            self.store = open_store(self.store_settings)
        return self.store

    def close(self) -> None:
        for slot in self.slots:
            if slot is not None:
                slot.close()
        self.service.stop()
        if self.store is not None:
            self.store.close()


def _store_env(settings: StoreSettings) -> dict[str, str]:
    """The store's settings as the workers read them (the Modal secret's variables)."""
    env = {
        "QDRANT_URL": settings.qdrant_url or "",
        "QDRANT_PATH": "" if settings.qdrant_url else settings.qdrant_path,
        "QDRANT_NO_GRPC": "" if settings.prefer_grpc else "1",
        "QDRANT_GRPC_PORT": str(settings.grpc_port) if settings.grpc_port else "",
        "QDRANT_QUANTIZATION": settings.layout.quantization,
    }
    if settings.qdrant_api_key:
        env["QDRANT_API_KEY"] = settings.qdrant_api_key
    return {k: v for k, v in env.items() if v}


def point_set_digest(store: Store) -> tuple[int, str]:
    """How many points the collection holds, and a digest of them all: each id with the
    hashes of the text it embeds and of its article, in id order. (Its vector follows
    from the text; it is not in the digest because a server normalizes a cosine vector
    again as it stores it, which may move its last bit.)"""
    digest = hashlib.sha256()
    points = sorted(
        (p.id, p.payload.get("chunk_hash"), p.payload.get("article_hash"))
        for page in store.export_points()
        for p in page
    )
    for point in points:
        digest.update("|".join(map(str, point)).encode() + b"\n")
    return len(points), digest.hexdigest()[:16]
