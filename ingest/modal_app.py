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
# without Modal; this file declares the infrastructure around it. It is one file
# on purpose, read top to bottom like Modal's own examples (over 500 lines, much
# of it these comments), and `tests/test_layers.py` exempts it from the size limit.
#
#     modal secret create qdrant QDRANT_URL=https://... QDRANT_API_KEY=...
#     modal secret create search-api SEARCH_API_TOKEN=$(openssl rand -hex 32)
#     modal run -m ingest.modal_app::download_dataset --config 20231101.en
#     modal deploy -m ingest.modal_app       # `Embedder` callable by name, and the reindex schedule
#     WIKI_EMBED_GPUS=100 modal run -m ingest.modal_app --limit 20000   # a trial on the first 20,000
#     WIKI_EMBED_GPUS=100 modal run -m ingest.modal_app                 # the whole corpus (resumable)
#     modal run -m ingest.modal_app::reindex --config 20231201.en   # an incremental reindex, now
#
# Both secrets must exist before any `modal run` of this app: a run creates every
# function the app declares, the search endpoint's with its secret.
#
# `WIKI_EMBED_GPUS` sets how many A10Gs may run at once, read where the app is
# built: `modal run` builds an app of its own from this file, so set it in the shell
# that runs the load (a deploy's value applies to the deployed class only). The
# deploy also schedules one function, `scheduled_reindex` (`WIKI_REINDEX_CRON`,
# Sundays at 03:00 UTC by default), which reindexes the newest of the configured
# snapshots (`WIKI_SNAPSHOTS`) incrementally.
#
# Only `modal` and the standard-library settings module are imported at the top,
# so the file imports (and deploys) on a machine that has nothing else installed;
# everything else (numpy, qdrant-client, datasets...) is imported inside the
# functions that run in the containers, where the image has it.

import dataclasses
import json
import os
import sys
import threading
import time
from pathlib import Path

import modal

from ingest.settings import (
    EmbedderSettings,
    deploy_settings,
    shard_settings,
    store_settings_from_env,
)

# What the deploying shell sets (WIKI_EMBED_GPUS, WIKI_REINDEX_CRON, WIKI_SNAPSHOTS,
# WIKI_SEARCH_COLLECTION), read once, here, by the one settings parser.
DEPLOY = deploy_settings(os.environ)

APP_NAME = "wiki-embed"  # EmbedderSettings.modal_app's default
app = modal.App(APP_NAME)

MINUTES = 60  # seconds
HOURS = 60 * MINUTES


# ## The model and the server that runs it
#
# BAAI/bge-small-en-v1.5: 384 dimensions, CLS pooling, 512 tokens; the revision
# is pinned so that every container, and every later run, embeds with the same
# weights. TEI publishes one image per GPU architecture; `86-` is Ampere's SM 8.6,
# the A10G's.

MODEL_ID = "BAAI/bge-small-en-v1.5"
MODEL_REVISION = "5c38ec7c405ec4b44b94cc5a9bb96e735b38267a"
TEI_IMAGE = "ghcr.io/huggingface/text-embeddings-inference:86-1.9"
GPU = "A10G"
TEI_PORT = 8000

# A request carries up to 512 chunks, and a batch on the GPU up to 512 x 512
# tokens, as in the reference run. Each container works on a few shards at once so
# that the GPU always has a batch waiting while Python chunks and writes the next.
BATCH_SIZE = 512
MAX_BATCH_TOKENS = 512 * 512
SHARDS_PER_CONTAINER = 4
TEI_CONCURRENCY = 8  # requests in flight from one shard's embedder
MAX_CONTAINERS = DEPLOY.gpus

# ## Cache the model weights in the image
#
# The weights are downloaded once, when the image is built, into a Hugging Face
# hub cache inside the image; TEI reads them from there with
# `--huggingface-hub-cache`, so a cold start downloads no weights.

WEIGHTS_DIR = "/weights"
TOKENIZER_JSON = f"{WEIGHTS_DIR}/models--{MODEL_ID.replace('/', '--')}/snapshots/{MODEL_REVISION}/tokenizer.json"


def pin_revision(cache_dir: str, model_id: str, revision: str) -> str:
    """Record `revision` under `refs/` in a hub cache, as a download by branch
    name would have. `huggingface_hub` writes `refs/<name>` only for branch and
    tag names, while TEI's hub client finds cached files only through
    `refs/<revision>`: without this file it fetches a commit-pinned model again."""
    repo = os.path.join(cache_dir, "models--" + model_id.replace("/", "--"))
    if not os.path.isdir(os.path.join(repo, "snapshots", revision)):
        raise FileNotFoundError(f"{model_id}@{revision} is not in the hub cache at {cache_dir}")
    refs = os.path.join(repo, "refs")
    os.makedirs(refs, exist_ok=True)
    path = os.path.join(refs, revision)
    with open(path, "w") as handle:
        handle.write(revision)
    return path


def download_weights() -> None:
    """Runs once, while the image is built: the files TEI loads, at the pinned revision."""
    from huggingface_hub import snapshot_download

    snapshot_download(
        MODEL_ID,
        revision=MODEL_REVISION,
        cache_dir=WEIGHTS_DIR,
        allow_patterns=["*.json", "*.safetensors", "*.txt"],  # no ONNX or PyTorch copies
    )
    pin_revision(WEIGHTS_DIR, MODEL_ID, MODEL_REVISION)


# The TEI image starts the router as its entrypoint; Modal needs to start Python,
# so the entrypoint is cleared and our code starts the router itself, through the
# image's entrypoint script (see `tei_executable` below). The Python
# packages are the ones the ingest pipeline imports, pinned.

RUNTIME_PACKAGES = (
    "datasets==5.2.0",
    "httpx==0.28.1",
    "huggingface_hub==2.4.0",
    "numpy==2.4.6",
    "orjson==3.13.0",
    "qdrant-client==1.20.0",
    "qdrant-edge-py==0.9.0",  # Qdrant's standard BM25: the workers' and the search's lexical vectors
    "tenacity==9.2.1",
    "tokenizers==0.23.3",  # the chunker counts tokens with the served model's tokenizer.json
)

tei_image = (
    modal.Image.from_registry(TEI_IMAGE, add_python="3.11")
    .entrypoint([])
    .pip_install(*RUNTIME_PACKAGES)
    .env({"HF_HUB_DISABLE_TELEMETRY": "1"})
    .run_function(download_weights)
    .add_local_python_source("schemas", "ingest", "search")
)

# ## Keep the articles in a Volume
#
# The `wikimedia/wikipedia` dump is downloaded once and saved with
# `save_to_disk`, so each container memory-maps its slice instead of downloading.

DATASET_NAME = "wikimedia/wikipedia"
DATASET_CONFIG = "20231101.en"
DATA_DIR = "/data"
dataset_volume = modal.Volume.from_name("wiki-embed-data", create_if_missing=True)
data_image = modal.Image.debian_slim(python_version="3.11").pip_install("datasets==5.2.0")


def dataset_path(config: str) -> str:
    return f"{DATA_DIR}/wikipedia-{config}"


# ## Remember what is indexed, on a Volume of its own
#
# The manifests (one SQLite file per physical collection: what each holds) and the
# records of the sharded load's finished shards live on a second Volume, so that a
# run on a fresh container knows what the last one did (`ingest.sharded.records`).
# Not on the dataset's: a Volume's `commit()` reloads it, and a reload fails while
# files of that Volume are open, as the dataset is, memory-mapped by the other
# shards of the container. The state Volume holds no mapped file; its commits are
# taken one at a time per container (`STATE_LOCK`), never while a record is written.

STATE_DIR = "/state"
state_volume = modal.Volume.from_name("wiki-embed-state", create_if_missing=True)
STATE_LOCK = threading.Lock()
MANIFESTS_DIR = f"{STATE_DIR}/manifests"
RUNS_DIR = f"{STATE_DIR}/runs"
LOCAL_STATE_DIR = "/tmp/ingest-state"  # SQLite works on a local copy, checkpointed to the Volume


@app.function(image=data_image, volumes={DATA_DIR: dataset_volume}, cpu=8.0, memory=16 * 1024, timeout=3 * HOURS)
def download_dataset(config: str = DATASET_CONFIG) -> int:
    """Download one `wikimedia/wikipedia` config and save it on the Volume."""
    from datasets import load_dataset

    started = time.perf_counter()
    dataset = load_dataset(DATASET_NAME, config, split="train", num_proc=8)
    dataset.save_to_disk(dataset_path(config))
    dataset_volume.commit()  # other containers see the files only after a commit
    print(f"saved {len(dataset):,} articles to {dataset_path(config)} in {time.perf_counter() - started:,.0f} s")
    return len(dataset)


@app.function(image=data_image, volumes={DATA_DIR: dataset_volume}, timeout=5 * MINUTES)
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
# Secret, created once with `modal secret create qdrant QDRANT_URL=... QDRANT_API_KEY=...`.

QDRANT_SECRET_NAME = "qdrant"
QDRANT_SECRET_KEYS = ["QDRANT_URL", "QDRANT_API_KEY"]
qdrant_secret = modal.Secret.from_name(QDRANT_SECRET_NAME, required_keys=QDRANT_SECRET_KEYS)


# The CUDA image's entrypoint script (TEI 1.9.1 and later) puts the CUDA forward-
# compatibility libraries on LD_LIBRARY_PATH when the host's driver is older than the
# image's CUDA 12.9, then execs the router: the router is started through it.
TEI_ENTRYPOINT = "/entrypoint.sh"


def tei_executable(entrypoint: str = TEI_ENTRYPOINT) -> tuple[str, ...]:
    """The image's entrypoint script where the image has one, else the bare router."""
    return (entrypoint,) if os.path.isfile(entrypoint) else ("text-embeddings-router",)


def router_config():
    """How each container starts TEI (see `ingest.sharded.router.RouterConfig`)."""
    from ingest.sharded.router import RouterConfig

    return RouterConfig(
        MODEL_ID,
        executable=tei_executable(),
        port=TEI_PORT,
        revision=MODEL_REVISION,
        huggingface_hub_cache=WEIGHTS_DIR,
        max_client_batch_size=BATCH_SIZE,
        max_batch_tokens=MAX_BATCH_TOKENS,
        concurrent_requests=SHARDS_PER_CONTAINER * TEI_CONCURRENCY + TEI_CONCURRENCY,  # + queries
        dtype="float16",
    )


def container_router():
    """This container's TEI server (not started yet), its environment cleared of the
    variables TEI would read as flags (a secret's API_KEY, say)."""
    from ingest.sharded.router import Router, router_environment

    return Router.from_config(router_config(), startup_timeout=10 * MINUTES, echo=sys.stderr,
                              env=router_environment(os.environ))


# ## The GPU worker
#
# One container holds one A10G and one TEI server. `embed` serves queries for
# search (the caller adds the query instruction; this embeds exactly what it is
# given); `ingest_shard` runs a slice of the dataset through the pipeline.
# A failed shard raises `ShardError`, which names the shard so the driver can
# retry it.


@app.cls(
    gpu=GPU,
    image=tei_image,
    volumes={DATA_DIR: dataset_volume, STATE_DIR: state_volume},
    secrets=[qdrant_secret],
    cpu=4.0,  # TEI tokenizes on its own threads while our pipeline chunks and writes
    memory=8 * 1024,
    max_containers=MAX_CONTAINERS,
    scaledown_window=2 * MINUTES,
    timeout=1 * HOURS,
)
@modal.concurrent(max_inputs=SHARDS_PER_CONTAINER)
class Embedder:
    @modal.enter()
    def start_server(self) -> None:
        from ingest.embedders import make_embedder

        self.router = container_router().start()
        try:
            self.embedder = make_embedder(EmbedderSettings(embedder="tei", tei_url=self.router.url,
                                                           tei_concurrency=TEI_CONCURRENCY, model=MODEL_ID))
        except BaseException:
            self.router.stop()
            raise

    @modal.exit()
    def stop_server(self) -> None:
        if getattr(self, "embedder", None) is not None:
            self.embedder.close()
        if getattr(self, "router", None) is not None:
            self.router.stop()

    @modal.method()
    def spec(self) -> dict:
        """The model spec the vectors are made with (`schemas.ModelSpec.to_dict()`)."""
        return self.embedder.spec.to_dict()

    @modal.method()
    def embed(self, texts: list[str]) -> list[list[float]]:
        from ingest.sharded.shard import embed_texts

        return embed_texts(self.embedder, texts)

    def _settings(self, collection: str, layout: dict, window: int = 2048, drop_old: bool = False):
        """`layout`: the chunker's settings, and "sparse" (the lexical vectors' kind)."""
        chunking = dict(layout)
        sparse = chunking.pop("sparse", SPARSE)
        return shard_settings(os.environ, tei_url=self.router.url, collection=collection, model=MODEL_ID,
                              chunking=chunking, window=window, tei_concurrency=TEI_CONCURRENCY, drop_old=drop_old,
                              tei_tokenizer=TOKENIZER_JSON, sparse=sparse)

    @modal.method()
    def prepare_load(self, collection: str, chunking: dict, key: str, fresh: bool = False, drop_old: bool = False):
        """Pick and create the collection the shards build (`ingest.sharded.load.LoadPlan`),
        with the shards an earlier attempt of this run finished."""
        from ingest.sharded.load import prepare_load

        with STATE_LOCK:
            state_volume.reload()  # the records an earlier attempt committed
        plan = prepare_load(self._settings(collection, chunking, drop_old=drop_old), records_root=RUNS_DIR,
                            key=key, fresh=fresh)
        with STATE_LOCK:
            state_volume.commit()
        return plan

    @modal.method()
    def finish_load(self, collection: str, chunking: dict, plan, drop_old: bool = False,
                    partial: bool = False) -> str:
        """Once every shard landed: manifest, HNSW graph, smoke query, alias."""
        from ingest.sharded.load import finish_load
        from ingest.sharded.reindex import VolumeState

        with STATE_LOCK:
            state_volume.reload()  # every shard's record
        state = VolumeState(MANIFESTS_DIR, LOCAL_STATE_DIR, commit=state_volume.commit)
        return finish_load(self._settings(collection, chunking, drop_old=drop_old), plan,
                           state_dir=LOCAL_STATE_DIR, checkpoint=state.checkpoint, partial=partial,
                           wait_seconds=10 * MINUTES)  # `wait_until_indexed` did the long wait

    @modal.method()
    def ingest_shard(self, start: int, stop: int, dataset: str, collection: str, chunking: dict, window: int,
                     records: str = ""):
        """Rows [start, stop) of the saved dataset into `collection`; returns a
        `ingest.sharded.shard.ShardResult`, recorded in the `records` folder when given."""
        from ingest.errors import ShardError
        from ingest.sharded.records import ShardRecords, ingest_recorded_shard

        try:
            settings = self._settings(collection, chunking, window)  # Qdrant's URL and key: the secret
            return ingest_recorded_shard(dataset, start, stop, settings=settings,
                                         records=ShardRecords(Path(records)) if records else None,
                                         commit=state_volume.commit, lock=STATE_LOCK)
        except Exception as exc:
            raise ShardError(start, stop, f"{type(exc).__name__}: {exc}") from exc


# ## The driver
#
# `modal run -m ingest.modal_app` runs `main` here, on your machine: it finds the
# dataset's length, cuts it into shards, asks which collection to build (a new
# one, beside the live one), skips the shards an earlier attempt of the same run
# recorded as finished, fans the others out over the GPU containers, runs the
# failed shards again (a few rounds at most), and once all have landed has the
# collection checked and the alias moved onto it. It writes the dead letters
# (inputs that failed for good) to a local file and prints the run's report.

SHARD_SIZE = 5_000  # articles; small enough that a retry is cheap and the last wave is short
WINDOW = 2048  # chunks per embedder call inside a shard
SPARSE = "bm25"  # BM25 sparse vectors beside the dense ones (hybrid search); "none": dense only


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
    """Build `collection` from the dataset. `limit`: only the first N articles (0:
    all; a partial build does not replace a live collection). `drop_old`: delete the
    collection this one replaces. `fresh`: ignore what an earlier attempt finished.
    `sparse`: "bm25" (lexical vectors for hybrid search) or "none".
    `gpu_price_per_hour`: for the cost estimate (0: the A10G list price)."""
    from ingest.sharded.driver import (
        A10G_PRICE_PER_HOUR,
        plan_shards,
        run_report,
        run_shards,
    )
    from ingest.sharded.records import run_key
    from ingest.sharded.shard import ShardResult

    path = dataset_path(config)
    rows = dataset_length.remote(path)
    if rows < 0:
        print(f"{path} is not on the volume yet: downloading {DATASET_NAME} {config} first")
        download_dataset.remote(config)
        rows = dataset_length.remote(path)
    if limit:
        rows = min(rows, limit)
    shards = plan_shards(rows, shard_size)
    gpus = max(1, min(MAX_CONTAINERS, -(-len(shards) // SHARDS_PER_CONTAINER)))
    print(f"{rows:,} articles in {len(shards):,} shards of {shard_size:,}, on up to {gpus} {GPU}s "
          f"(WIKI_EMBED_GPUS={MAX_CONTAINERS} in this shell)")

    chunking = {"max_chars": chunk_size, "overlap_chars": chunk_overlap, "title_prefix": True, "sparse": sparse}
    worker = Embedder()
    plan = worker.prepare_load.remote(collection, chunking, run_key(config, rows, shard_size), fresh, drop_old)
    finished = {result.shard: result for result in plan.finished}
    pending = [shard for shard in shards if shard not in finished]
    print(f"building {plan.collection} for {plan.name}" + (f" (live now: {plan.live})" if plan.live else "")
          + (f"; {len(finished):,} shards already done by an earlier attempt" if finished else ""))

    def run_round(pending):
        inputs = [(start, stop, path, plan.collection, chunking, window, plan.records) for start, stop in pending]
        return worker.ingest_shard.starmap(inputs, order_outputs=False, return_exceptions=True)

    done = len(finished)

    def report_progress(output) -> None:
        nonlocal done
        if isinstance(output, ShardResult):
            done += 1
            print(f"[{done:,}/{len(shards):,}] shard [{output.start}, {output.stop}): "
                  f"{output.summary.chunks:,} chunks in {output.summary.seconds:,.0f} s")
        else:
            print(f"failed: {type(output).__name__}: {output}")

    started = time.perf_counter()
    run = run_shards(pending, run_round, max_rounds=max_rounds, on_output=report_progress)
    if not run.failed:  # complete: wait for its index (on a CPU), check it and move the alias onto it
        if not wait_until_indexed.remote(plan.collection):
            raise SystemExit(f"{plan.collection} was still building its index after {INDEX_WAIT:,} s; the alias "
                             "did not move. Run the same command again: it waits again, then switches")
        print(worker.finish_load.remote(collection, chunking, plan, drop_old, partial=bool(limit)))
    wall = time.perf_counter() - started

    if run.dead_letters:
        with open(dead_letter, "a", encoding="utf-8") as handle:
            for record in run.dead_letters:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        print(f"{len(run.dead_letters):,} dead letters appended to {dead_letter}")
    if finished:  # the report's rates are this attempt's: the skipped shards took none of its time
        print(f"{len(finished):,} shards finished by an earlier attempt were skipped")
    print(run_report(run.results, wall, gpus, gpu_price_per_hour or A10G_PRICE_PER_HOUR, failed=run.failed))
    if run.failed:
        raise SystemExit(f"{len(run.failed)} shards failed after {run.rounds} rounds; the alias did not move. "
                         "Run the same command again: it retries only those")


# ## Keep the index fresh, on a schedule
#
# `reindex` brings the live collection up to date with a dump, incrementally: it
# reads every article but embeds only new and changed chunks, deletes the chunks
# and articles that are gone, and prints what it did. One A10G container is
# enough for a month of edits; a new model or chunking is the sharded load's job
# (it refuses those). Its manifest lives on the Volume, checkpointed every few
# minutes, so that a container lost half-way costs little on the next run.
#
# `scheduled_reindex` is the one scheduled function of this app: on
# `WIKI_REINDEX_CRON` (read at deploy time) it picks the newest snapshot in
# `WIKI_SNAPSHOTS` (comma-separated configs), downloads it if it is not on the
# Volume yet, and runs `reindex` on it.

REINDEX_CRON = DEPLOY.reindex_cron  # Sundays, 03:00 UTC by default
SNAPSHOTS = DEPLOY.snapshots


@app.function(
    gpu=GPU,
    image=tei_image,
    volumes={DATA_DIR: dataset_volume, STATE_DIR: state_volume},
    secrets=[qdrant_secret],
    cpu=4.0,
    memory=16 * 1024,
    timeout=8 * HOURS,
)
def reindex(config: str = DATASET_CONFIG, collection: str = "wikipedia", chunk_size: int = 1000,
            chunk_overlap: int = 0, window: int = WINDOW) -> str:
    """Reindex `collection` against the saved `config` dump; returns the report."""
    from ingest.sharded.reindex import VolumeState, reindex_snapshot

    dataset_volume.reload()
    chunking = {"max_chars": chunk_size, "overlap_chars": chunk_overlap, "title_prefix": True}
    with container_router() as router:
        settings = shard_settings(os.environ, tei_url=router.url, collection=collection, model=MODEL_ID,
                                  chunking=chunking, window=window, tei_concurrency=TEI_CONCURRENCY,
                                  tei_tokenizer=TOKENIZER_JSON, sparse=SPARSE)
        settings = dataclasses.replace(settings, dead_letter=f"{STATE_DIR}/dead_letters/reindex-{config}.jsonl")
        state = VolumeState(MANIFESTS_DIR, LOCAL_STATE_DIR, commit=state_volume.commit)
        summary = reindex_snapshot(dataset_path(config), settings, state=state)
    report = f"{config}: {summary.report()}"
    print(report)
    return report


# The container imports this module again, without the deploying shell's environment:
# the snapshots travel with the function (`env=`), or it would always see the default.
@app.function(image=tei_image, volumes={DATA_DIR: dataset_volume}, schedule=modal.Cron(REINDEX_CRON),
              timeout=12 * HOURS, env={"WIKI_SNAPSHOTS": ",".join(SNAPSHOTS)})
def scheduled_reindex() -> str:
    """The newest configured snapshot, downloaded if needed, reindexed."""
    from ingest.sharded.reindex import newest_snapshot

    config = newest_snapshot(SNAPSHOTS)
    dataset_volume.reload()
    if not os.path.isdir(dataset_path(config)):
        download_dataset.remote(config)
    return reindex.remote(config=config)


# ## Search over HTTP
#
# `search_api` serves the HTTP search service of `search.server` (GET and POST
# /search, /health, /openapi.json, and the search page at /), a FastAPI
# application, from small CPU containers: no GPU of its own. Queries are embedded
# by the deployed `Embedder` class above (looked up by name, as `python -m search
# --embedder modal` does, so with the collection's model and query instruction) and
# searched in Qdrant with the `qdrant` secret. Every search carries a bearer token,
# the `SEARCH_API_TOKEN` of a second secret, created once:
#
#     modal secret create search-api SEARCH_API_TOKEN=$(openssl rand -hex 32)
#     modal deploy -m ingest.modal_app    # prints the URL: https://<workspace>--wiki-embed-search-api.modal.run
#
# The collection (usually an alias) is `WIKI_SEARCH_COLLECTION`, read when you
# deploy; default "wikipedia". All the logic lives in `search.server`; this only
# wires it to the secrets. The web packages are pinned to the versions it is tested with.

SEARCH_SECRET_NAME = "search-api"
SEARCH_TOKEN_KEY = "SEARCH_API_TOKEN"  # search.server.TOKEN_ENV
search_secret = modal.Secret.from_name(SEARCH_SECRET_NAME, required_keys=[SEARCH_TOKEN_KEY])
SEARCH_COLLECTION = DEPLOY.search_collection
EMBEDDER_CLASS = "Embedder"  # the class above, as EmbedderSettings.modal_class names it
WEB_PACKAGES = ("fastapi==0.165.0", "pydantic==2.14.4", "uvicorn==0.54.0")  # the search endpoint's, on top

search_image = (
    modal.Image.debian_slim(python_version="3.11")
    .pip_install(*RUNTIME_PACKAGES, *WEB_PACKAGES)
    .env({"WIKI_SEARCH_COLLECTION": SEARCH_COLLECTION})
    .add_local_python_source("schemas", "ingest", "search")
)


@app.function(
    image=search_image,
    secrets=[qdrant_secret, search_secret],
    cpu=1.0,
    memory=1024,
    scaledown_window=5 * MINUTES,
    startup_timeout=10 * MINUTES,  # opening the searcher may wait for a cold GPU container
    timeout=2 * MINUTES,
)
@modal.concurrent(max_inputs=16)  # health checks need not queue behind a search (searches take a semaphore)
@modal.asgi_app()
def search_api():
    """The FastAPI application of `search.server`, over the collection in Qdrant."""
    from search.api import Searcher
    from search.server import make_app

    # the collection: the deploying machine's, through the image's environment
    store = store_settings_from_env(os.environ, collection=SEARCH_COLLECTION)
    embedder = EmbedderSettings(embedder="modal", modal_app=APP_NAME, modal_class=EMBEDDER_CLASS)
    searcher = Searcher.open(store, embedder)  # held for the container's life: one client, one embedder
    return make_app(searcher, token=os.environ[SEARCH_TOKEN_KEY])


# ## Wait for the index before the switch
#
# A bulk load defers the HNSW graph; the server builds it once the load is over,
# which on ~41M points takes longer than any search should wait. The driver waits
# for the collection to report green here, on a small CPU container, before the GPU
# class checks it and moves the alias.

INDEX_WAIT = 5 * HOURS + 30 * MINUTES


@app.function(image=search_image, secrets=[qdrant_secret], cpu=1.0, memory=1024, timeout=6 * HOURS)
def wait_until_indexed(collection: str, seconds: int = INDEX_WAIT) -> bool:
    """Turn `collection`'s graph on (if the load deferred it) and wait up to `seconds`
    for Qdrant to finish indexing it; True once it reports green."""
    from ingest.store import open_store

    store = open_store(store_settings_from_env(os.environ, collection=collection))
    try:
        return store.finish_bulk_load(wait_seconds=seconds)
    finally:
        store.close()


# ## Check everything before the money is spent
#
# `modal run -m ingest.modal_app::preflight` runs `ingest.preflight`'s checks on one
# A10G with the workers' own TEI (started as they start it) against the Qdrant of the
# `qdrant` secret, plus what only a container can check: the secrets' keys, a commit
# of the state Volume while the dataset is mapped, and the deployed class embedding
# alike. A few minutes; it prints a table of checks and the projected full run.


@app.function(gpu=GPU, image=tei_image, volumes={DATA_DIR: dataset_volume, STATE_DIR: state_volume},
              secrets=[qdrant_secret, search_secret], cpu=4.0, memory=8 * 1024, timeout=30 * MINUTES)
def preflight(config: str = DATASET_CONFIG, articles: int = 300) -> str:
    """The checks of `python -m ingest preflight`, and the container's; returns the table."""
    from ingest.embedders import make_embedder
    from ingest.preflight import (
        check_commit_while_mapped,
        check_deployed_class,
        check_secrets,
        report,
        run_preflight,
    )

    dataset_volume.reload()
    with container_router() as router:
        settings = shard_settings(os.environ, tei_url=router.url, model=MODEL_ID, tei_tokenizer=TOKENIZER_JSON,
                                  tei_concurrency=TEI_CONCURRENCY, window=WINDOW)
        embedder = make_embedder(settings.embedder)
        try:
            extra = [
                ("secrets are present", lambda: check_secrets(os.environ, {
                    QDRANT_SECRET_NAME: QDRANT_SECRET_KEYS, SEARCH_SECRET_NAME: [SEARCH_TOKEN_KEY]})),
                ("Volume commit, dataset mapped", lambda: check_commit_while_mapped(
                    dataset_path(config), state_volume.commit, dataset_volume.commit)),
                ("deployed class embeds alike", lambda: check_deployed_class(
                    lambda: modal.Cls.from_name(APP_NAME, EMBEDDER_CLASS)(), embedder)),
            ]
            checks = run_preflight(settings, expect_model=MODEL_ID, expect_revision=MODEL_REVISION,
                                   articles=articles, gpus=MAX_CONTAINERS, extra=extra)
        finally:
            embedder.close()
    text = report(checks)
    print(text)
    return text
