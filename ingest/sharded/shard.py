"""What one GPU container does with one shard, in plain Python: a slice of a
`save_to_disk` dataset through the ordinary pipeline, embedding on the container's
own TEI server and writing straight to Qdrant. `ingest.modal_app` only wraps it.

    >>> result = ingest_shard("/data/wiki", 0, 5_000, settings=settings)   # doctest: +SKIP
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from ingest.embedders import Embedder, make_embedder
from ingest.embedders.base import all_vectors
from ingest.errors import BackendFailure, CollectionMismatchError, SettingsError, SourceError
from ingest.jobs import collection_spec, make_chunker
from ingest.pipeline.deadletters import MemorySink
from ingest.pipeline.run import run_pipeline
from ingest.pipeline.summary import RunSummary
from ingest.progress import Progress
from ingest.settings import IngestSettings
from ingest.state.manifest import Manifest
from ingest.store import Store, open_store
from schemas import CollectionSpec

# A healthy GPU refuses next to nothing (TEI truncates long inputs, the chunker drops
# empty ones): a shard with more refused chunks than this is a sick GPU's, and fails
# rather than being recorded with its chunks dead-lettered.
REFUSED_SHARE = 0.01
REFUSED_FLOOR = 5  # refused chunks a shard may have whatever its size (a tiny shard's one bad input)


@dataclass(frozen=True, slots=True)
class WorkerStamp:
    """Which container ran a shard, and when (seconds since the epoch, its clock): the
    driver adds up what the containers were held for, which is what Modal bills."""

    worker: str  # the container (Modal's MODAL_TASK_ID) or a local worker's name
    started: float  # when the container started (its TEI server's start included)
    finished: float  # when this shard ended


@dataclass(frozen=True, slots=True)
class ShardResult:
    """What one shard did: its rows, the run's summary and its dead letters; plain
    data, so it pickles back to the driver and is recorded as JSON."""

    start: int
    stop: int
    summary: RunSummary = field(default_factory=RunSummary)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    stamp: WorkerStamp | None = None

    @property
    def shard(self) -> tuple[int, int]:
        return (self.start, self.stop)

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "stop": self.stop,
            "summary": asdict(self.summary),
            "dead_letters": self.dead_letters,
            "stamp": asdict(self.stamp) if self.stamp else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShardResult:
        """Also reads the flat records written before results carried a `RunSummary`."""
        if "summary" in data:
            # fields only: records written before the typed run report also carry `extra`
            summary = RunSummary(**{k: v for k, v in data["summary"].items() if k in RunSummary.__dataclass_fields__})
        else:
            flat = {k: v for k, v in data.items() if k in RunSummary.__dataclass_fields__}
            summary = RunSummary(**flat, rejected_chunks=data.get("rejected", 0))
        stamp = WorkerStamp(**data["stamp"]) if data.get("stamp") else None
        return cls(data["start"], data["stop"], summary, list(data.get("dead_letters") or []), stamp)


def check_refusals(summary: RunSummary, where: str) -> None:
    """A `BackendFailure` when more chunks were refused than a healthy GPU refuses."""
    limit = max(REFUSED_FLOOR, REFUSED_SHARE * summary.chunks)
    if summary.rejected_chunks > limit:
        raise BackendFailure(
            f"{where}: the embedder refused {summary.rejected_chunks:,} of {summary.chunks:,} chunks, more than "
            f"the {REFUSED_SHARE:.0%} (or {REFUSED_FLOOR}) a healthy GPU refuses: its GPU is likely broken, and "
            "the shard is not recorded (it runs again elsewhere)"
        )


def embed_texts(embedder: Embedder, texts: Sequence[str]) -> list[list[float]]:
    """Vectors as plain lists (what the Modal `embed` method returns); raises
    `InputRejected` for the first input the server refused."""
    return all_vectors(embedder.embed_passages(list(texts)), where="the container's TEI server").tolist()


def load_rows(dataset_path: str, start: int, stop: int):
    """Rows [start, stop) of a `save_to_disk` dataset (memory-mapped; nothing is
    read before it is iterated). `stop` past the end is clipped."""
    import datasets  # memory-maps Arrow files; imported where a shard is read, not to plan one

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
    manifest: Manifest | None = None,
    embedder: Embedder | None = None,
    store: Store | None = None,
) -> ShardResult:
    """Chunk, embed (with `settings.embedder`: the container's TEI) and upsert rows
    [start, stop) of the dataset saved at `dataset_path` into the collection
    `settings.store` names, creating it first if needed. Idempotent: point ids are
    deterministic, so a retried shard overwrites its own points. `manifest` (a
    throw-away one by default) receives the shard's articles as they land.
    `embedder` and `store` (any collection: this one is used) are used as given and
    left open. A shard with more refused chunks than a healthy GPU refuses fails
    (`check_refusals`)."""
    if not 0 <= start <= stop:
        raise SettingsError(f"shard [{start}, {stop}) is not a range of rows")
    rows = load_rows(dataset_path, start, stop)
    dead_letters = MemorySink(f"shard [{start}, {stop})")
    with ExitStack() as stack:
        if embedder is None:
            embedder = make_embedder(settings.embedder)
            stack.callback(embedder.close)
        if store is None:
            store = open_store(settings.store)
            stack.callback(store.close)
        store = store.at(settings.store.collection)  # exactly this collection: the driver picked it
        spec = collection_spec(settings, embedder)
        ensure_collection(store, spec)
        summary = run_pipeline(
            rows,
            chunker=make_chunker(settings, embedder),
            embedder=embedder,
            store=store,
            dead_letters=dead_letters,
            window=settings.window,
            progress=Progress(len(rows), enabled=settings.progress),
            manifest=manifest,
            definitions=spec.definition is not None,
        )
    check_refusals(summary, f"shard [{start}, {stop})")
    return ShardResult(start, stop, summary, dead_letters.records)


def ensure_collection(store: Store, spec: CollectionSpec) -> None:
    """`store.ensure_collection`, tolerating the race of many shards starting at
    once: if creating fails because another shard just created it, check the
    collection it made against ours instead."""
    try:
        store.ensure_collection(spec)
    except CollectionMismatchError:
        raise
    except Exception as exc:
        try:
            exists = store.exists()
        except Exception:
            raise exc from None
        if not exists:
            raise
        store.ensure_collection(spec)  # raises CollectionMismatchError if it differs
