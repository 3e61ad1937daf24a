"""ingest.modal_app and ingest.embedders.modal, with no Modal credentials and no
network: what the app declares (read from its module-level objects and its
source), the GPU class run in-process with `.local()` against the loopback TEI
test server, and ModalEmbedder against an in-process fake of the deployed class."""

from __future__ import annotations

import ast
import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import modal
import numpy as np
import pytest

import ingest.modal_app as modal_app
import ingest.worker
from ingest.embedders.base import Embedder
from ingest.embedders.modal import ModalEmbedder
from ingest.errors import EmbedderError
from ingest.settings import EmbedderSettings
from ingest.worker import InputRejected, ShardResult
from schemas import KNOWN_MODELS
from schemas.models import BGE_QUERY_INSTRUCTION
from tests.tei_server import deterministic_vector, deterministic_vectors
from tests.tei_server_main import free_port, runner

ROOT = Path(__file__).resolve().parents[1]
SOURCE = (ROOT / "ingest" / "modal_app.py").read_text()
TREE = ast.parse(SOURCE)
MODEL = "BAAI/bge-small-en-v1.5"
HEAVY = ("httpx", "numpy", "datasets", "qdrant_client", "orjson", "tenacity", "torch", "sentence_transformers")


def offline_env(tmp_path) -> dict[str, str]:
    """This environment without Modal credentials or a Modal config file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_")}
    env["MODAL_CONFIG_PATH"] = str(tmp_path / "no-modal.toml")
    env["PYTHONPATH"] = str(ROOT)
    return env


def run_python(code: str, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=offline_env(tmp_path), cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)


# -- importing and deploying needs only `modal` -----------------------------------------
def test_the_app_imports_with_only_modal_and_no_credentials(tmp_path):
    code = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {HEAVY!r}:
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
import ingest.modal_app as m
print(m.app.name, type(m.Embedder).__name__)
"""
    done = run_python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["wiki-embed", "Cls"]


def test_names_match_what_the_modal_backend_looks_up():
    defaults = EmbedderSettings()
    assert modal_app.APP_NAME == modal_app.app.name == defaults.modal_app == "wiki-embed"
    assert defaults.modal_class == "Embedder" and isinstance(modal_app.Embedder, modal.Cls)
    assert "class Embedder:" in SOURCE


def test_declares_an_a10g_tei_image_with_pinned_everything():
    assert modal_app.GPU == "A10G"
    assert modal_app.TEI_IMAGE == "ghcr.io/huggingface/text-embeddings-inference:86-1.9"
    assert re.fullmatch(r"[0-9a-f]{40}", modal_app.MODEL_REVISION)
    assert modal_app.MODEL_ID == MODEL and MODEL in KNOWN_MODELS
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][0-9.]*", p) for p in modal_app.RUNTIME_PACKAGES)
    assert isinstance(modal_app.tei_image, modal.Image) and isinstance(modal_app.data_image, modal.Image)
    chain = _call_chain(_assigned("tei_image"))
    assert [name for name, _ in chain] == [
        "from_registry", "entrypoint", "pip_install", "env", "run_function", "add_local_python_source"]
    calls = dict(chain)
    assert ast.unparse(calls["from_registry"]) == "modal.Image.from_registry(TEI_IMAGE, add_python='3.11')"
    assert ast.unparse(calls["entrypoint"].args[0]) == "[]"
    assert ast.unparse(calls["run_function"].args[0]) == "download_weights"
    assert [a.value for a in calls["add_local_python_source"].args] == ["schemas", "ingest", "search"]


def test_the_gpu_class_declares_gpu_secrets_volumes_scaling_and_concurrency():
    cls_call, concurrent = _decorators("Embedder")
    options = {kw.arg: ast.unparse(kw.value) for kw in cls_call.keywords}
    assert options["gpu"] == "GPU"
    assert options["image"] == "tei_image"
    assert options["secrets"] == "[qdrant_secret]"
    assert options["volumes"] == "{DATA_DIR: dataset_volume}"
    assert options["max_containers"] == "MAX_CONTAINERS"
    assert options["scaledown_window"] and options["timeout"]
    assert ast.unparse(concurrent) == "modal.concurrent(max_inputs=SHARDS_PER_CONTAINER)"
    assert isinstance(modal_app.qdrant_secret, modal.Secret)
    assert (modal_app.QDRANT_SECRET_NAME, modal_app.QDRANT_SECRET_KEYS) == ("qdrant", ["QDRANT_URL", "QDRANT_API_KEY"])
    assert "modal.Secret.from_name(QDRANT_SECRET_NAME, required_keys=QDRANT_SECRET_KEYS)" in SOURCE
    assert isinstance(modal_app.dataset_volume, modal.Volume)
    assert modal_app.SHARDS_PER_CONTAINER >= 2
    hooks = {name: ast.unparse(dec) for name, dec in _method_decorators("Embedder")}
    assert hooks == {"start_server": "modal.enter()", "stop_server": "modal.exit()", "spec": "modal.method()",
                     "embed": "modal.method()", "ingest_shard": "modal.method()",
                     "prepare_load": "modal.method()", "finish_load": "modal.method()"}


def test_the_schedule_and_the_snapshots_are_set_from_the_environment_at_deploy_time(tmp_path):
    done = run_python("import os; os.environ['WIKI_REINDEX_CRON'] = '30 4 * * *'\n"
                      "os.environ['WIKI_SNAPSHOTS'] = '20231101.en, 20231201.en'\n"
                      "import ingest.modal_app as m; print(m.REINDEX_CRON, '|', ','.join(m.SNAPSHOTS))", tmp_path)
    assert done.stdout.strip() == "30 4 * * * | 20231101.en,20231201.en", done.stderr


def test_the_reindex_functions_use_the_volume_the_secret_and_a_gpu_for_the_work():
    functions = {n.name: n for n in TREE.body if isinstance(n, ast.FunctionDef)}
    (decorator,) = functions["reindex"].decorator_list
    options = {kw.arg: ast.unparse(kw.value) for kw in decorator.keywords}
    assert (options["gpu"], options["image"], options["secrets"]) == ("GPU", "tei_image", "[qdrant_secret]")
    assert options["volumes"] == "{DATA_DIR: dataset_volume}" and "HOURS" in options["timeout"]
    (decorator,) = functions["scheduled_reindex"].decorator_list
    options = {kw.arg: ast.unparse(kw.value) for kw in decorator.keywords}
    assert "gpu" not in options and options["volumes"] == "{DATA_DIR: dataset_volume}"
    body = ast.unparse(functions["scheduled_reindex"])
    assert "newest_snapshot(SNAPSHOTS)" in body and "reindex.remote(config=config)" in body
    assert "reindex_snapshot(" in ast.unparse(functions["reindex"])
    assert modal_app.MANIFESTS_DIR.startswith(modal_app.DATA_DIR + "/")  # the state lives on the Volume


def test_max_containers_is_set_from_the_environment_at_deploy_time(monkeypatch, tmp_path):
    assert modal_app.MAX_CONTAINERS == (int(os.environ["WIKI_EMBED_GPUS"]) if os.environ.get("WIKI_EMBED_GPUS") else 10)
    monkeypatch.setenv("WIKI_EMBED_GPUS", "100")
    assert modal_app._env_int("WIKI_EMBED_GPUS", 10) == 100
    for bad in ("0", "-3", "lots"):
        monkeypatch.setenv("WIKI_EMBED_GPUS", bad)
        with pytest.raises(ValueError, match="WIKI_EMBED_GPUS"):
            modal_app._env_int("WIKI_EMBED_GPUS", 10)
    done = run_python("import os; os.environ['WIKI_EMBED_GPUS'] = '50'\n"
                      "import ingest.modal_app as m; print(m.MAX_CONTAINERS)", tmp_path)
    assert done.stdout.strip() == "50", done.stderr


def test_one_schedule_the_weekly_reindex_and_no_pre_1_0_modal_api():
    names = {n.attr for n in ast.walk(TREE) if isinstance(n, ast.Attribute)}
    keywords = {kw.arg for n in ast.walk(TREE) if isinstance(n, ast.Call) for kw in n.keywords}
    scheduled = [(f.name, ast.unparse(kw.value)) for f in TREE.body if isinstance(f, ast.FunctionDef)
                 for d in f.decorator_list if isinstance(d, ast.Call) for kw in d.keywords if kw.arg == "schedule"]
    assert scheduled == [("scheduled_reindex", "modal.Cron(REINDEX_CRON)")]  # what a deploy starts: this only
    assert "Period" not in names and ast.unparse(TREE).count("modal.Cron(") == 1
    assert modal_app.REINDEX_CRON == (os.environ.get("WIKI_REINDEX_CRON") or "0 3 * * 0")
    assert isinstance(modal_app.scheduled_reindex, modal.Function) and isinstance(modal_app.reindex, modal.Function)
    assert not names & {"Stub", "build", "gpu"}  # modal.Stub, @modal.build, modal.gpu.A10G()
    assert not keywords & {"concurrency_limit", "keep_warm", "allow_concurrent_inputs", "container_idle_timeout"}


def test_download_functions_use_the_dataset_volume_and_commit():
    functions = {n.name: n for n in TREE.body if isinstance(n, ast.FunctionDef)}
    for name in ("download_dataset", "dataset_length"):
        (decorator,) = functions[name].decorator_list
        options = {kw.arg: ast.unparse(kw.value) for kw in decorator.keywords}
        assert ast.unparse(decorator.func) == "app.function"
        assert options["volumes"] == "{DATA_DIR: dataset_volume}" and options["image"] == "data_image"
    assert "dataset_volume.commit()" in ast.unparse(functions["download_dataset"])
    assert "dataset_volume.reload()" in ast.unparse(functions["dataset_length"])
    assert isinstance(modal_app.download_dataset, modal.Function)
    assert modal_app.dataset_path("20231101.en") == "/data/wikipedia-20231101.en"
    assert modal_app.DATASET_NAME == "wikimedia/wikipedia"


def test_router_config_serves_the_cached_weights_in_float16():
    config = modal_app.router_config()
    command = ingest.worker.router_command(config)
    assert command[0] == "text-embeddings-router"
    flags = dict(zip(command[1::2], command[2::2]))
    assert flags["--model-id"] == MODEL and flags["--revision"] == modal_app.MODEL_REVISION
    assert flags["--huggingface-hub-cache"] == modal_app.WEIGHTS_DIR and flags["--dtype"] == "float16"
    assert command[-1] == "--auto-truncate"
    in_flight = (modal_app.SHARDS_PER_CONTAINER + 1) * modal_app.TEI_CONCURRENCY
    assert int(flags["--max-concurrent-requests"]) == modal_app.BATCH_SIZE * in_flight


def test_pin_revision_records_the_commit_where_tei_looks_for_it(tmp_path):
    revision = "5c38ec7c405ec4b44b94cc5a9bb96e735b38267a"
    repo = tmp_path / "models--BAAI--bge-small-en-v1.5"
    with pytest.raises(FileNotFoundError, match="not in the hub cache"):
        modal_app.pin_revision(str(tmp_path), MODEL, revision)
    (repo / "snapshots" / revision).mkdir(parents=True)
    path = modal_app.pin_revision(str(tmp_path), MODEL, revision)
    assert Path(path) == repo / "refs" / revision and Path(path).read_text() == revision


# -- the search endpoint ---------------------------------------------------------------
def test_the_search_endpoint_is_a_wsgi_app_on_a_cpu_with_the_qdrant_and_token_secrets():
    functions = {n.name: n for n in TREE.body if isinstance(n, ast.FunctionDef)}
    function, concurrent, web = functions["search_api"].decorator_list
    assert (ast.unparse(function.func), ast.unparse(web)) == ("app.function", "modal.wsgi_app()")
    assert ast.unparse(concurrent.func) == "modal.concurrent"
    options = {kw.arg: ast.unparse(kw.value) for kw in function.keywords}
    assert options["secrets"] == "[qdrant_secret, search_secret]" and options["image"] == "search_image"
    assert "gpu" not in options and "volumes" not in options
    assert ast.unparse(_assigned("search_secret")) == (
        "modal.Secret.from_name(SEARCH_SECRET_NAME, required_keys=[SEARCH_TOKEN_KEY])")
    assert (modal_app.SEARCH_SECRET_NAME, modal_app.SEARCH_TOKEN_KEY) == ("search-api", "SEARCH_API_TOKEN")
    assert [name for name, _ in _call_chain(_assigned("search_image"))] == [
        "debian_slim", "pip_install", "env", "add_local_python_source"]  # no TEI image, no CUDA
    assert isinstance(modal_app.search_api, modal.Function)
    assert modal_app.EMBEDDER_CLASS == EmbedderSettings().modal_class and "class Embedder:" in SOURCE


@pytest.mark.filterwarnings("ignore:.*executing locally.*:UserWarning")
def test_the_search_endpoint_builds_the_server_from_the_secrets(monkeypatch):
    import io
    from types import SimpleNamespace

    import search.api
    from search.server import TOKEN_ENV, SearchApp

    opened = []
    searcher = SimpleNamespace(name="wikipedia", store=SimpleNamespace(collection="wikipedia_2"),
                               spec=SimpleNamespace(model=SimpleNamespace(name=MODEL), dimension=384))
    monkeypatch.setattr(search.api.Searcher, "open", lambda store, embedder: opened.append((store, embedder))
                        or searcher)
    monkeypatch.setenv("QDRANT_URL", "https://qdrant.example:6333")
    monkeypatch.setenv("QDRANT_API_KEY", "qdrant-key")
    monkeypatch.setenv(TOKEN_ENV, "token-from-the-secret")
    app = modal_app.search_api.local()  # the WSGI application, built in this process
    ((store, embedder),) = opened
    assert (store.qdrant_url, store.qdrant_api_key, store.collection) == (
        "https://qdrant.example:6333", "qdrant-key", modal_app.SEARCH_COLLECTION)
    assert (embedder.embedder, embedder.modal_app, embedder.modal_class) == ("modal", "wiki-embed", "Embedder")
    assert isinstance(app, SearchApp)
    answers = {}
    for path, method in (("/health", "GET"), ("/search", "POST")):
        environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "CONTENT_LENGTH": "2", "wsgi.input": io.BytesIO(b"{}")}
        body = b"".join(app(environ, lambda status, headers: answers.__setitem__(path, status)))
        answers[path] = (answers[path], body)
    assert answers["/health"][0] == "200 OK" and b'"auth": true' in answers["/health"][1]
    assert answers["/search"][0] == "401 Unauthorized"  # the secret's token is asked for


# -- the GPU class, in this process --------------------------------------------------
@pytest.fixture
def local_embedder_class(monkeypatch):
    """modal_app.Embedder whose enter hook starts the loopback TEI test server
    instead of text-embeddings-router; every router started is stopped after."""
    from pathlib import Path

    from ingest.embedders.local import resolve_model

    base = modal_app.router_config()
    monkeypatch.setattr(modal_app, "router_config",
                        lambda: dataclasses.replace(base, port=free_port(), executable=runner()))
    # The image's tokenizer.json lies under /weights; here, a real one of the same (BERT uncased) vocabulary.
    monkeypatch.setattr(modal_app, "TOKENIZER_JSON", str(Path(resolve_model("all-MiniLM-L6-v2")[1]) / "tokenizer.json"))
    started = []

    class TrackedRouter(ingest.worker.Router):
        def start(self):
            started.append(self)
            return super().start()

    monkeypatch.setattr(ingest.worker, "Router", TrackedRouter)
    yield modal_app.Embedder
    for router in started:
        router.stop()


@pytest.mark.filterwarnings("ignore:.*executing locally.*:UserWarning")
def test_the_gpu_class_embeds_reports_its_spec_and_ingests_a_shard(local_embedder_class, monkeypatch, tmp_path):
    import datasets

    worker = local_embedder_class()
    vectors = worker.embed.local(["Paris", "Rome"])
    assert isinstance(vectors, list) and isinstance(vectors[0], list)
    np.testing.assert_allclose(vectors, deterministic_vectors(["Paris", "Rome"]), atol=1e-6)
    spec = worker.spec.local()
    assert (spec["name"], spec["dimension"], spec["revision"]) == (MODEL, 384, modal_app.MODEL_REVISION)
    assert spec["query_instruction"] == BGE_QUERY_INSTRUCTION

    rows = [{"id": str(i), "url": f"https://example.org/{i}", "title": f"Title {i}",
             "text": f"Article number {i} is short. It has two sentences."} for i in range(6)]
    datasets.disable_progress_bars()
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "wiki"))
    monkeypatch.delenv("QDRANT_URL", raising=False)
    monkeypatch.setenv("QDRANT_PATH", str(tmp_path / "qdrant"))
    result = worker.ingest_shard.local(2, 6, str(tmp_path / "wiki"), "wiki", {"max_chars": 500}, 8)
    assert isinstance(result, ShardResult)
    assert (result.shard, result.articles, result.points_written) == ((2, 6), 4, 4)

    with pytest.raises(ingest.worker.ShardError, match=r"shard \[0, 3\): SourceError"):
        worker.ingest_shard.local(0, 3, str(tmp_path / "absent"), "wiki", {}, 8)


# -- ModalEmbedder against a fake deployed class ---------------------------------------
class FakeMethod:
    def __init__(self, function):
        self.function, self.calls = function, []

    def remote(self, *args):
        self.calls.append(args)
        return self.function(*args)


class FakeDeployedEmbedder:
    """What `modal.Cls.from_name("wiki-embed", "Embedder")()` gives: methods with `.remote`."""

    def __init__(self, spec=KNOWN_MODELS[MODEL].to_dict(), refuse: str | None = None):
        self.instances = 0
        self.refuse = refuse
        self.embed = FakeMethod(self._embed)
        if spec is not None:
            self.spec = FakeMethod(lambda: dict(spec, revision="abc"))

    def __call__(self):
        self.instances += 1
        return self

    def _embed(self, texts):
        for index, text in enumerate(texts):
            if self.refuse and self.refuse in text:
                raise InputRejected(index, 422, "Input validation error: too long")
        return deterministic_vectors(texts).tolist()


def test_modal_embedder_queries_get_the_instruction_and_passages_do_not():
    fake = FakeDeployedEmbedder()
    embedder = ModalEmbedder(remote_cls=fake)
    assert isinstance(embedder, Embedder) and fake.instances == 1
    assert (embedder.spec.name, embedder.spec.revision, embedder.spec.dimension) == (MODEL, "abc", 384)
    query = "what is the capital of France"
    queries = embedder.embed_queries([query])
    assert fake.embed.calls[-1] == ([BGE_QUERY_INSTRUCTION + query],)
    np.testing.assert_allclose(queries[0], deterministic_vector(BGE_QUERY_INSTRUCTION + query))
    passages = embedder.embed_passages(["Paris is the capital of France."])
    assert fake.embed.calls[-1] == (["Paris is the capital of France."],)
    assert passages.vectors.dtype == np.float32 and passages.vectors.shape == (1, 384) and passages.rejected == []
    assert embedder.count_tokens(["x"]) is None
    custom = ModalEmbedder(remote_cls=FakeDeployedEmbedder(), query_instruction="query: ")
    custom.embed_queries(["q"])
    assert custom.spec.query_instruction == "query: "


def test_modal_embedder_batches_and_isolates_refused_inputs():
    fake = FakeDeployedEmbedder(refuse="BAD")
    embedder = ModalEmbedder(remote_cls=fake, batch_size=3)
    texts = ["a", "BAD one", "c", "d", "e", "BAD two", "g"]
    result = embedder.embed_passages(texts)
    assert [(r.index, r.status) for r in result.rejected] == [(1, 422), (5, 422)]
    good = [i for i in range(len(texts)) if i not in (1, 5)]
    np.testing.assert_allclose(result.vectors[good], deterministic_vectors([texts[i] for i in good]), atol=1e-6)
    assert not result.vectors[[1, 5]].any()
    assert [len(call[0]) for call in fake.embed.calls] == [3, 2, 3, 2, 1]  # refused ones resent without them
    with pytest.raises(EmbedderError, match="refused query 0"):
        embedder.embed_queries(["BAD query"])


def test_modal_embedder_falls_back_to_known_models_for_a_deployment_without_spec():
    embedder = ModalEmbedder(remote_cls=FakeDeployedEmbedder(spec=None))
    assert embedder.spec == KNOWN_MODELS[MODEL]

    fake = FakeDeployedEmbedder(spec=None)
    fake.spec = FakeMethod(_raise(modal.exception.NotFoundError("Class has no method spec, and attributes can't ...")))
    assert ModalEmbedder(remote_cls=fake).spec == KNOWN_MODELS[MODEL]
    with pytest.raises(EmbedderError, match="not a known model"):
        ModalEmbedder(remote_cls=FakeDeployedEmbedder(spec=None), model_name="someone/else")
    with pytest.raises(EmbedderError, match="serves 'BAAI/bge-small-en-v1.5', not 'BAAI/bge-base-en-v1.5'"):
        ModalEmbedder(remote_cls=FakeDeployedEmbedder(), model_name="BAAI/bge-base-en-v1.5")


@pytest.mark.parametrize(
    ("error", "advice"),
    [
        (modal.exception.AuthError("Token missing. Could not authenticate client."), "modal token new"),
        (modal.exception.NotFoundError("Lookup failed for Cls 'Embedder' from the 'wiki-embed' app"),
         r"modal deploy -m ingest\.modal_app"),
        (modal.exception.ConnectionError("could not connect"), "check the network"),
        (RuntimeError("surprise"), r"embed failed \(RuntimeError: surprise\)"),
    ],
)
def test_modal_embedder_translates_modal_errors(error, advice):
    fake = FakeDeployedEmbedder()
    embedder = ModalEmbedder(remote_cls=fake)
    fake.embed = FakeMethod(_raise(error))
    with pytest.raises(EmbedderError, match=advice) as info:
        embedder.embed_passages(["x"])
    assert info.value.__cause__ is error
    fake.spec = FakeMethod(_raise(error))
    with pytest.raises(EmbedderError, match=advice.replace("embed failed", "spec failed")):
        ModalEmbedder(remote_cls=fake)


def test_modal_embedder_checks_the_shape_of_what_comes_back():
    fake = FakeDeployedEmbedder()
    embedder = ModalEmbedder(remote_cls=fake)
    fake.embed = FakeMethod(lambda texts: [[0.0] * 12 for _ in texts])
    with pytest.raises(EmbedderError, match="shape"):
        embedder.embed_passages(["x", "y"])


def test_modal_embedder_without_credentials_says_how_to_log_in(tmp_path):
    done = run_python(
        "from ingest.embedders.modal import ModalEmbedder\n"
        "from ingest.errors import EmbedderError\n"
        "try:\n    ModalEmbedder()\nexcept EmbedderError as exc:\n    print(exc)\n",
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "Modal credentials are missing or invalid" in done.stdout and "modal token new" in done.stdout


# -- helpers -------------------------------------------------------------------------
def _raise(error):
    def call(*args):
        raise error

    return call


def _assigned(name: str) -> ast.expr:
    for node in TREE.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return node.value
    raise AssertionError(f"{name} is not assigned at module level")


def _call_chain(node: ast.expr) -> list[tuple[str, ast.Call]]:
    """`a.b(...).c(...).d(...)` as [("b", call), ("c", call), ("d", call)]."""
    chain = []
    while isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        chain.append((node.func.attr, node))
        node = node.func.value
    return chain[::-1]


def _class(name: str) -> ast.ClassDef:
    return next(n for n in TREE.body if isinstance(n, ast.ClassDef) and n.name == name)


def _decorators(name: str) -> list[ast.Call]:
    decorators = _class(name).decorator_list
    assert [ast.unparse(d.func) for d in decorators] == ["app.cls", "modal.concurrent"]
    return decorators


def _method_decorators(name: str):
    for node in _class(name).body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):  # _helpers are plain
            assert len(node.decorator_list) == 1, node.name
            yield node.name, node.decorator_list[0]
