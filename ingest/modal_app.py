# # Embed English Wikipedia on Modal A10Gs, straight into Qdrant
#
# Modal's January 2024 example embedded Wikipedia on 100 A10Gs in about fifteen
# minutes, then held every vector in the driver's memory. Here each GPU container
# runs Hugging Face's Text Embeddings Inference (TEI) server next to our ordinary
# ingest pipeline, and writes its points to Qdrant itself: nothing travels back to
# the driver but counts and the inputs that failed. Point ids are deterministic, so
# a shard that is retried overwrites its own points instead of duplicating them.
#
# The work each container does lives in `ingest.sharded`, plain Python tested
# without Modal (and rehearsed on one machine by `python -m ingest rehearse`); this
# file declares the infrastructure around it. It is one file on purpose, read top to
# bottom like Modal's own examples (over 500 lines, much of it these comments), and
# `tests/test_layers.py` exempts it from the size limit. `tests/test_containers.py`
# runs every function below in an interpreter that holds only what its container holds.
#
#     modal secret create qdrant QDRANT_URL=https://... QDRANT_API_KEY=...
#     modal secret create search-api SEARCH_API_TOKEN=$(openssl rand -hex 32)
#     modal run -m ingest.modal_app::download_dataset       # once: the dump into a Volume
#     modal run -m ingest.modal_app::preflight              # go or no-go, a few minutes on one A10G
#     modal deploy -m ingest.modal_app                      # search endpoint, `GPUWorker`, reindex schedule
#     WIKI_EMBED_GPUS=100 modal run -m ingest.modal_app --limit 20000   # a trial: builds wikipedia-trial
#     WIKI_EMBED_GPUS=100 modal run -m ingest.modal_app                 # the whole corpus (resumable)
#     modal run -m ingest.modal_app::reindex                # an incremental reindex, now
#
# Both secrets must exist before any `modal run` of this app: a run creates every
# function the app declares, the search endpoint's with its secret.
#
# `WIKI_EMBED_GPUS` sets how many A10Gs may run at once, read where the app is
# built: `modal run` builds an app of its own from this file, so set it in the shell
# that runs the load (a deploy's value applies to the deployed class only). The
# deploy also schedules one function, `scheduled_reindex` (`WIKI_REINDEX_CRON`,
# Sundays at 03:00 UTC by default), which reindexes the live collection against the
# newest of the configured snapshots (`WIKI_SNAPSHOTS` of `WIKI_DATASET`) when it is
# newer than what the collection holds.
#
# Only `modal`, the settings module and the pinned model (`ingest.sharded.weights`)
# are imported at the top, so the file imports (and deploys) on a machine that has
# nothing else installed; everything else (numpy, qdrant-client, datasets...) is
# imported inside the functions that run in the containers, where the image has it.

import dataclasses
import os
import sys
import threading
import time

import modal

from ingest.modal_settings import deploy_settings, store_settings_from_env
from ingest.settings import EmbedderSettings, ServeSettings, env_name
from ingest.sharded.weights import MODEL_ID, MODEL_REVISION, WEIGHTS_DIR, download_weights, snapshot_dir

# What the deploying shell sets (WIKI_EMBED_GPUS, WIKI_REINDEX_CRON, WIKI_DATASET,
# WIKI_SNAPSHOTS, WIKI_SEARCH_COLLECTION, WIKI_SEARCH_MIN_CONTAINERS), read once, here.
DEPLOY = deploy_settings(os.environ)

APP_NAME = "wiki-embed"  # EmbedderSettings.modal_app's default
app = modal.App(APP_NAME)

MINUTES = 60  # seconds
HOURS = 60 * MINUTES


# ## The model and the server that runs it
#
# BAAI/bge-small-en-v1.5 at a pinned revision (`ingest.sharded.weights`). TEI
# publishes one image per GPU architecture; `86-` is Ampere's SM 8.6, the A10G's.
# The search endpoint embeds its queries with the same model and revision on a CPU,
# in TEI's CPU image.

TEI_IMAGE = "ghcr.io/huggingface/text-embeddings-inference:86-1.9"
TEI_CPU_IMAGE = "ghcr.io/huggingface/text-embeddings-inference:cpu-1.9"
GPU = "A10G"
TEI_PORT = 8000
TOKENIZER_JSON = f"{snapshot_dir(WEIGHTS_DIR)}/tokenizer.json"  # the chunker counts tokens with it

# A request carries up to 512 chunks, and a batch on the GPU up to 512 x 512
# tokens, as in the reference run. Each container works on a few shards at once so
# that the GPU always has a batch waiting while Python chunks and writes the next.
BATCH_SIZE = 512
MAX_BATCH_TOKENS = 512 * 512
SHARDS_PER_CONTAINER = 4
TEI_CONCURRENCY = 8  # requests in flight from one shard's embedder
MAX_CONTAINERS = DEPLOY.gpus
SCALEDOWN = 2 * MINUTES  # an idle A10G is let go (and billed until then)

# The cores that keep an A10G fed. `python -m ingest bench-cpu` times, per core, all
# that happens between the dataset and the upsert (docs/measurements.md, "The CPU side
# of a GPU container"); at the 1M characters/s per A10G this project aims for:
#   our pipeline: chunking with the tokenizer 0.64, BM25 0.07, points 0.04,
#   gRPC bodies 0.08, TEI client 0.05 ............ 0.89 core (1.13M characters/s a core)
#   TEI's own tokenization ........................ 0.33 core (3.0M characters/s a core)
#   TEI's GPU host thread and HTTP (not measured) . about 1 core
# = about 2.2 cores: 4 leave room for what the sample's short lead sections do not
# show. TEI's tokenizer gets 2 threads (0.33 core of work, twice over), not its default
# of one per core it sees, which in a container can be the host's. The shards of a
# container are threads of one process, so the Python part of our pipeline is held to
# one core whatever `cpu` says: 1.13M characters/s is a container's ceiling.
CPU_PER_GPU = 4.0
TEI_TOKENIZATION_WORKERS = 2

# The TEI image starts the router as its entrypoint; Modal needs to start Python,
# so the entrypoint is cleared and our code starts the router itself, through the
# image's entrypoint script (see `tei_executable` below). The Python packages are
# the ones the pipeline imports, pinned; `tests/test_containers.py` installs exactly
# these and runs the app's functions with them.

RUNTIME_PACKAGES = (
    "datasets==5.2.0",
    "httpx==0.29.0",
    "huggingface_hub==2.4.0",
    "numpy==2.4.6",
    "orjson==3.13.0",
    "qdrant-client==1.20.0",
    "qdrant-edge-py==0.9.0",  # Qdrant's standard BM25: the workers' and the search's lexical vectors
    "tenacity==9.2.1",
    "tokenizers==0.23.3",  # the chunker counts tokens with the served model's tokenizer.json
)
WEB_PACKAGES = ("fastapi==0.165.0", "pydantic==2.14.4", "uvicorn==0.55.0")  # the search endpoint's, on top

# The project's packages go into every image. `add_local_python_source` ships .py
# files only unless told otherwise (modal 1.6.4 `_image.py:1049-1071`): the search
# page's files are named too, or `/` answers 500.
SOURCES = ("schemas", "ingest", "search")
SHIPPED = ~modal.FilePatternMatcher("**/*.py", "static/**")

# The weights are downloaded once, when the image is built, into a Hugging Face hub
# cache inside the image (`download_weights`, which imports nothing of the project:
# a build step's container holds only its own module's package). TEI reads them with
# `--huggingface-hub-cache`; Python's hub client is pointed there too (TEI's image
# sets /data, where the dataset Volume used to be mounted).
tei_image = (
    modal.Image.from_registry(TEI_IMAGE, add_python="3.11")
    .entrypoint([])
    .pip_install(*RUNTIME_PACKAGES)
    .env({"HF_HUB_DISABLE_TELEMETRY": "1", "HUGGINGFACE_HUB_CACHE": WEIGHTS_DIR})
    .run_function(download_weights)
    .add_local_python_source(*SOURCES, ignore=SHIPPED)
)

# Small CPU work (the download, the index wait, picking the week's snapshot): no TEI.
cpu_image = (
    modal.Image.debian_slim(python_version="3.11")
    .pip_install(*RUNTIME_PACKAGES)
    .add_local_python_source(*SOURCES, ignore=SHIPPED)
)


# ## Keep the articles in a Volume
#
# The dump is downloaded once and saved with `save_to_disk`, so each container
# memory-maps its slice instead of downloading.

DATASET_NAME = DEPLOY.dataset
DATASET_CONFIG = "20231101.en"  # wikimedia/wikipedia's only English dump
DATA_DIR = "/dataset"
dataset_volume = modal.Volume.from_name("wiki-embed-data", create_if_missing=True)


def dataset_path(config: str) -> str:
    return f"{DATA_DIR}/wikipedia-{config}"


# ## Remember what is indexed, on a Volume of its own
#
# The manifests (one SQLite file per physical collection: what each holds, with the
# journals of what changed since its last whole copy), the records of the sharded
# load's finished shards, and which dump each collection holds live on a second
# Volume, so that a run on a fresh container knows what the last one did. Not on the
# dataset's: a Volume's `commit()` reloads it, and a reload fails while files of that
# Volume are open, as the dataset is, memory-mapped by the other shards of the
# container. The state Volume holds no mapped file; its commits are taken one at a
# time per container (`STATE_LOCK`), never while a record is written.

STATE_DIR = "/state"
state_volume = modal.Volume.from_name("wiki-embed-state", create_if_missing=True)
STATE_LOCK = threading.Lock()
MANIFESTS_DIR = f"{STATE_DIR}/manifests"
RUNS_DIR = f"{STATE_DIR}/runs"
SNAPSHOTS_FILE = f"{STATE_DIR}/snapshots.json"
LOCAL_STATE_DIR = "/tmp/ingest-state"  # SQLite works on a local copy, checkpointed to the Volume
# One reindex of a collection at a time, across containers (a run's local lock file cannot see another's).
locks = modal.Dict.from_name("wiki-embed-locks", create_if_missing=True)


@app.function(image=cpu_image, volumes={DATA_DIR: dataset_volume}, cpu=8.0, memory=16 * 1024, timeout=3 * HOURS)
def download_dataset(config: str = DATASET_CONFIG) -> int:
    """Download one config of the dataset and save it on the Volume."""
    from datasets import load_dataset

    from ingest.errors import SourceError

    started = time.perf_counter()
    try:
        dataset = load_dataset(DATASET_NAME, config, split="train", num_proc=8)
    except ValueError as exc:  # datasets' "BuilderConfig '...' not found. Available: [...]"
        raise SourceError(
            f"{DATASET_NAME} has no config {config!r} ({str(exc)[:300]}): pick one it publishes "
            "(WIKI_SNAPSHOTS, --config)"
        ) from exc
    dataset.save_to_disk(dataset_path(config))
    dataset_volume.commit()  # other containers see the files only after a commit
    print(f"saved {len(dataset):,} articles to {dataset_path(config)} in {time.perf_counter() - started:,.0f} s")
    return len(dataset)


@app.function(image=cpu_image, volumes={DATA_DIR: dataset_volume}, timeout=5 * MINUTES)
def dataset_length(path: str) -> int:
    """Rows in the dataset saved at `path`, or -1 when there is none."""
    from datasets import load_from_disk

    dataset_volume.reload()  # pick up a download committed after this container started
    if not os.path.isdir(path):
        return -1
    return len(load_from_disk(path))


# ## Qdrant's address and key
#
# The workers write to Qdrant directly, so they need its URL and API key: a Modal
# Secret, created once with `modal secret create qdrant QDRANT_URL=... QDRANT_API_KEY=...`
# (and QDRANT_GRPC_PORT when gRPC is not one port above the URL's).

QDRANT_SECRET_NAME = "qdrant"
QDRANT_SECRET_KEYS = ["QDRANT_URL", "QDRANT_API_KEY"]
qdrant_secret = modal.Secret.from_name(QDRANT_SECRET_NAME, required_keys=QDRANT_SECRET_KEYS)


# The CUDA image's entrypoint script (TEI 1.9.1 and later) puts the CUDA forward-
# compatibility libraries on LD_LIBRARY_PATH when the host's driver is older than the
# image's CUDA 12.9, then execs the router: the router is started through it. The
# CPU image has none. (`WIKI_TEI_ENTRYPOINT` moves it, for the container rehearsal.)
TEI_ENTRYPOINT = os.environ.get("WIKI_TEI_ENTRYPOINT") or "/entrypoint.sh"


def tei_executable(entrypoint: str = TEI_ENTRYPOINT) -> tuple[str, ...]:
    """The image's entrypoint script where the image has one, else the bare router
    (said in the log: on a CUDA image that skips the compatibility libraries)."""
    if os.path.isfile(entrypoint):
        return (entrypoint,)
    print(f"no {entrypoint} in this image: starting text-embeddings-router itself", file=sys.stderr)
    return ("text-embeddings-router",)


def worker_config(*, cpu: bool = False):
    """How a container starts TEI and reaches Qdrant (`ingest.sharded.worker`): on an
    A10G for the load, or on the CPU for queries."""
    from ingest.sharded.tei_process import RouterConfig
    from ingest.sharded.worker import WorkerConfig

    router = RouterConfig(
        MODEL_ID,
        executable=("text-embeddings-router",) if cpu else tei_executable(),
        port=TEI_PORT,
        revision=MODEL_REVISION,
        huggingface_hub_cache=WEIGHTS_DIR,
        max_client_batch_size=32 if cpu else BATCH_SIZE,
        max_batch_tokens=16 * 512 if cpu else MAX_BATCH_TOKENS,
        # shards x requests, and the queries'; on a CPU, the endpoint's concurrent searches
        concurrent_requests=SEARCH_CONCURRENCY if cpu else SHARDS_PER_CONTAINER * TEI_CONCURRENCY + TEI_CONCURRENCY,
        dtype="float32" if cpu else "float16",
        tokenization_workers=None if cpu else TEI_TOKENIZATION_WORKERS,
    )
    return WorkerConfig(
        router,
        tokenizer=TOKENIZER_JSON,
        tei_concurrency=TEI_CONCURRENCY,
        startup_timeout=10 * MINUTES,
        env=dict(os.environ),
    )


def container_worker(*, cpu: bool = False):
    """This container's worker, started: its own TEI server, and Qdrant from the secret."""
    from ingest.sharded.worker import Worker

    return Worker(worker_config(cpu=cpu), name=os.environ.get("MODAL_TASK_ID", "local"), echo=sys.stderr).start()


# ## The GPU worker
#
# One container holds one A10G and one TEI server. `embed` serves queries (the
# caller adds the query instruction; this embeds exactly what it is given);
# `ingest_shard` runs a slice of the dataset through the pipeline. A failed shard
# raises `ShardError`, which names the shard so the driver can retry it; when the
# container's GPU or TEI server is broken (checked before every shard), it also
# stops fetching inputs, and Modal gives the work left to another container.


WORKER_CLASS = "GPUWorker"  # EmbedderSettings.modal_class: what `--embedder modal` looks up


@app.cls(
    gpu=GPU,
    image=tei_image,
    volumes={DATA_DIR: dataset_volume, STATE_DIR: state_volume},
    secrets=[qdrant_secret],
    cpu=CPU_PER_GPU,  # TEI tokenizes on its own threads while our pipeline chunks and writes
    memory=8 * 1024,
    max_containers=MAX_CONTAINERS,
    scaledown_window=SCALEDOWN,
    timeout=1 * HOURS,
)
@modal.concurrent(max_inputs=SHARDS_PER_CONTAINER)
class GPUWorker:
    @modal.enter()
    def start_server(self) -> None:
        self.worker = container_worker()

    @modal.exit()
    def stop_server(self) -> None:
        if getattr(self, "worker", None) is not None:
            self.worker.stop()

    @modal.method()
    def spec(self) -> dict:
        """The model spec the vectors are made with (`schemas.ModelSpec.to_dict()`)."""
        return self.worker.spec()

    @modal.method()
    def embed(self, texts: list[str]) -> list[list[float]]:
        return self.worker.embed(texts)

    @modal.method()
    def prepare_load(
        self, name: str, layout: dict, key: str, fresh: bool = False, drop_old: bool = False, trial: bool = False
    ):
        """Pick and create the collection the shards build (`ingest.sharded.load.LoadPlan`),
        with the shards an earlier attempt of this run finished."""
        from ingest.sharded.load import prepare_load

        with STATE_LOCK:
            state_volume.reload()  # the records an earlier attempt committed
        plan = prepare_load(
            self.worker.settings(name, layout, drop_old=drop_old),
            records_root=RUNS_DIR,
            key=key,
            fresh=fresh,
            trial=trial,
        )
        with STATE_LOCK:
            state_volume.commit()
        return plan

    @modal.method()
    def finish_load(self, name: str, layout: dict, plan, drop_old: bool = False, snapshot: str = "") -> str:
        """Once every shard landed and the collection is indexed: manifest, smoke query, alias."""
        from ingest.sharded.load import finish_load
        from ingest.sharded.reindex import SnapshotLog, VolumeState

        with STATE_LOCK:
            state_volume.reload()  # every shard's record
        state = VolumeState(MANIFESTS_DIR, LOCAL_STATE_DIR, commit=state_volume.commit)
        line = finish_load(
            self.worker.settings(name, layout, drop_old=drop_old),
            plan,
            state_dir=LOCAL_STATE_DIR,
            checkpoint=state.checkpoint,
            forget=state.forget,
            wait_seconds=10 * MINUTES,
        )  # `wait_until_indexed` did the long wait
        with STATE_LOCK:
            state.consolidate(plan.collection)
            if snapshot:
                SnapshotLog(SNAPSHOTS_FILE).record(plan.collection, snapshot)
            state_volume.commit()
        return line

    @modal.method()
    def ingest_shard(
        self, start: int, stop: int, dataset: str, collection: str, layout: dict, window: int, records: str = ""
    ):
        """Rows [start, stop) of the saved dataset into `collection`; returns a
        `ingest.sharded.shard.ShardResult`, recorded in the `records` folder when given."""
        from ingest.errors import ShardError
        from ingest.sharded.worker import records_folder

        try:
            return self.worker.ingest_shard(
                start,
                stop,
                dataset,
                collection,
                layout,
                window,
                records_folder(records),
                commit=state_volume.commit,
                lock=STATE_LOCK,
            )
        except ShardError as exc:
            if exc.broken and not modal.is_local():
                modal.experimental.stop_fetching_inputs()  # this container's GPU or TEI is broken: no more work
            raise


# ## The driver
#
# `modal run -m ingest.modal_app` runs `main` here, on your machine: it finds the
# dataset's length and hands the load to `ingest.sharded.driver.run_load`, the same
# driver `python -m ingest rehearse` runs over a local pool. The fleet below is what
# that driver calls on Modal: the GPU class's methods (the shards fanned out with
# `starmap`, exceptions returned as outputs), and the CPU container that waits for
# the index. It writes the dead letters (inputs that failed for good) to a local
# file and prints the run's report.

SHARD_SIZE = 5_000  # articles; small enough that a retry is cheap and the last wave is short
WINDOW = 2048  # chunks per embedder call inside a shard
SPARSE = "bm25"  # BM25 sparse vectors beside the dense ones (hybrid search); "none": dense only


class ModalFleet:
    """`ingest.sharded.driver.Fleet` on Modal."""

    def __init__(self) -> None:
        self.worker = GPUWorker()

    def prepare(self, request):
        return self.worker.prepare_load.remote(
            request.name, dict(request.layout), request.key, request.fresh, request.drop_old, request.trial
        )

    def run_round(self, request, plan, shards):
        inputs = [
            (start, stop, request.dataset, plan.collection, dict(request.layout), request.window, plan.records)
            for start, stop in shards
        ]
        return self.worker.ingest_shard.starmap(inputs, order_outputs=False, return_exceptions=True)

    def wait_until_indexed(self, collection: str) -> bool:
        return wait_until_indexed.remote(collection)

    def finish(self, request, plan) -> str:
        return self.worker.finish_load.remote(
            request.name, dict(request.layout), plan, request.drop_old, request.snapshot
        )


@app.local_entrypoint()
def main(
    config: str = DATASET_CONFIG,
    collection: str = "wikipedia",
    limit: int = 0,
    shard_size: int = SHARD_SIZE,
    max_rounds: int = 3,
    window: int = WINDOW,
    chunk_size: int = 1000,
    chunk_overlap: int = 0,
    dead_letter: str = "dead_letter.jsonl",
    gpu_price_per_hour: float = 0.0,
    drop_old: bool = False,
    fresh: bool = False,
    sparse: str = SPARSE,
):
    """Build `collection` from the dataset. `limit`: a trial on the first N articles,
    built under `<collection>-trial` (never the live name). `drop_old`: delete the
    collection this one replaces. `fresh`: ignore what an earlier attempt finished.
    `sparse`: "bm25" (lexical vectors for hybrid search) or "none".
    `gpu_price_per_hour`: for the cost (0: the A10G list price)."""
    from ingest.sharded.driver import (
        A10G_PRICE_PER_HOUR,
        LoadRequest,
        load_report,
        plan_shards,
        run_load,
        write_dead_letters,
    )
    from ingest.sharded.records import run_key

    path = dataset_path(config)
    rows = dataset_length.remote(path)
    if rows < 0:
        print(f"{path} is not on the volume yet: downloading {DATASET_NAME} {config} first")
        download_dataset.remote(config)
        rows = dataset_length.remote(path)
    if limit:
        rows = min(rows, limit)
    request = LoadRequest(
        dataset=path,
        rows=rows,
        key=run_key(config, rows, shard_size),
        collection=collection,
        snapshot=config,
        layout={"max_chars": chunk_size, "overlap_chars": chunk_overlap, "title_prefix": True, "sparse": sparse},
        shard_size=shard_size,
        window=window,
        max_rounds=max_rounds,
        trial=bool(limit),
        drop_old=drop_old,
        fresh=fresh,
        gpus=MAX_CONTAINERS,
        price_per_gpu_hour=gpu_price_per_hour or A10G_PRICE_PER_HOUR,
        idle_seconds=SCALEDOWN,
        dead_letter=dead_letter,
    )
    shards = plan_shards(rows, shard_size)
    print(
        f"{rows:,} articles in {len(shards):,} shards of {shard_size:,}, on up to {MAX_CONTAINERS} {GPU}s "
        f"(WIKI_EMBED_GPUS={MAX_CONTAINERS} in this shell)" + (f"; a trial, built as {request.name}" if limit else "")
    )
    outcome = run_load(ModalFleet(), request)
    if outcome.switched:
        print(outcome.switched)
    if appended := write_dead_letters(dead_letter, outcome):
        print(f"{appended:,} dead letters appended to {dead_letter}")
    print(load_report(outcome, request))
    if outcome.problem:
        raise SystemExit(outcome.problem)


# ## Keep the index fresh, on a schedule
#
# `reindex` brings the live collection up to date with a dump, incrementally: it
# reads every article but embeds only new and changed chunks, deletes the chunks
# and articles that are gone, and prints what it did. It chunks and builds lexical
# vectors as the live collection's build record says (whatever flags its load was
# given). One A10G container is enough for a month of edits; a new model or chunking
# is the sharded load's job (it refuses those). Its manifest lives on the state
# Volume; one reindex of a collection runs at a time (`locks`).
#
# `scheduled_reindex` is the one scheduled function of this app: on
# `WIKI_REINDEX_CRON` (read at deploy time) it picks the newest snapshot in
# `WIKI_SNAPSHOTS`, and when the live collection does not hold it yet, downloads it
# if needed and runs `reindex` on it; otherwise it says so and holds no GPU.

REINDEX_CRON = DEPLOY.reindex_cron  # Sundays, 03:00 UTC by default
SNAPSHOTS = DEPLOY.snapshots
REINDEX_TIMEOUT = 8 * HOURS


@app.function(
    gpu=GPU,
    image=tei_image,
    volumes={DATA_DIR: dataset_volume, STATE_DIR: state_volume},
    secrets=[qdrant_secret],
    cpu=4.0,
    memory=16 * 1024,
    timeout=REINDEX_TIMEOUT,
)
def reindex(config: str = "", collection: str = "wikipedia", window: int = WINDOW) -> str:
    """Reindex `collection` against the saved `config` dump (default: the newest of
    `WIKI_SNAPSHOTS`); returns the report."""
    from ingest.sharded.reindex import RunLock, SnapshotLog, VolumeState, live_layout, newest_snapshot, reindex_snapshot

    config = config or newest_snapshot(SNAPSHOTS)
    dataset_volume.reload()
    state_volume.reload()
    live, layout = live_layout(store_settings_from_env(os.environ, collection=collection))
    holder = os.environ.get("MODAL_TASK_ID", "local")
    with RunLock(locks, f"reindex:{collection}", holder, stale_seconds=REINDEX_TIMEOUT), container_worker() as worker:
        settings = dataclasses.replace(
            worker.settings(collection, layout, window), dead_letter=f"{STATE_DIR}/dead_letters/reindex-{config}.jsonl"
        )
        state = VolumeState(MANIFESTS_DIR, LOCAL_STATE_DIR, commit=state_volume.commit)
        summary = reindex_snapshot(dataset_path(config), settings, state=state)
        SnapshotLog(SNAPSHOTS_FILE).record(live, config)
        state_volume.commit()
    report = f"{config}: {summary.report()}"
    print(report)
    return report


# The container imports this module again, without the deploying shell's environment:
# the dataset and snapshots travel with the function (`env=`), or it would see the defaults.
@app.function(
    image=cpu_image,
    volumes={DATA_DIR: dataset_volume, STATE_DIR: state_volume},
    secrets=[qdrant_secret],
    schedule=modal.Cron(REINDEX_CRON),
    timeout=REINDEX_TIMEOUT + 1 * HOURS,
    env={"WIKI_SNAPSHOTS": ",".join(SNAPSHOTS), "WIKI_DATASET": DATASET_NAME},
)
def scheduled_reindex(collection: str = "wikipedia") -> str:
    """The newest configured snapshot, downloaded if needed and reindexed, unless the
    live collection holds it already."""
    from ingest.sharded.reindex import SnapshotLog, holds, live_layout, newest_snapshot

    config = newest_snapshot(SNAPSHOTS)
    state_volume.reload()
    live, _ = live_layout(store_settings_from_env(os.environ, collection=collection))
    if holds(held := SnapshotLog(SNAPSHOTS_FILE).get(live), config):
        answer = (
            f"{collection} ({live}) already holds {held}, as new as the newest of WIKI_SNAPSHOTS ({config}): "
            f"nothing to do (add a newer dump of {DATASET_NAME} to WIKI_SNAPSHOTS and deploy again)"
        )
        print(answer)
        return answer
    dataset_volume.reload()
    if not os.path.isdir(dataset_path(config)):
        download_dataset.remote(config)
    return reindex.remote(config=config, collection=collection)


# ## Search over HTTP
#
# `search_api` serves the HTTP search service of `search.server` (GET and POST
# /search, /health, /openapi.json, and the search page at /), a FastAPI application,
# from CPU containers. Each embeds its queries itself, with TEI on the CPU: the same
# model and revision as the GPU workers, without waiting for (or paying for) a GPU
# container to start after an idle spell. `WIKI_SEARCH_MIN_CONTAINERS` (default 1)
# stay warm, so a search never waits for a container to start (one core and 2 GiB
# held all month: docs/modal.md has the price; 0 lets it scale to zero). Qdrant is
# reached with the `qdrant` secret, and every search carries a bearer token, the
# `SEARCH_API_TOKEN` of a second secret, created once:
#
#     modal secret create search-api SEARCH_API_TOKEN=$(openssl rand -hex 32)
#     modal deploy -m ingest.modal_app    # prints the URL: https://<workspace>--wiki-embed-search-api.modal.run
#
# The collection (usually an alias) is `WIKI_SEARCH_COLLECTION`, read when you
# deploy; default "wikipedia". All the logic lives in `search.server`.

SEARCH_SECRET_NAME = "search-api"
SEARCH_TOKEN_KEY = env_name(ServeSettings, "token")  # SEARCH_API_TOKEN
search_secret = modal.Secret.from_name(SEARCH_SECRET_NAME, required_keys=[SEARCH_TOKEN_KEY])
SEARCH_COLLECTION = DEPLOY.search_collection
SEARCH_CONCURRENCY = 16  # searches one container serves at once

search_image = (
    modal.Image.from_registry(TEI_CPU_IMAGE, add_python="3.11")
    .entrypoint([])
    .pip_install(*RUNTIME_PACKAGES, *WEB_PACKAGES)
    .env(
        {
            "WIKI_SEARCH_COLLECTION": SEARCH_COLLECTION,
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HUGGINGFACE_HUB_CACHE": WEIGHTS_DIR,
        }
    )
    .run_function(download_weights)
    .add_local_python_source(*SOURCES, ignore=SHIPPED)
)


@app.function(
    image=search_image,
    secrets=[qdrant_secret, search_secret],
    cpu=1.0,  # a query's forward pass (bge-small, tens of tokens) and the searches
    memory=2048,
    min_containers=DEPLOY.search_min_containers,
    scaledown_window=5 * MINUTES,
    startup_timeout=10 * MINUTES,
    timeout=2 * MINUTES,
)
@modal.concurrent(max_inputs=SEARCH_CONCURRENCY)  # health checks need not queue behind a search
@modal.asgi_app()
def search_api():
    """The FastAPI application of `search.server`, over the collection in Qdrant, with
    queries embedded by this container's own TEI (on the CPU)."""
    import atexit

    from search.api import Searcher
    from search.server import make_app

    worker = container_worker(cpu=True)
    atexit.register(worker.stop)
    store = store_settings_from_env(os.environ, collection=SEARCH_COLLECTION)
    embedder = EmbedderSettings(embedder="tei", tei_url=worker.router.url, model=MODEL_ID, tei_retry_budget=10.0)
    searcher = Searcher.open(store, embedder)  # held for the container's life: one client, one embedder
    return make_app(searcher, token=os.environ[SEARCH_TOKEN_KEY])


# ## Wait for the index before the switch
#
# A bulk load defers indexing; the server builds the graph once the load is over,
# which on ~23M points takes longer than any search should wait. The driver waits
# for the collection to report green with its optimizer idle here, on a small CPU
# container, before the GPU class checks it and moves the alias.

INDEX_WAIT = 5 * HOURS + 30 * MINUTES


@app.function(image=cpu_image, secrets=[qdrant_secret], cpu=1.0, memory=1024, timeout=6 * HOURS)
def wait_until_indexed(collection: str, seconds: int = INDEX_WAIT) -> bool:
    """Turn `collection`'s indexing on (if the load deferred it) and wait up to
    `seconds` for Qdrant to finish; True once it is green and its optimizer idle."""
    from ingest.store import open_store

    store = open_store(store_settings_from_env(os.environ, collection=collection))
    try:
        return store.finish_bulk_load(wait_seconds=seconds)
    finally:
        store.close()


# ## Go or no-go, before the money is spent
#
# `modal run -m ingest.modal_app::preflight` runs `ingest.preflight`'s checks on one
# A10G with a worker's own TEI (started as the workers start it) against the Qdrant
# of the `qdrant` secret, plus what only a container can check: the secrets' keys,
# TEI started through the image's entrypoint, the dataset on its Volume, a commit of
# the state Volume while the dataset is mapped, and the deployed class embedding
# alike. A few minutes; it prints a table of checks, the measured rates, the projected
# full run (load, index, switch, cost) and GO or NO-GO.


# The container imports this module without the shell's environment: WIKI_EMBED_GPUS travels with the function.
@app.function(
    gpu=GPU,
    image=tei_image,
    volumes={DATA_DIR: dataset_volume, STATE_DIR: state_volume},
    secrets=[qdrant_secret, search_secret],
    cpu=4.0,
    memory=8 * 1024,
    timeout=30 * MINUTES,
    env={"WIKI_EMBED_GPUS": str(MAX_CONTAINERS)},
)
def preflight(config: str = DATASET_CONFIG, articles: int = 300, gpus: int = 0, qdrant_seconds: float = 20.0) -> str:
    """The checks of `python -m ingest preflight`, and the container's; returns the table.
    `gpus`: for the projection (0: WIKI_EMBED_GPUS of the shell that runs this)."""
    from ingest import preflight as checks
    from ingest.sharded import checks as container_checks

    dataset_volume.reload()
    worker = container_worker()
    try:
        settings = worker.settings("preflight", {"max_chars": 1000, "sparse": SPARSE}, window=WINDOW)
        rows, dataset_check = container_checks.check_dataset(dataset_path(config), articles)
        extra = [
            (
                "secrets are present",
                lambda: container_checks.check_secrets(
                    os.environ, {QDRANT_SECRET_NAME: QDRANT_SECRET_KEYS, SEARCH_SECRET_NAME: [SEARCH_TOKEN_KEY]}
                ),
            ),
            (
                "TEI started by its entrypoint",
                lambda: container_checks.check_entrypoint(worker.router.command, TEI_ENTRYPOINT),
            ),
            (
                "Volume commit, dataset mapped",
                lambda: container_checks.check_commit_while_mapped(
                    dataset_path(config), state_volume.commit, dataset_volume.commit
                ),
            ),
            (
                "deployed class embeds alike",
                lambda: container_checks.check_deployed_class(
                    lambda: modal.Cls.from_name(APP_NAME, WORKER_CLASS)(), worker.embedder
                ),
            ),
        ]
        results = checks.run_preflight(
            settings,
            rows,
            expect_model=MODEL_ID,
            expect_revision=MODEL_REVISION,
            gpus=gpus or MAX_CONTAINERS,
            qdrant_seconds=qdrant_seconds,
            extra=[("the dataset is on its Volume", lambda: dataset_check), *extra],
        )
    finally:
        worker.stop()
    text = checks.report(results)
    print(text)
    return text
