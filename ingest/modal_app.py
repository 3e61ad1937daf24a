# # Embed English Wikipedia on Modal A10Gs, straight into Qdrant
#
# Modal's January 2024 example embedded Wikipedia on 100 A10Gs in about fifteen
# minutes, then held every vector in the driver's memory. Here each GPU container
# runs Hugging Face's Text Embeddings Inference (TEI) server next to our ordinary
# ingest pipeline, and writes its points to Qdrant itself: nothing travels back to
# the driver but counts and the inputs that failed. Point ids are deterministic, so
# a shard that is retried overwrites its own points instead of duplicating them.
#
# The work each container does lives in `ingest.worker`, plain Python tested
# without Modal; this file declares the infrastructure around it.
#
#     modal secret create qdrant QDRANT_URL=https://... QDRANT_API_KEY=...
#     modal run -m ingest.modal_app::download_dataset --config 20231101.en
#     modal deploy -m ingest.modal_app       # makes `Embedder` callable by name (search)
#     modal run -m ingest.modal_app --limit 20000     # a trial on the first 20,000 articles
#     modal run -m ingest.modal_app                   # the whole corpus
#
# `WIKI_EMBED_GPUS=100 modal deploy -m ingest.modal_app` sets how many A10Gs may
# run at once. This app has no schedule: a deploy starts nothing by itself.
#
# Only `modal` is imported at the top, so the file imports (and deploys) on a
# machine that has nothing else installed; everything else is imported where it runs.

import os
import time

import modal

APP_NAME = "wiki-embed"  # EmbedderSettings.modal_app's default
app = modal.App(APP_NAME)

MINUTES = 60  # seconds
HOURS = 60 * MINUTES


def _env_int(name: str, default: int) -> int:
    """A positive integer from the deploying machine's environment."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{name}={raw!r} must be a positive whole number")
    return int(raw)


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
MAX_CONTAINERS = _env_int("WIKI_EMBED_GPUS", 10)

# ## Cache the model weights in the image
#
# The weights are downloaded once, when the image is built, into a Hugging Face
# hub cache inside the image; TEI reads them from there with
# `--huggingface-hub-cache`, so a cold start downloads no weights.

WEIGHTS_DIR = "/weights"


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
# so the entrypoint is cleared and our code starts the router itself. The Python
# packages are the ones the ingest pipeline imports, pinned.

RUNTIME_PACKAGES = (
    "datasets==5.2.0",
    "httpx==0.28.1",
    "huggingface_hub==2.4.0",
    "numpy==2.4.6",
    "orjson==3.13.0",
    "qdrant-client==1.20.0",
    "tenacity==9.2.1",
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


def router_config():
    """How each container starts TEI (see `ingest.worker.RouterConfig`)."""
    from ingest.worker import RouterConfig

    return RouterConfig(
        MODEL_ID,
        port=TEI_PORT,
        revision=MODEL_REVISION,
        huggingface_hub_cache=WEIGHTS_DIR,
        max_client_batch_size=BATCH_SIZE,
        max_batch_tokens=MAX_BATCH_TOKENS,
        concurrent_requests=SHARDS_PER_CONTAINER * TEI_CONCURRENCY + TEI_CONCURRENCY,  # + queries
        dtype="float16",
    )


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
    volumes={DATA_DIR: dataset_volume},
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
        import sys

        from ingest.embedders.tei import TEIEmbedder
        from ingest.worker import Router

        self.router = Router.from_config(router_config(), startup_timeout=10 * MINUTES, echo=sys.stderr)
        self.router.start()
        try:
            self.embedder = TEIEmbedder(self.router.url, max_concurrency=TEI_CONCURRENCY, model_name=MODEL_ID)
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
        from ingest.worker import embed_texts

        return embed_texts(self.embedder, texts)

    def _settings(self, collection: str, chunking: dict, window: int = 2048):
        from ingest.worker import shard_settings

        return shard_settings(os.environ, tei_url=self.router.url, collection=collection, model=MODEL_ID,
                              chunking=chunking, window=window, tei_concurrency=TEI_CONCURRENCY)

    @modal.method()
    def prepare_load(self, collection: str, chunking: dict) -> bool:
        """Create the collection for a bulk load (payload indexes, HNSW deferred)."""
        from ingest.worker import prepare_load

        return prepare_load(self._settings(collection, chunking), self.router.url)

    @modal.method()
    def finish_load(self, collection: str, chunking: dict) -> None:
        """Turn the HNSW graph back on once every shard has landed."""
        from ingest.worker import finish_load

        finish_load(self._settings(collection, chunking))

    @modal.method()
    def ingest_shard(self, start: int, stop: int, dataset: str, collection: str, chunking: dict, window: int):
        """Rows [start, stop) of the saved dataset into `collection`; returns a
        `ingest.worker.ShardResult`."""
        from ingest.worker import ShardError, ingest_shard

        try:
            settings = self._settings(collection, chunking, window)  # Qdrant's URL and key: the secret
            return ingest_shard(dataset, start, stop, settings=settings, tei_url=self.router.url)
        except Exception as exc:
            raise ShardError(start, stop, f"{type(exc).__name__}: {exc}") from exc


# ## The driver
#
# `modal run -m ingest.modal_app` runs `main` here, on your machine: it finds the
# dataset's length, cuts it into shards, fans them out over the GPU containers,
# runs the failed shards again (a few rounds at most), writes the dead letters
# (inputs that failed for good) to a local file and prints the run's report.

SHARD_SIZE = 5_000  # articles; small enough that a retry is cheap and the last wave is short
WINDOW = 2048  # chunks per embedder call inside a shard


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
):
    """Embed the dataset into `collection`. `limit`: only the first N articles (0:
    all). `gpu_price_per_hour`: for the cost estimate (0: the A10G list price)."""
    import json

    from ingest.worker import A10G_PRICE_PER_HOUR, ShardResult, plan_shards, run_report, run_shards

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
    print(f"{rows:,} articles in {len(shards):,} shards of {shard_size:,}, on up to {gpus} {GPU}s")

    chunking = {"max_chars": chunk_size, "overlap_chars": chunk_overlap, "title_prefix": True}
    worker = Embedder()

    def run_round(pending):
        inputs = [(start, stop, path, collection, chunking, window) for start, stop in pending]
        return worker.ingest_shard.starmap(inputs, order_outputs=False, return_exceptions=True)

    done = 0

    def report_progress(output) -> None:
        nonlocal done
        if isinstance(output, ShardResult):
            done += 1
            print(f"[{done:,}/{len(shards):,}] shard [{output.start}, {output.stop}): "
                  f"{output.chunks:,} chunks in {output.seconds:,.0f} s")
        else:
            print(f"failed: {type(output).__name__}: {output}")

    started = time.perf_counter()
    bulk = worker.prepare_load.remote(collection, chunking)  # a new collection: HNSW deferred
    run = run_shards(shards, run_round, max_rounds=max_rounds, on_output=report_progress)
    if bulk:
        worker.finish_load.remote(collection, chunking)
    wall = time.perf_counter() - started

    if run.dead_letters:
        with open(dead_letter, "a", encoding="utf-8") as handle:
            for record in run.dead_letters:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        print(f"{len(run.dead_letters):,} dead letters appended to {dead_letter}")
    print(run_report(run.results, wall, gpus, gpu_price_per_hour or A10G_PRICE_PER_HOUR, failed=run.failed))
    if run.failed:
        raise SystemExit(f"{len(run.failed)} shards failed after {run.rounds} rounds; run again to retry them")
