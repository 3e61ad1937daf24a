"""Run inside a container's interpreter (`tests/containers.py`): import the app as the
container imports it, and run one function's plain-Python core (its `.local()`, or
the function a build step wraps) against the loopback stand-ins.

    python -I container_scenarios.py PATHS SCENARIO CONFIG

PATHS: where /root, the client (/pkg) and its dependencies (/__modal/deps) are here;
CONFIG: the scenario's folders and the stand-ins' addresses. Only the standard
library is imported before the path is set: whatever else this needs must come from
the container. The last line printed is `RESULT {json}`.

What stands in for what the container cannot reach here: the Volumes are folders
(their `commit` and `reload` recorded), the hub's downloads write files of the shapes
the real calls return (called with arguments bound against the real functions'
signatures), and calls from one function to another (`.remote()`) are recorded, not
made. TEI is `ingest.rehearsal.tei` on loopback, started by the app itself through a
`text-embeddings-router` on PATH; Qdrant is whatever CONFIG names.
"""

import json
import os
import shutil
import sys
import traceback

CONFIG: dict = {}  # set from the command line
WORK = ""
CHUNKING = {"max_chars": 1000, "overlap_chars": 0, "title_prefix": True, "sparse": "bm25"}


class FakeVolume:
    def __init__(self):
        self.calls = []

    def reload(self):
        self.calls.append("reload")

    def commit(self):
        self.calls.append("commit")


class Recorded:
    """A function of the app called from another (`.remote`): recorded, not run
    (`effect(*args)`, if given, stands for what it leaves behind)."""

    def __init__(self, answer=None, effect=None):
        self.calls, self.answer, self.effect = [], answer, effect

    def remote(self, *args, **kwargs):
        self.calls.append([list(args), kwargs])
        if self.effect is not None:
            self.effect(*args)
        return self.answer


def article(i, text=None):
    return {
        "id": str(i),
        "url": f"https://en.wikipedia.org/wiki/Title_{i}",
        "title": f"Title {i}",
        "text": text or f"Article number {i} is short. It has two sentences about subject {i}.",
    }


def bound(real, *args, **kwargs):
    """The real function's signature accepts this call (raises TypeError if not)."""
    import inspect

    inspect.signature(real).bind(*args, **kwargs)


class FakeDict(dict):
    """`modal.Dict` as the reindex's lock uses it (`put` with `skip_if_exists`)."""

    def put(self, key, value, *, skip_if_exists=False):
        if skip_if_exists and key in self:
            return False
        self[key] = value
        return True


def place_the_app(m):
    """The app's folders under WORK, its Volumes as recorded folders, the weights where
    the build step left them (in the image, on Modal), TEI on a free port."""
    state = os.path.join(WORK, "state")
    for name, path in (
        ("DATA_DIR", os.path.join(WORK, "dataset")),
        ("STATE_DIR", state),
        ("MANIFESTS_DIR", os.path.join(state, "manifests")),
        ("RUNS_DIR", os.path.join(state, "runs")),
        ("SNAPSHOTS_FILE", os.path.join(state, "snapshots.json")),
        ("LOCAL_STATE_DIR", os.path.join(WORK, "container-" + SCENARIO.replace(" ", "-"))),
    ):
        setattr(m, name, path)
    m.WEIGHTS_DIR = weights_dir()
    m.TOKENIZER_JSON = os.path.join(m.snapshot_dir(m.WEIGHTS_DIR), "tokenizer.json")
    m.TEI_PORT = CONFIG["tei_port"]
    m.dataset_volume, m.state_volume, m.locks = FakeVolume(), FakeVolume(), FakeDict()


def weights_dir():
    """The image's weights folder (/weights), here under WORK: the build step fills it."""
    return os.path.join(WORK, "weights")


def save_snapshot(m, config, rows):
    import datasets

    datasets.disable_progress_bars()
    path = m.dataset_path(config)
    datasets.Dataset.from_list(rows).save_to_disk(path)
    return path


def stop_routers(worker):
    """Run the class's exit hooks, found as modal's container runtime finds them
    (modal 1.6 private: `_find_callables_for_obj`; `.local()` never runs them)."""
    from modal._partial_function import _find_callables_for_obj, _PartialFunctionFlags

    instance = worker._cached_user_cls_instance()  # what the `.local()` calls ran on
    for hook in _find_callables_for_obj(instance, _PartialFunctionFlags.EXIT).values():
        hook()


# -- scenarios: one per container -----------------------------------------------------------
def build_download_weights(m):
    """The image's run_function step, in the container modal builds it in: its module
    (`ingest.sharded.weights`) imported alone, the weights into the hub cache."""
    import huggingface_hub

    real = huggingface_hub.snapshot_download

    def snapshot_download(*args, **kwargs):
        bound(real, *args, **kwargs)
        snapshot = os.path.join(
            kwargs["cache_dir"], "models--" + args[0].replace("/", "--"), "snapshots", kwargs["revision"]
        )
        os.makedirs(snapshot, exist_ok=True)
        for name in ("config.json", "model.safetensors"):
            open(os.path.join(snapshot, name), "w").close()
        # a real tokenizer of the same (BERT uncased) vocabulary: the chunker counts with it
        shutil.copyfile(CONFIG["tokenizer"], os.path.join(snapshot, "tokenizer.json"))
        return snapshot

    huggingface_hub.snapshot_download = snapshot_download
    m.download_weights(weights_dir())
    return {
        "refs": sorted(os.listdir(os.path.join(weights_dir(), "models--" + m.MODEL_ID.replace("/", "--"), "refs"))),
        "imported": sorted(k for k in sys.modules if k.split(".")[0] == "ingest"),
    }


def download_dataset(m):
    import datasets

    real = datasets.load_dataset
    rows = [article(i) for i in range(CONFIG.get("articles", 6))]

    def load_dataset(*args, **kwargs):
        bound(real, *args, **kwargs)
        return datasets.Dataset.from_list(rows)

    datasets.load_dataset = load_dataset
    place_the_app(m)
    saved = m.download_dataset.local(CONFIG.get("config", "20231101.en"))
    return {"saved": saved, "volume": m.dataset_volume.calls}


def dataset_length(m):
    place_the_app(m)
    path = save_snapshot(m, "20231101.en", [article(i) for i in range(4)])
    return {"rows": m.dataset_length.local(path), "absent": m.dataset_length.local(path + "-absent")}


def embedder(m):
    """The GPU class: plan, two shards, finish (the alias moves), embed, spec."""
    place_the_app(m)
    path = save_snapshot(m, "20231101.en", [article(i) for i in range(6)])
    worker = m.GPUWorker()
    try:
        plan = worker.prepare_load.local("wikipedia", CHUNKING, "20231101.en-6-3")
        results = [
            worker.ingest_shard.local(start, start + 3, path, plan.collection, CHUNKING, 8, plan.records)
            for start in (0, 3)
        ]
        report = worker.finish_load.local("wikipedia", CHUNKING, plan)
        vectors = worker.embed.local(["Paris", "Rome"])
        spec = worker.spec.local()
    finally:
        stop_routers(worker)
    return {
        "collection": plan.collection,
        "points": [r.summary.points_written for r in results],
        "report": report,
        "dimension": len(vectors[0]),
        "model": spec["name"],
        "state_volume": m.state_volume.calls,
    }


def reindex(m):
    """A week later, on a fresh container: an edited article, one added, two gone."""
    place_the_app(m)
    rows = [
        article(0, "Article zero was edited. It has two sentences still."),
        *map(article, range(1, 4)),
        article(9, "A new article. It has two sentences."),
    ]
    save_snapshot(m, "20231102.en", rows)
    report = m.reindex.local(config="20231102.en")
    return {"report": report, "state_volume": m.state_volume.calls}


def scheduled_reindex(m):
    """A week with no newer dump (nothing held), then one with a newer one configured."""
    place_the_app(m)
    m.reindex = Recorded("report")
    m.download_dataset = Recorded(effect=lambda config: os.makedirs(m.dataset_path(config)))
    idle = m.scheduled_reindex.local()
    m.SNAPSHOTS = (*m.SNAPSHOTS, "20991231.en")
    answer = m.scheduled_reindex.local()
    return {"idle": idle, "answer": answer, "reindex": m.reindex.calls, "download": m.download_dataset.calls}


def wait_until_indexed(m):
    return {"indexed": m.wait_until_indexed.local(CONFIG["collection"], 30)}


def search_api(m):
    """The HTTP endpoint as Modal's ASGI adapter drives it: the page, its files, a search
    (the query embedded by the container's own TEI)."""
    from starlette.testclient import TestClient

    place_the_app(m)
    app = m.search_api.local()
    token = {"Authorization": "Bearer " + os.environ["SEARCH_API_TOKEN"]}
    with TestClient(app, raise_server_exceptions=False) as client:
        page, script = client.get("/"), client.get("/static/search.js")
        health = client.get("/health")
        found = client.post("/search", json={"query": "Article number 2", "k": 3}, headers=token)
    return {
        "page": page.status_code,
        "script": script.status_code,
        "health": health.status_code,
        "search": found.status_code,
        "hits": [h["title"] for h in found.json().get("hits", [])] if found.status_code == 200 else found.text[:500],
    }


def preflight(m):
    place_the_app(m)
    rows = [article(i) for i in range(20)]
    rows[3] = article(3, " ".join(f"Sentence {j} of a long article, about its subject at length." for j in range(200)))
    save_snapshot(m, "20231101.en", rows)
    return {"table": m.preflight.local(config="20231101.en", articles=20, qdrant_seconds=3.0)}


SCENARIOS = {
    "build download_weights": build_download_weights,
    "download_dataset": download_dataset,
    "dataset_length": dataset_length,
    "GPUWorker": embedder,
    "reindex": reindex,
    "scheduled_reindex": scheduled_reindex,
    "wait_until_indexed": wait_until_indexed,
    "search_api": search_api,
    "preflight": preflight,
}


if __name__ == "__main__":
    import warnings

    PATHS = json.loads(sys.argv[1])
    sys.path[:0] = PATHS["path_first"]
    sys.path.extend(PATHS["path_last"])
    SCENARIO, CONFIG = sys.argv[2], json.loads(sys.argv[3])
    WORK = CONFIG["work"]
    warnings.filterwarnings("ignore", message=".*executing locally.*")  # `.local()` says it runs here
    try:
        import importlib

        app_module = importlib.import_module(CONFIG["module"])  # as the container imports the function's module
        result = SCENARIOS[SCENARIO](app_module)
    except BaseException:
        traceback.print_exc()
        sys.exit(1)
    print("RESULT " + json.dumps(result, default=str), flush=True)
