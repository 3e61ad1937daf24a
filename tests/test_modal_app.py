"""ingest.modal_app and ingest.embedders.modal, with no Modal credentials and no
network, and without reading the app's source text.

- What the app declares, as modal records it: the `modal.Function` and `modal.Cls`
  objects' `FunctionInfo` (`Function.info()`, documented, answered locally for an
  app that is not deployed) and the app's registry. What `FunctionInfo` leaves out
  (autoscaling, which image a function runs, the images' build steps, a secret's
  required keys) is read from the arguments the module passes to modal's public
  constructors and decorators while it is imported: `declarations()` imports it in
  a subprocess with those calls recorded.
- What the declared functions do, run in this process through their plain-Python
  cores: `.local()` on the GPU class against the loopback TEI test server and
  local-mode Qdrant, the driver (`main`) with `.remote()` done in-process, and the
  small functions against fakes of the Volume and of the hub.
- ModalEmbedder against an in-process fake of the deployed class.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import modal
import numpy as np
import pytest

import ingest.modal_app as modal_app
import ingest.sharded.tei_process as router_module
import ingest.sharded.weights as weights
import ingest.sharded.worker as worker_module
from ingest.embedders.base import Embedder
from ingest.embedders.fake import deterministic_vector, deterministic_vectors
from ingest.embedders.modal import DEFAULT_BATCH_SIZE, ModalEmbedder
from ingest.errors import EmbedderError, InputRejected, RunLockedError, SettingsError, ShardError
from ingest.modal_settings import DeploySettings, deploy_settings
from ingest.rehearsal.standin_router import free_port, runner
from ingest.settings import EmbedderSettings, StoreSettings
from ingest.sharded.shard import ShardResult
from ingest.sharded.tei_process import router_command
from ingest.store import open_store
from schemas import KNOWN_MODELS
from schemas.models import BGE_QUERY_INSTRUCTION

ROOT = Path(__file__).resolve().parents[1]
MODEL = "BAAI/bge-small-en-v1.5"
HEAVY = ("httpx", "numpy", "datasets", "qdrant_client", "orjson", "tenacity", "torch", "sentence_transformers")
DEPLOY_ENV = ("WIKI_EMBED_GPUS", "WIKI_REINDEX_CRON", "WIKI_SNAPSHOTS", "WIKI_SEARCH_COLLECTION")

# `.local()` warns that it runs the function here rather than on Modal: that is the point.
pytestmark = pytest.mark.filterwarnings("ignore:.*executing locally.*:UserWarning")


def offline_env(tmp_path, **deploy_env: str) -> dict[str, str]:
    """This environment without Modal credentials, a Modal config file or the
    deploy-time variables, plus `deploy_env`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_") and k not in DEPLOY_ENV}
    env["MODAL_CONFIG_PATH"] = str(tmp_path / "no-modal.toml")
    env["PYTHONPATH"] = str(ROOT)
    env.update(deploy_env)
    return env


def run_python(code: str, tmp_path, **deploy_env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        env=offline_env(tmp_path, **deploy_env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def info(function) -> modal.types.FunctionInfo:
    """`Function.info()`: for a function of an app defined here and not deployed,
    modal answers from what the decorator recorded, without a network call."""
    return function.info()


def gpu_class_info() -> modal.types.FunctionInfo:
    """The GPU class's FunctionInfo: its methods share the class's one service function."""
    return modal_app.GPUWorker().embed.info()


def registered() -> SimpleNamespace:
    """The functions, classes and local entrypoints registered on the app.
    `App.registered_functions`, `registered_classes` and `registered_entrypoints`
    are deprecated in modal 1.6 and go in 1.7 (hence pyproject's `modal<1.7`); their
    warning is silenced here, and only here."""
    app = modal_app.app
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", modal.exception.DeprecationError)
        return SimpleNamespace(
            functions=dict(app.registered_functions),
            classes=dict(app.registered_classes),
            entrypoints=dict(app.registered_entrypoints),
        )


def volume_mounts(function_info) -> dict[str, tuple[str, bool]]:
    return {path: (mount.name, mount.read_only) for path, mount in function_info.volumes.items()}


# -- what the module hands modal while it is imported ------------------------------------
# Recorded around modal's public API (`App.function`, `App.cls`, `Secret.from_name`,
# `Volume.from_name`, every public `Image` builder): only the calls made by the module
# itself, not those modal makes inside them. Objects of the module are named by the
# module attribute that holds them; `warnings` are errors, so an API that modal 1.x
# deprecates fails the import.
DECLARATIONS = r"""
import json, warnings
warnings.simplefilter("error")
import modal

calls, decorated, depth = [], [], [0]


def spy(owner, name):
    raw = owner.__dict__[name]
    static = isinstance(raw, staticmethod)
    original = raw.__func__ if static else raw

    def recorded(*args, **kwargs):
        depth[0] += 1
        try:
            result = original(*args, **kwargs)
        finally:
            depth[0] -= 1
        if depth[0] == 0:
            calls.append((owner.__name__ + "." + name, static, args, kwargs, result))
            if owner is modal.App:
                decorate = result

                def result(target, decorate=decorate, kwargs=kwargs):
                    made = decorate(target)
                    decorated.append((name, kwargs, made))
                    return made
        return result

    setattr(owner, name, staticmethod(recorded) if static else recorded)


for name in ("function", "cls"):
    spy(modal.App, name)
spy(modal.Secret, "from_name")
spy(modal.Volume, "from_name")
for name, raw in list(vars(modal.Image).items()):
    if not name.startswith("_") and (isinstance(raw, staticmethod) or callable(raw)) and not isinstance(raw, type):
        spy(modal.Image, name)

import ingest.modal_app as m

objects = {id(v): k for k, v in vars(m).items()
           if isinstance(v, (modal.Image, modal.Secret, modal.Volume, modal.Function, modal.Cls))}


def describe(value):
    if id(value) in objects:
        return objects[id(value)]
    if isinstance(value, (list, tuple)):
        return [describe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): describe(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return getattr(value, "__name__", None) or type(value).__name__


made_by = {id(result): (call, static, args, kwargs) for call, static, args, kwargs, result in calls
           if call.startswith("Image.")}


def build_steps(image):
    steps = []
    while id(image) in made_by:
        call, static, args, kwargs = made_by[id(image)]
        steps.append([call.split(".", 1)[1], describe(list(args if static else args[1:])), describe(kwargs)])
        if static:
            break
        image = args[0]
    return steps[::-1]


print(json.dumps({
    "options": {describe(made): dict(describe(kwargs), decorator=kind) for kind, kwargs, made in decorated},
    "images": {k: build_steps(v) for k, v in vars(m).items() if isinstance(v, modal.Image)},
    "named": {describe(result): {"name": args[0], **describe(kwargs)}
              for call, static, args, kwargs, result in calls if call.endswith(".from_name")},
    "schedules": {k: v.info().schedule for k, v in vars(m).items()
                  if isinstance(v, modal.Function) and v.info().schedule},
    "snapshots": list(m.SNAPSHOTS),
}))
"""


def declarations(tmp_path, **deploy_env: str) -> dict:
    done = run_python(DECLARATIONS, tmp_path, **deploy_env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def declared(tmp_path_factory) -> dict:
    """What the app hands modal when it is deployed from a shell that sets nothing."""
    return declarations(tmp_path_factory.mktemp("declared"))


@pytest.fixture(scope="module")
def declared_from_env(tmp_path_factory) -> dict:
    """The same, deployed from a shell that sets every deploy-time variable."""
    return declarations(
        tmp_path_factory.mktemp("declared-env"),
        WIKI_EMBED_GPUS="50",
        WIKI_REINDEX_CRON="30 4 * * *",
        WIKI_SNAPSHOTS="20231101.en, 20231201.en",
        WIKI_SEARCH_COLLECTION="wikipedia_canary",
    )


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
print(m.app.name, type(m.GPUWorker).__name__, "ingest.settings" in sys.modules)
"""
    done = run_python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["wiki-embed", "Cls", "True"]  # the settings module comes along, stdlib-only


def test_the_app_declares_itself_without_a_deprecated_modal_api(declared):
    # `declarations()` imports the app under modal 1.6 with every warning an error: the
    # pre-1.0 names (modal.Stub, modal.gpu.A10G(), concurrency_limit=, keep_warm=,
    # allow_concurrent_inputs=, container_idle_timeout=...) raise or warn there.
    assert modal.__version__.startswith("1.")
    assert set(declared["options"]) == {
        "download_dataset",
        "dataset_length",
        "GPUWorker",
        "reindex",
        "scheduled_reindex",
        "search_api",
        "wait_until_indexed",
        "preflight",
    }


# -- what the app declares --------------------------------------------------------------
def test_names_match_what_the_modal_backend_looks_up():
    defaults = EmbedderSettings()
    classes = registered().classes
    assert modal_app.APP_NAME == modal_app.app.name == defaults.modal_app == "wiki-embed"
    assert modal_app.WORKER_CLASS == defaults.modal_class == "GPUWorker"
    assert classes == {defaults.modal_class: modal_app.GPUWorker} and isinstance(modal_app.GPUWorker, modal.Cls)
    assert modal_app.GPUWorker().embed.info().method_names  # a class of this app, with methods to call


def test_the_app_registers_these_functions_and_nothing_else():
    app = registered()
    functions, classes = app.functions, app.classes
    plain = {name: f for name, f in functions.items() if not name.endswith(".*")}  # "GPUWorker.*": the class's
    assert plain == {
        name: getattr(modal_app, name)
        for name in (
            "download_dataset",
            "dataset_length",
            "reindex",
            "scheduled_reindex",
            "search_api",
            "wait_until_indexed",
            "preflight",
        )
    }
    assert set(functions) - set(plain) == {f"{name}.*" for name in classes}
    assert all(isinstance(f, modal.Function) for f in functions.values())
    assert app.entrypoints == {"main": modal_app.main}  # what `modal run -m ingest.modal_app` runs on this machine


def test_declares_an_a10g_tei_image_with_pinned_everything(declared):
    assert modal_app.GPU == "A10G"
    assert modal_app.TEI_IMAGE == "ghcr.io/huggingface/text-embeddings-inference:86-1.9"  # 86: the A10G's SM 8.6
    assert re.fullmatch(r"[0-9a-f]{40}", modal_app.MODEL_REVISION)
    assert modal_app.MODEL_ID == MODEL and MODEL in KNOWN_MODELS
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][0-9.]*", p) for p in modal_app.RUNTIME_PACKAGES)
    assert isinstance(modal_app.tei_image, modal.Image) and isinstance(modal_app.cpu_image, modal.Image)
    steps = declared["images"]["tei_image"]
    assert [name for name, _, _ in steps] == [
        "from_registry",
        "entrypoint",
        "pip_install",
        "env",
        "run_function",
        "add_local_python_source",
    ]
    calls = {name: (args, kwargs) for name, args, kwargs in steps}
    assert calls["from_registry"] == ([modal_app.TEI_IMAGE], {"add_python": "3.11"})
    assert calls["entrypoint"] == ([[]], {})  # TEI's own entrypoint cleared: Modal starts Python
    assert calls["pip_install"] == (list(modal_app.RUNTIME_PACKAGES), {})
    assert calls["env"][0][0]["HUGGINGFACE_HUB_CACHE"] == modal_app.WEIGHTS_DIR  # not TEI's /data
    assert calls["run_function"] == (["download_weights"], {})  # the weights are baked into the image
    # the search page's files ship too (~FilePatternMatcher: add_local_python_source ships .py files only by default)
    assert calls["add_local_python_source"] == (["schemas", "ingest", "search"], {"ignore": "_CustomPatternMatcher"})
    assert declared["images"]["cpu_image"] == [
        ["debian_slim", [], {"python_version": "3.11"}],
        ["pip_install", list(modal_app.RUNTIME_PACKAGES), {}],
        ["add_local_python_source", ["schemas", "ingest", "search"], {"ignore": "_CustomPatternMatcher"}],
    ]
    assert not Path(modal_app.DATA_DIR).is_relative_to("/data")  # TEI's image sets its hub cache there


def test_the_gpu_class_declares_gpu_secrets_volumes_scaling_and_concurrency(declared):
    declared_info = gpu_class_info()
    assert declared_info.gpus == [(modal_app.GPU, 1)]
    assert declared_info.secrets == [repr(modal_app.qdrant_secret)] == ["modal.Secret.from_name('qdrant')"]
    assert volume_mounts(declared_info) == {
        modal_app.DATA_DIR: ("wiki-embed-data", False),
        modal_app.STATE_DIR: ("wiki-embed-state", False),
    }
    assert declared_info.concurrency_info.max_inputs == modal_app.SHARDS_PER_CONTAINER >= 2
    assert declared_info.cpu >= 2 and declared_info.timeout >= 60 * 60
    assert set(declared_info.method_names) == {"spec", "embed", "prepare_load", "finish_load", "ingest_shard"}
    options = declared["options"]["GPUWorker"]
    assert (options["decorator"], options["image"]) == ("cls", "tei_image")
    assert options["max_containers"] == DeploySettings().gpus == 10
    assert 0 < options["scaledown_window"] <= 10 * 60  # an idle A10G is let go within minutes
    assert declared["named"]["qdrant_secret"] == {
        "name": modal_app.QDRANT_SECRET_NAME,
        "required_keys": modal_app.QDRANT_SECRET_KEYS,
    }
    assert (modal_app.QDRANT_SECRET_NAME, modal_app.QDRANT_SECRET_KEYS) == ("qdrant", ["QDRANT_URL", "QDRANT_API_KEY"])
    assert declared["named"]["dataset_volume"] == {"name": "wiki-embed-data", "create_if_missing": True}
    assert declared["named"]["state_volume"] == {"name": "wiki-embed-state", "create_if_missing": True}


def test_one_schedule_the_weekly_reindex(declared):
    functions = registered().functions
    schedules = {name: info(f).schedule for name, f in functions.items() if info(f).schedule}
    assert schedules == {"scheduled_reindex": f"Cron({modal_app.REINDEX_CRON!r}, UTC)"}  # what a deploy starts
    assert modal_app.REINDEX_CRON == modal_app.DEPLOY.reindex_cron
    assert declared["schedules"] == {"scheduled_reindex": "Cron('0 3 * * 0', UTC)"}  # Sundays, 03:00 UTC
    assert declared["snapshots"] == list(DeploySettings().snapshots) == [modal_app.DATASET_CONFIG]


def test_the_reindex_functions_use_the_volume_the_secret_and_a_gpu_for_the_work(declared):
    work, schedule = info(modal_app.reindex), info(modal_app.scheduled_reindex)
    assert work.gpus == [(modal_app.GPU, 1)] and work.secrets == [repr(modal_app.qdrant_secret)]
    both = {modal_app.DATA_DIR: ("wiki-embed-data", False), modal_app.STATE_DIR: ("wiki-embed-state", False)}
    assert volume_mounts(schedule) == volume_mounts(work) == both
    assert repr(modal_app.qdrant_secret) in schedule.secrets  # it asks Qdrant what is live
    assert work.timeout >= 60 * 60
    assert schedule.gpus == []  # it only picks the snapshot; `reindex` holds the GPU
    assert schedule.timeout >= work.timeout  # it waits for a download and for the reindex
    assert declared["options"]["reindex"]["image"] == "tei_image"
    assert declared["options"]["scheduled_reindex"]["image"] == "cpu_image"  # no TEI to pull for a no-op week
    # The state lives on a Volume of its own: committing it never reloads the dataset's, which the
    # other shards of a container have memory-mapped (a reload fails with files of it open).
    for state in (modal_app.MANIFESTS_DIR, modal_app.RUNS_DIR):
        assert Path(state).is_relative_to(modal_app.STATE_DIR) and not Path(state).is_relative_to(modal_app.DATA_DIR)


def test_download_functions_use_the_dataset_volume_and_no_gpu(declared):
    for function in (modal_app.download_dataset, modal_app.dataset_length):
        declared_info = info(function)
        assert volume_mounts(declared_info) == {modal_app.DATA_DIR: ("wiki-embed-data", False)}
        assert declared_info.gpus == [] and declared_info.secrets == []
    for name in ("download_dataset", "dataset_length"):
        assert declared["options"][name]["image"] == "cpu_image"
    assert modal_app.dataset_path("20231101.en") == "/dataset/wikipedia-20231101.en"
    assert Path(modal_app.dataset_path("x")).is_relative_to(modal_app.DATA_DIR)
    assert modal_app.DATASET_NAME == "wikimedia/wikipedia"


# Which of modal's web decorators each function of the app is declared with (FunctionInfo
# says a function is a web endpoint, not whether it serves ASGI or WSGI).
WEB_DECORATORS = r"""
import json, modal
seen = {}
for name in ("asgi_app", "wsgi_app", "fastapi_endpoint", "web_server"):
    def spy(*args, _name=name, _original=getattr(modal, name), **kwargs):
        decorate = _original(*args, **kwargs)
        def recorded(function):
            seen[function.__name__] = [_name, kwargs]
            return decorate(function)
        return recorded
    setattr(modal, name, spy)
import ingest.modal_app
print(json.dumps(seen))
"""


def test_the_search_endpoint_is_an_asgi_app_on_a_cpu_with_the_qdrant_and_token_secrets(declared, tmp_path):
    declared_info = info(modal_app.search_api)
    assert declared_info.web_info is not None and declared_info.web_info.method is None  # an app, no fastapi_endpoint
    done = run_python(WEB_DECORATORS, tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"search_api": ["asgi_app", {}]}  # FastAPI is ASGI: @modal.asgi_app()
    assert declared_info.gpus == [] and declared_info.volumes == {}
    assert declared_info.secrets == [repr(modal_app.qdrant_secret), repr(modal_app.search_secret)]
    assert declared_info.concurrency_info.max_inputs > 1  # health checks need not queue behind a search
    functions = registered().functions
    assert [name for name, f in functions.items() if info(f).web_info is not None] == ["search_api"]
    assert declared["options"]["search_api"]["image"] == "search_image"
    assert declared["options"]["search_api"]["min_containers"] == DeploySettings().search_min_containers == 1
    steps = declared["images"]["search_image"]
    assert [name for name, _, _ in steps] == [  # TEI's CPU image, the weights baked in: queries embedded here
        "from_registry",
        "entrypoint",
        "pip_install",
        "env",
        "run_function",
        "add_local_python_source",
    ]
    assert steps[0][1] == [modal_app.TEI_CPU_IMAGE] and "cuda" not in modal_app.TEI_CPU_IMAGE
    # the pipeline's packages and the web framework, each pinned to one version
    assert steps[2][1] == [*modal_app.RUNTIME_PACKAGES, *modal_app.WEB_PACKAGES]
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][0-9.]*", p) for p in modal_app.WEB_PACKAGES)
    assert {p.split("==")[0] for p in modal_app.WEB_PACKAGES} == {"fastapi", "pydantic", "uvicorn"}
    assert declared["named"]["search_secret"] == {"name": "search-api", "required_keys": ["SEARCH_API_TOKEN"]}
    assert (modal_app.SEARCH_SECRET_NAME, modal_app.SEARCH_TOKEN_KEY) == ("search-api", "SEARCH_API_TOKEN")


# -- set from the deploying shell -------------------------------------------------------
def test_the_deploy_time_variables_default_when_unset(declared):
    assert deploy_settings({}) == DeploySettings(
        gpus=10,
        reindex_cron="0 3 * * 0",
        dataset="wikimedia/wikipedia",
        snapshots=("20231101.en",),
        search_collection="wikipedia",
        search_min_containers=1,
    )
    assert modal_app.MAX_CONTAINERS == modal_app.DEPLOY.gpus
    assert modal_app.SEARCH_COLLECTION == modal_app.DEPLOY.search_collection
    env_step = [args for name, args, _ in declared["images"]["search_image"] if name == "env"]
    assert env_step[0][0]["WIKI_SEARCH_COLLECTION"] == "wikipedia"


def test_max_containers_is_set_from_the_environment_at_deploy_time(declared_from_env):
    assert declared_from_env["options"]["GPUWorker"]["max_containers"] == 50
    # the preflight's container imports the app without the shell's environment: the count travels with it
    assert declared_from_env["options"]["preflight"]["env"] == {"WIKI_EMBED_GPUS": "50"}
    assert deploy_settings({"WIKI_EMBED_GPUS": " 100 "}).gpus == 100


@pytest.mark.parametrize("bad", ["0", "-3", "lots"])
def test_a_bad_gpu_count_is_refused(bad):
    with pytest.raises(SettingsError, match="WIKI_EMBED_GPUS"):
        deploy_settings({"WIKI_EMBED_GPUS": bad})


def test_a_deploy_with_a_bad_gpu_count_fails_before_declaring_anything(tmp_path):
    done = run_python("import ingest.modal_app", tmp_path, WIKI_EMBED_GPUS="lots")
    assert done.returncode != 0
    assert "SettingsError" in done.stderr and "WIKI_EMBED_GPUS='lots'" in done.stderr


def test_the_schedule_and_the_snapshots_are_set_from_the_environment_at_deploy_time(declared_from_env, tmp_path):
    assert declared_from_env["schedules"] == {"scheduled_reindex": "Cron('30 4 * * *', UTC)"}
    assert declared_from_env["snapshots"] == ["20231101.en", "20231201.en"]
    # The container does not get the deploying shell's environment, only the function's `env`:
    # importing the module there with just that must give the same snapshots.
    env = declared_from_env["options"]["scheduled_reindex"]["env"]
    assert env == {"WIKI_SNAPSHOTS": "20231101.en,20231201.en", "WIKI_DATASET": "wikimedia/wikipedia"}
    seen = run_python("import ingest.modal_app as m; print(','.join(m.SNAPSHOTS))", tmp_path, **env)
    assert seen.stdout.strip() == "20231101.en,20231201.en", seen.stderr


def test_the_quick_starts_create_every_secret_before_the_first_run(declared):
    """`modal run` creates every function of the app, each with its secrets: a secret the
    quick-start does not create stops even `download_dataset`."""
    secrets = {spec["name"] for attr, spec in declared["named"].items() if attr.endswith("_secret")}
    assert secrets == {"qdrant", "search-api"}
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## The whole of Wikipedia on Modal") :]
    operations = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    steps = operations[operations.index("## The whole of Wikipedia on Modal") :]
    header = "\n".join(
        line for line in (ROOT / "ingest" / "modal_app.py").read_text().splitlines() if line.startswith("#")
    )
    for where, text in (("README", section), ("docs/operations.md", steps), ("ingest/modal_app.py's header", header)):
        commands = re.findall(r"modal secret create (\S+)|modal (run|deploy) ", text)
        created = [name for name, verb in commands if name]
        first_run = next(i for i, (name, verb) in enumerate(commands) if verb)
        assert set(created[:first_run]) >= secrets, f"{where} runs the app before creating {secrets - set(created)}"


def test_every_command_of_the_modal_quick_start_is_one_the_app_and_the_clis_take():
    """The README's, docs/operations.md's and the header's commands, step by step: each `modal run`
    names a function (or the entrypoint) of the app and only parameters it has; each
    `python -m ingest` line parses with the command's own parser."""
    import inspect
    import shlex

    from ingest.cli import DELEGATED, build_parser

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("## The whole of Wikipedia on Modal")
    section = readme[start : readme.index("\n## ", start)]
    operations = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    operations = operations[operations.index("## The whole of Wikipedia on Modal") :]  # the steps, in depth
    header = "\n".join(
        line[1:] for line in (ROOT / "ingest" / "modal_app.py").read_text().splitlines() if line.startswith("#")
    )
    lines = [
        line.split("  #")[0].strip()
        for text in (section, operations, header)
        for line in re.sub(r"\\\n\s*", " ", text).splitlines()
    ]  # continued lines joined
    commands = [
        line
        for line in lines
        if line.startswith(("modal run", "WIKI_EMBED_GPUS=", "python -m ingest"))
        and ("modal run" in line or "python -m ingest" in line)
    ]
    checked = 0
    for command in commands:
        words = shlex.split(command.split("modal run", 1)[-1] if "modal run" in command else command)
        if "modal run" in command:
            target = words[1]  # -m ingest.modal_app[::function]
            function = target.split("::")[1] if "::" in target else "main"
            flags = [w[2:].replace("-", "_") for w in words[2:] if w.startswith("--")]
            wrapped = getattr(modal_app, function)
            # the Python function the decorator wrapped (modal 1.6: `LocalEntrypoint.info.raw_f`, and a
            # Function's `_raw_f_`, which modal has no public accessor for)
            raw = wrapped.info.raw_f if function == "main" else wrapped._raw_f_
            assert set(flags) <= set(inspect.signature(raw).parameters), (command, flags)
        else:
            argv = words[words.index("ingest") + 1 :]
            if argv and argv[0] in DELEGATED:
                module, _, name = DELEGATED[argv[0]].partition(":")
                parser = __import__(module, fromlist=[name]).build_parser()
                parser.parse_args(argv[1:])
            else:
                build_parser().parse_args(argv)
        checked += 1
    assert checked >= 8


def test_the_search_collection_is_baked_into_the_search_image(declared_from_env):
    # The container imports the module again; it finds the collection in the image's environment.
    env_step = [args for name, args, _ in declared_from_env["images"]["search_image"] if name == "env"]
    assert env_step[0][0]["WIKI_SEARCH_COLLECTION"] == "wikipedia_canary"
    assert deploy_settings({"WIKI_SEARCH_COLLECTION": "wikipedia_canary"}).search_collection == "wikipedia_canary"


# -- the plain-Python pieces ------------------------------------------------------------
def test_the_workers_start_tei_on_the_cached_weights_in_float16_and_the_search_on_the_cpu():
    config = modal_app.worker_config()
    command = router_command(config.router)
    assert command[0] == "text-embeddings-router"  # no /entrypoint.sh on this machine
    flags = dict(zip(command[1::2], command[2::2]))
    assert (flags["--hostname"], flags["--payload-limit"]) == ("127.0.0.1", "2000000")
    assert flags["--model-id"] == MODEL and flags["--revision"] == modal_app.MODEL_REVISION
    assert flags["--huggingface-hub-cache"] == modal_app.WEIGHTS_DIR and flags["--dtype"] == "float16"
    assert flags["--tokenization-workers"] == str(modal_app.TEI_TOKENIZATION_WORKERS)  # bench-cpu's sizing
    assert command[-1] == "--auto-truncate" and config.tokenizer == modal_app.TOKENIZER_JSON
    in_flight = (modal_app.SHARDS_PER_CONTAINER + 1) * modal_app.TEI_CONCURRENCY
    assert int(flags["--max-concurrent-requests"]) == modal_app.BATCH_SIZE * in_flight
    # a call from ModalEmbedder never carries more inputs than the served TEI accepts at once
    assert int(flags["--max-client-batch-size"]) == modal_app.BATCH_SIZE >= DEFAULT_BATCH_SIZE
    cpu = router_command(modal_app.worker_config(cpu=True).router)
    cpu_flags = dict(zip(cpu[1::2], cpu[2::2]))
    assert cpu[0] == "text-embeddings-router" and cpu_flags["--dtype"] == "float32"  # CPU image: no script
    assert "--tokenization-workers" not in cpu_flags  # the search's TEI embeds on its CPU: TEI's default
    assert (cpu_flags["--model-id"], cpu_flags["--revision"]) == (MODEL, modal_app.MODEL_REVISION)  # the same model


def test_the_router_starts_through_the_images_entrypoint_script_where_there_is_one(tmp_path, capsys):
    """TEI 1.9.1+ CUDA images add the CUDA forward-compatibility libraries in their
    entrypoint script; starting the bare router skips that on an older host driver, so
    the fallback is said in the log (and the preflight fails on it)."""
    script = tmp_path / "entrypoint.sh"
    assert modal_app.tei_executable(str(script)) == ("text-embeddings-router",)
    assert f"no {script} in this image" in capsys.readouterr().err
    script.write_text('#!/bin/sh\nexec text-embeddings-router "$@"\n')
    assert modal_app.tei_executable(str(script)) == (str(script),)
    assert modal_app.TEI_ENTRYPOINT == "/entrypoint.sh"  # Dockerfile-cuda: COPY cuda-entrypoint.sh entrypoint.sh


def test_the_containers_tei_gets_an_environment_without_teis_flag_variables(monkeypatch):
    monkeypatch.setenv("API_KEY", "from-some-secret")
    monkeypatch.setenv("HOSTNAME", "10.1.2.3")
    config = modal_app.worker_config()
    environment = router_module.router_environment(config.env)
    assert "API_KEY" not in environment and "HOSTNAME" not in environment
    assert environment["PATH"] == os.environ["PATH"] and config.router.url == f"http://127.0.0.1:{modal_app.TEI_PORT}"


def test_pin_revision_records_the_commit_where_tei_looks_for_it(tmp_path):
    revision = "5c38ec7c405ec4b44b94cc5a9bb96e735b38267a"
    repo = tmp_path / "models--BAAI--bge-small-en-v1.5"
    with pytest.raises(FileNotFoundError, match="not in the hub cache"):
        weights.pin_revision(str(tmp_path), MODEL, revision)
    (repo / "snapshots" / revision).mkdir(parents=True)
    path = weights.pin_revision(str(tmp_path), MODEL, revision)
    assert Path(path) == repo / "refs" / revision and Path(path).read_text() == revision


def test_download_weights_caches_the_pinned_revision_where_tei_and_the_chunker_read_it(monkeypatch, tmp_path):
    import huggingface_hub

    downloads = []

    def snapshot_download(repo_id, *, revision, cache_dir, allow_patterns):
        downloads.append((repo_id, revision, cache_dir, allow_patterns))
        snapshot = Path(cache_dir) / f"models--{repo_id.replace('/', '--')}" / "snapshots" / revision
        snapshot.mkdir(parents=True)  # the hub cache's layout
        (snapshot / "tokenizer.json").write_text("{}")
        return str(snapshot)

    in_image = Path(modal_app.TOKENIZER_JSON).relative_to(modal_app.WEIGHTS_DIR)  # the chunker's tokenizer
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    assert modal_app.download_weights is weights.download_weights  # the image's build step
    weights.download_weights(str(tmp_path))
    ((repo_id, revision, cache_dir, patterns),) = downloads
    assert (repo_id, revision, cache_dir) == (MODEL, modal_app.MODEL_REVISION, str(tmp_path))
    assert "*.json" in patterns and "*.safetensors" in patterns and not any("onnx" in p for p in patterns)
    repo = tmp_path / "models--BAAI--bge-small-en-v1.5"
    assert (repo / "refs" / modal_app.MODEL_REVISION).read_text() == modal_app.MODEL_REVISION
    assert (tmp_path / in_image).is_file()  # the tokenizer the chunker counts with: this download's


def test_the_weights_step_imports_nothing_of_the_project():
    """Its build container holds only the step's own package (`ingest`): a project import
    at its module's top would fail there, as `schemas` did (tests/test_containers.py runs it)."""
    import ast

    tree = ast.parse(Path(weights.__file__).read_text(encoding="utf-8"))
    top = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    names = [alias.name for node in top for alias in node.names] + [getattr(node, "module", "") for node in top]
    assert not [n for n in names if n and n.split(".")[0] in ("ingest", "schemas", "search", "huggingface_hub")]


class FakeVolume:
    """`modal.Volume` as the functions use it: what they call, and what was on disk then."""

    def __init__(self, watch: Path | None = None):
        self.calls: list[str] = []
        self.watch = watch

    def reload(self) -> None:
        self.calls.append("reload")

    def commit(self) -> None:
        self.calls.append("commit" if self.watch is None or not self.watch.exists() else f"commit {self.watch.name}")


def test_download_dataset_saves_the_config_on_the_volume_then_commits(monkeypatch, tmp_path):
    import datasets

    loaded = []

    def load_dataset(name, config, *, split, num_proc):
        loaded.append((name, config, split))
        return datasets.Dataset.from_list([{"id": "1", "title": "A", "text": "a", "url": "u"}] * 3)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.setattr(modal_app, "DATA_DIR", str(tmp_path))
    volume = FakeVolume(watch=Path(modal_app.dataset_path("20231201.en")))
    monkeypatch.setattr(modal_app, "dataset_volume", volume)
    assert modal_app.download_dataset.local("20231201.en") == 3
    assert loaded == [("wikimedia/wikipedia", "20231201.en", "train")]
    assert volume.calls == ["commit wikipedia-20231201.en"]  # committed once the files are there
    assert len(datasets.load_from_disk(modal_app.dataset_path("20231201.en"))) == 3


def test_dataset_length_reloads_the_volume_and_says_when_there_is_no_dataset(monkeypatch, tmp_path):
    import datasets

    monkeypatch.setattr(modal_app, "dataset_volume", volume := FakeVolume())
    assert modal_app.dataset_length.local(str(tmp_path / "absent")) == -1
    datasets.Dataset.from_list([{"id": str(i)} for i in range(4)]).save_to_disk(str(tmp_path / "wiki"))
    assert modal_app.dataset_length.local(str(tmp_path / "wiki")) == 4
    assert volume.calls == ["reload", "reload"]  # a download committed after this container started is seen


class Remote:
    """A modal.Function seen from the driver: `.remote()` and `.starmap()`, run here
    with `.local()`; arguments, results and exceptions travel pickled, as they do
    between the driver and a container. `fail(*args)` may raise instead of running."""

    def __init__(self, function, fail=None):
        self.function, self.fail, self.calls, self.keywords = function, fail, [], []

    def remote(self, *args, **kwargs):
        args, kwargs = pickle.loads(pickle.dumps((args, kwargs)))
        self.calls.append(args)
        self.keywords.append(kwargs)
        if self.fail is not None:
            self.fail(*args)
        return pickle.loads(pickle.dumps(self.function.local(*args, **kwargs)))

    def starmap(self, inputs, *, order_outputs=True, return_exceptions=False):
        for args in list(inputs):
            try:
                yield self.remote(*args)
            except Exception as exc:
                if not return_exceptions:
                    raise
                yield pickle.loads(pickle.dumps(exc))


# -- the search endpoint ---------------------------------------------------------------
@pytest.fixture
def opened_searchers(monkeypatch, standin_tei):
    import search.api

    opened = []
    searcher = SimpleNamespace(
        name="wikipedia",
        store=SimpleNamespace(collection="wikipedia_2", exists=lambda: True),
        embedder=SimpleNamespace(embed_queries=lambda texts: [[0.0] * 384]),
        spec=SimpleNamespace(model=SimpleNamespace(name=MODEL), dimension=384),
        default_mode="hybrid",
        search=lambda query, k=5, **options: [],
    )
    monkeypatch.setattr(
        search.api.Searcher, "open", lambda store, embedder: opened.append((store, embedder)) or searcher
    )
    return opened


def test_the_search_endpoint_embeds_queries_on_its_own_cpu_tei_and_takes_qdrant_from_the_secret(
    monkeypatch, opened_searchers, standin_tei
):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from search.server import TOKEN_ENV

    monkeypatch.setenv("QDRANT_URL", "https://qdrant.example:6333")
    monkeypatch.setenv("QDRANT_API_KEY", "qdrant-key")
    monkeypatch.setenv(TOKEN_ENV, "token-from-the-secret")
    assert TOKEN_ENV == modal_app.SEARCH_TOKEN_KEY
    app = modal_app.search_api.local()  # the ASGI application, built in this process
    ((store, embedder),) = opened_searchers
    assert (store.qdrant_url, store.qdrant_api_key, store.collection) == (
        "https://qdrant.example:6333",
        "qdrant-key",
        modal_app.SEARCH_COLLECTION,
    )
    (router,) = standin_tei.started  # this container's own TEI (on the CPU): no GPU container to wake
    assert (embedder.embedder, embedder.tei_url, embedder.model) == ("tei", router.url, MODEL)
    assert "--dtype" in router.command and router.command[router.command.index("--dtype") + 1] == "float32"
    assert isinstance(app, FastAPI)
    with TestClient(app) as client:  # as Modal's ASGI adapter drives it: in process
        health = client.get("/health")
        assert health.status_code == 200 and health.json()["auth"] is True
        refused = client.post("/search", json={"query": "HAL"})  # the secret's token is asked for
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
        answer = client.post(
            "/search", json={"query": "HAL"}, headers={"Authorization": "Bearer token-from-the-secret"}
        )
        assert answer.status_code == 200 and answer.json()["hits"] == []
        assert client.get("/").headers["content-type"].startswith("text/html")  # the page, no token


def test_the_search_endpoint_without_the_qdrant_secret_says_how_to_create_it(monkeypatch, opened_searchers):
    monkeypatch.setenv(modal_app.SEARCH_TOKEN_KEY, "token")
    with pytest.raises(SettingsError, match="modal secret create qdrant"):
        modal_app.search_api.local()
    assert opened_searchers == []


# -- the GPU class, in this process --------------------------------------------------
@pytest.fixture
def standin_tei(monkeypatch):
    """The app's workers start the TEI stand-in (`ingest.rehearsal.standin_router`) on a free
    port, with the flags in `.server_flags`, instead of text-embeddings-router; every
    router started is recorded in `.started` and stopped after the test."""
    from ingest.embedders.local import resolve_model

    base = modal_app.worker_config
    server_flags: list[str] = []
    # The image's tokenizer.json lies under /weights; here, a real one of the same (BERT uncased) vocabulary.
    tokenizer = str(Path(resolve_model("all-MiniLM-L6-v2")[1]) / "tokenizer.json")

    def worker_config(*, cpu=False):
        config = base(cpu=cpu)
        router = dataclasses.replace(config.router, port=free_port(), executable=runner(*server_flags))
        return dataclasses.replace(config, router=router, tokenizer=tokenizer)

    monkeypatch.setattr(modal_app, "worker_config", worker_config)
    started = []

    class TrackedRouter(router_module.Router):
        def start(self):
            started.append(self)
            return super().start()

    monkeypatch.setattr(worker_module, "Router", TrackedRouter)
    yield SimpleNamespace(started=started, server_flags=server_flags)
    for router in started:
        router.stop()


@pytest.fixture
def gpu_class(standin_tei):
    """modal_app.GPUWorker whose enter hook starts the TEI stand-in."""
    return SimpleNamespace(cls=modal_app.GPUWorker, started=standin_tei.started, server_flags=standin_tei.server_flags)


@pytest.fixture
def on_volume(monkeypatch, tmp_path):
    """The Volume's folder and the container's local state under `tmp_path`, a fake
    Volume handle, and the embedded store (Qdrant Edge) in the `qdrant` secret's place."""
    data, state = tmp_path / "data", tmp_path / "state"
    for name, path in (
        ("DATA_DIR", data),
        ("STATE_DIR", state),
        ("MANIFESTS_DIR", state / "manifests"),
        ("RUNS_DIR", state / "runs"),
        ("LOCAL_STATE_DIR", tmp_path / "container-state"),
    ):
        monkeypatch.setattr(modal_app, name, str(path))
    monkeypatch.setattr(modal_app, "SNAPSHOTS_FILE", str(state / "snapshots.json"))
    monkeypatch.setattr(modal_app, "dataset_volume", volume := FakeVolume())
    monkeypatch.setattr(modal_app, "state_volume", state_volume := FakeVolume())
    monkeypatch.setattr(modal_app, "locks", locks := FakeDict())
    monkeypatch.setenv("QDRANT_PATH", str(tmp_path / "qdrant"))
    return SimpleNamespace(
        volume=volume,
        state_volume=state_volume,
        data=data,
        qdrant=str(tmp_path / "qdrant"),
        local_state=tmp_path / "container-state",
        locks=locks,
    )


class FakeDict(dict):
    """`modal.Dict` as `ingest.sharded.reindex.RunLock` uses it: `put` with
    `skip_if_exists` stores only an absent key and says whether it did (modal 1.6.4
    `dict.py:556-573`)."""

    def put(self, key, value, *, skip_if_exists=False):
        if skip_if_exists and key in self:
            return False
        self[key] = value
        return True


def save_snapshot(config: str, rows: list[dict]) -> str:
    import datasets

    datasets.disable_progress_bars()
    path = modal_app.dataset_path(config)
    datasets.Dataset.from_list(rows).save_to_disk(path)
    return path


def article(i, text=None, title=None) -> dict:
    return {
        "id": str(i),
        "url": f"https://example.org/{i}",
        "title": title or f"Title {i}",
        "text": text or f"Article number {i} is short. It has two sentences.",
    }


def live(qdrant_path: str, name: str = "wikipedia") -> tuple[str | None, int]:
    """Where `name` leads in the store, and how many points that collection holds."""
    store = open_store(StoreSettings(qdrant_path=qdrant_path))
    try:
        collection = store.resolve(name).collection
        return collection, (store.at(collection).count() if collection else 0)
    finally:
        store.close()


def lifecycle_hooks(worker, flag: str) -> dict:
    """The hooks of `worker`'s instance that modal's container runtime calls at start
    ("ENTER_POST_SNAPSHOT") or at shutdown ("EXIT"), found as that runtime finds them
    (modal._runtime.user_code_imports). Private API, modal 1.6: modal has no public
    way to list or run a class's lifecycle hooks; `_cached_user_cls_instance` is the
    instance that `.local()` calls run on."""
    from modal._partial_function import _find_callables_for_obj, _PartialFunctionFlags

    return _find_callables_for_obj(worker._cached_user_cls_instance(), getattr(_PartialFunctionFlags, flag))


CHUNKING = {"max_chars": 1000, "overlap_chars": 0, "title_prefix": True, "sparse": modal_app.SPARSE}


def test_the_gpu_class_embeds_reports_its_spec_and_ingests_a_shard(gpu_class, monkeypatch, tmp_path):
    monkeypatch.setenv("QDRANT_PATH", str(tmp_path / "qdrant"))  # the secret's, in the container from its start
    worker = gpu_class.cls()
    vectors = worker.embed.local(["Paris", "Rome"])
    assert isinstance(vectors, list) and isinstance(vectors[0], list)
    np.testing.assert_allclose(vectors, deterministic_vectors(["Paris", "Rome"]), atol=1e-6)
    spec = worker.spec.local()
    assert (spec["name"], spec["dimension"], spec["revision"]) == (MODEL, 384, modal_app.MODEL_REVISION)
    assert spec["query_instruction"] == BGE_QUERY_INSTRUCTION

    monkeypatch.setattr(modal_app, "DATA_DIR", str(tmp_path))
    path = save_snapshot("test", [article(i) for i in range(6)])
    result = worker.ingest_shard.local(2, 6, path, "wiki", {"max_chars": 500}, 8)
    assert isinstance(result, ShardResult)
    assert (result.shard, result.summary.articles, result.summary.points_written) == ((2, 6), 4, 4)
    assert result.dead_letters == []

    with pytest.raises(ShardError, match=r"shard \[0, 3\): SourceError") as raised:
        worker.ingest_shard.local(0, 3, str(tmp_path / "absent"), "wiki", {}, 8)
    assert pickle.loads(pickle.dumps(raised.value)).shard == (0, 3)  # the driver learns which shard failed
    assert len(gpu_class.started) == 1  # one TEI server for the container's life


def test_a_container_whose_gpu_broke_stops_fetching_inputs(gpu_class, monkeypatch, tmp_path):
    """A sick backend fails the shard as broken; the container then asks Modal for no more
    work (`modal.experimental.stop_fetching_inputs`, modal 1.6.4 experimental/__init__.py:50-54),
    so the queue goes to healthy containers instead of draining into this one."""
    monkeypatch.setenv("QDRANT_PATH", str(tmp_path / "qdrant"))
    monkeypatch.setattr(modal_app, "DATA_DIR", str(tmp_path))
    path = save_snapshot("test", [article(i) for i in range(6)])
    gpu_class.server_flags += ["--sick-after", "3"]  # the probe, then a few requests, then every batch fails
    stopped = []
    monkeypatch.setattr(modal, "is_local", lambda: False)  # as in a container
    monkeypatch.setattr(modal.experimental, "stop_fetching_inputs", lambda: stopped.append(True))
    worker = gpu_class.cls()
    with pytest.raises(ShardError, match="GPU is broken") as failed:
        worker.ingest_shard.local(0, 6, path, "wiki", {"max_chars": 100}, 2)
    assert failed.value.broken and stopped == [True]
    with pytest.raises(ShardError, match="not started"):
        worker.ingest_shard.local(0, 6, path, "wiki", {"max_chars": 100}, 2)


def test_the_gpu_class_starts_tei_on_enter_and_stops_it_on_exit(gpu_class):
    worker = gpu_class.cls()
    assert set(lifecycle_hooks(worker, "ENTER_POST_SNAPSHOT")) == {"start_server"}
    assert set(lifecycle_hooks(worker, "ENTER_PRE_SNAPSHOT")) == set()
    assert gpu_class.started == []  # nothing runs until the first call
    worker.embed.local(["a"])
    worker.embed.local(["b"])
    (router,) = gpu_class.started
    assert router.running and worker.worker.router is router
    embedder, closed = worker.worker.embedder, []
    embedder.close = lambda close=embedder.close: closed.append(True) or close()
    exit_hooks = lifecycle_hooks(worker, "EXIT")
    assert set(exit_hooks) == {"stop_server"}
    for hook in exit_hooks.values():
        hook()
    assert not router.running and closed == [True]


def test_a_sharded_load_then_reindexes_on_fresh_containers(gpu_class, on_volume):
    worker = gpu_class.cls()
    path = save_snapshot("20231101.en", [article(i) for i in range(6)])
    plan = worker.prepare_load.local("wikipedia", CHUNKING, "20231101.en-6-3")
    assert (plan.name, plan.live, plan.created, plan.finished) == ("wikipedia", None, True, [])
    assert Path(plan.records).is_relative_to(modal_app.RUNS_DIR)
    assert on_volume.state_volume.calls == ["reload", "commit"] and on_volume.volume.calls == []
    results = [
        worker.ingest_shard.local(start, start + 3, path, plan.collection, CHUNKING, 8, plan.records)
        for start in (0, 3)
    ]
    assert [r.summary.points_written for r in results] == [3, 3]
    assert sorted(p.name for p in Path(plan.records).iterdir()) == [
        "000000000000-000000000003.json",
        "000000000003-000000000006.json",
    ]  # recorded on the Volume
    assert on_volume.volume.calls == [] and on_volume.state_volume.calls.count("commit") == 3  # one per record
    again = worker.prepare_load.local("wikipedia", CHUNKING, "20231101.en-6-3")  # a rerun skips them
    assert again.finished == [dataclasses.replace(r, stamp=None) for r in results]
    report = worker.finish_load.local("wikipedia", CHUNKING, plan, False, "20231101.en")
    assert report == f"manifest of {plan.collection}: 6 articles; wikipedia now leads to {plan.collection}"
    assert live(on_volume.qdrant) == (plan.collection, 6)
    assert (Path(modal_app.MANIFESTS_DIR) / f"{plan.collection}.sqlite").is_file()  # checkpointed to the Volume
    assert json.loads(Path(modal_app.SNAPSHOTS_FILE).read_text()) == {plan.collection: "20231101.en"}

    # A month later, on a container that has none of this one's local files:
    shutil.rmtree(on_volume.local_state, ignore_errors=True)
    rows = [
        article(0, "Article zero was edited. It has two sentences still."),
        *map(article, range(1, 4)),
        article(9, "A new article. It has two sentences."),
    ]
    save_snapshot("20231201.en", rows)
    on_volume.volume.calls.clear()
    on_volume.state_volume.calls.clear()
    report = modal_app.reindex.local(config="20231201.en")
    assert report.startswith("20231201.en: articles added 1, changed 1, unchanged 3, deleted 2; chunks embedded 2")
    assert on_volume.volume.calls == ["reload"]  # before the dump is mapped; never committed while it is
    assert "commit" in on_volume.state_volume.calls  # the manifest's checkpoints
    assert live(on_volume.qdrant) == (plan.collection, 5)  # in place: the alias did not move
    assert json.loads(Path(modal_app.SNAPSHOTS_FILE).read_text()) == {plan.collection: "20231201.en"}
    assert on_volume.locks == {}  # the cross-container lock was taken and given back

    shutil.rmtree(on_volume.local_state, ignore_errors=True)  # and again: the Volume remembers that reindex
    report = modal_app.reindex.local(config="20231201.en")
    assert "articles added 0, changed 0, unchanged 5, deleted 0; chunks embedded 0" in report
    assert all(not router.running for router in gpu_class.started[1:])  # reindex stops the TEI it started


def test_the_reindex_chunks_and_lexes_as_the_live_collection_was_built(gpu_class, on_volume):
    """A collection loaded with other chunking and no lexical vectors, under another
    name: the reindex reads its build record instead of assuming the defaults."""
    worker = gpu_class.cls()
    layout = {"max_chars": 300, "overlap_chars": 0, "title_prefix": True, "sparse": "none"}
    long = " ".join(f"Sentence {i} of the long article is here." for i in range(30))
    path = save_snapshot("20231101.en", [article(0, long), article(1)])
    plan = worker.prepare_load.local("encyclopedia", layout, "k")
    worker.ingest_shard.local(0, 2, path, plan.collection, layout, 8, plan.records)
    worker.finish_load.local("encyclopedia", layout, plan)
    loaded = live(on_volume.qdrant, "encyclopedia")
    save_snapshot("20231102.en", [article(0, long + " One more sentence."), article(1), article(2)])
    report = modal_app.reindex.local(config="20231102.en", collection="encyclopedia")
    assert "added 1, changed 1, unchanged 1" in report
    now = live(on_volume.qdrant, "encyclopedia")
    assert now[0] == loaded[0] and now[1] == loaded[1] + 1  # in place, the same 300-character chunks
    store = open_store(StoreSettings(qdrant_path=on_volume.qdrant))
    try:
        assert store.at(now[0]).read_spec().sparse is None
    finally:
        store.close()


def test_the_weekly_reindex_runs_only_when_the_newest_snapshot_is_new_to_the_live_collection(
    gpu_class, on_volume, monkeypatch
):
    worker = gpu_class.cls()
    path = save_snapshot("20231101.en", [article(i) for i in range(3)])
    plan = worker.prepare_load.local("wikipedia", CHUNKING, "k")
    worker.ingest_shard.local(0, 3, path, plan.collection, CHUNKING, 8, plan.records)
    worker.finish_load.local("wikipedia", CHUNKING, plan, False, "20231101.en")
    fetched, reindexed = [], []
    monkeypatch.setattr(
        modal_app,
        "download_dataset",
        SimpleNamespace(remote=lambda config: fetched.append(config) or Path(modal_app.dataset_path(config)).mkdir()),
    )
    monkeypatch.setattr(
        modal_app,
        "reindex",
        SimpleNamespace(remote=lambda **kwargs: reindexed.append(kwargs) or f"{kwargs['config']}: report"),
    )
    # wikimedia/wikipedia has one English dump: the load's. Nothing to do, and no GPU held.
    assert "already holds 20231101.en" in modal_app.scheduled_reindex.local()
    assert (fetched, reindexed) == ([], [])
    monkeypatch.setattr(modal_app, "SNAPSHOTS", ("20231101.en", "20240101.en", "20231201.en"))
    assert modal_app.scheduled_reindex.local() == "20240101.en: report"
    assert fetched == ["20240101.en"] and reindexed == [{"config": "20240101.en", "collection": "wikipedia"}]
    monkeypatch.setattr(modal_app, "SNAPSHOTS", ("latest",))
    with pytest.raises(SettingsError, match="starts with a date"):
        modal_app.scheduled_reindex.local()


def test_a_second_reindex_of_the_collection_waits_for_the_first(gpu_class, on_volume):
    import time as clock

    worker = gpu_class.cls()
    path = save_snapshot("20231101.en", [article(i) for i in range(2)])
    plan = worker.prepare_load.local("wikipedia", CHUNKING, "k")
    worker.ingest_shard.local(0, 2, path, plan.collection, CHUNKING, 8, plan.records)
    worker.finish_load.local("wikipedia", CHUNKING, plan)
    on_volume.locks["reindex:wikipedia"] = {"holder": "ta-other", "since": clock.time() - 60}
    with pytest.raises(RunLockedError, match="another reindex of this collection is running .ta-other"):
        modal_app.reindex.local(config="20231101.en")
    on_volume.locks["reindex:wikipedia"] = {"holder": "ta-dead", "since": clock.time() - modal_app.REINDEX_TIMEOUT - 1}
    assert "unchanged 2" in modal_app.reindex.local(config="20231101.en")  # a dead holder's lock is taken over


def test_a_rebuild_with_drop_old_takes_the_dropped_collections_manifest_off_the_volume(gpu_class, on_volume):
    worker = gpu_class.cls()
    path = save_snapshot("20231101.en", [article(i) for i in range(3)])
    plans = []
    for layout in (CHUNKING, {**CHUNKING, "max_chars": 500}):  # other chunking: another collection
        plan = worker.prepare_load.local("wikipedia", layout, "k", False, True)
        worker.ingest_shard.local(0, 3, path, plan.collection, layout, 8, plan.records)
        worker.finish_load.local("wikipedia", layout, plan, True)
        plans.append(plan)
    manifests = sorted(p.name for p in Path(modal_app.MANIFESTS_DIR).iterdir())
    assert manifests == [f"{plans[1].collection}.sqlite"]  # the first one's went with its collection
    assert live(on_volume.qdrant)[0] == plans[1].collection


def test_the_reindex_chunks_an_edited_article_as_the_load_did(gpu_class, on_volume):
    worker = gpu_class.cls()
    cjk = "\n".join("北京是中国的首都城市之一" for _ in range(70))  # ~900 characters, ~900 tokens
    path = save_snapshot("20231101.en", [article(0, cjk, "T"), article(1)])
    plan = worker.prepare_load.local("wikipedia", CHUNKING, "k")
    loaded = worker.ingest_shard.local(0, 2, path, plan.collection, CHUNKING, 8, plan.records)
    worker.finish_load.local("wikipedia", CHUNKING, plan)
    assert loaded.summary.chunks == 3  # the CJK article in two chunks of at most 512 tokens
    save_snapshot("20231201.en", [article(0, cjk.replace("北", "南", 1), "T"), article(1)])
    modal_app.reindex.local(config="20231201.en")
    assert live(on_volume.qdrant) == (plan.collection, 3)  # a one-character edit: the same chunks


# -- the driver, in this process ---------------------------------------------------------
@pytest.fixture
def deployed(gpu_class, on_volume, monkeypatch):
    """`main` with every `.remote()` run here: the GPU class's methods on one
    in-process container, `dataset_length` and `download_dataset` on fakes of the
    Volume and of the hub. `deployed.fail_shards`: shards whose container fails."""
    import datasets

    worker = gpu_class.cls()
    fail_shards: set[tuple[int, int]] = set()

    def fail(start, stop, *rest):
        if (start, stop) in fail_shards:
            raise ShardError(start, stop, "ConnectionError: the container lost Qdrant")

    methods = SimpleNamespace(
        prepare_load=Remote(worker.prepare_load),
        finish_load=Remote(worker.finish_load),
        ingest_shard=Remote(worker.ingest_shard, fail),
    )
    monkeypatch.setattr(modal_app, "GPUWorker", lambda: methods)
    monkeypatch.setattr(modal_app, "dataset_length", Remote(modal_app.dataset_length))
    monkeypatch.setattr(modal_app, "download_dataset", Remote(modal_app.download_dataset))
    monkeypatch.setattr(modal_app, "wait_until_indexed", Remote(modal_app.wait_until_indexed))
    hub = {}
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config, **kw: datasets.Dataset.from_list(hub[config]))
    return SimpleNamespace(methods=methods, fail_shards=fail_shards, hub=hub, **vars(on_volume))


def test_main_downloads_loads_every_shard_and_moves_the_alias(deployed, capsys, tmp_path):
    deployed.hub["20231101.en"] = [article(i) for i in range(7)]
    dead_letter = tmp_path / "dead.jsonl"
    modal_app.main(shard_size=3, window=4, dead_letter=str(dead_letter))
    out = capsys.readouterr().out
    assert "downloading wikimedia/wikipedia 20231101.en first" in out
    assert "7 articles in 3 shards of 3, on up to 10 A10Gs" in out
    assert [call[:2] for call in deployed.methods.ingest_shard.calls] == [(0, 3), (3, 6), (6, 7)]
    (plan_call,) = deployed.methods.prepare_load.calls
    assert plan_call[2] == "20231101.en-7-3"  # the run's key: the same command resumes it
    collection, points = live(deployed.qdrant)
    assert points == 7 and f"wikipedia now leads to {collection}" in out
    assert "shards               3 done" in out and not dead_letter.exists()


def test_main_writes_the_dead_letters_of_refused_chunks(deployed, capsys, tmp_path, gpu_class):
    gpu_class.server_flags += ["--poison", "POISON"]  # TEI refuses any batch holding it, as a too-long input
    rows = [article(i) for i in range(4)]
    rows[2] = article(2, "This one is POISON to the server. It has two sentences.")
    save_snapshot("20231101.en", rows)
    dead_letter = tmp_path / "dead.jsonl"
    modal_app.main(shard_size=2, window=4, dead_letter=str(dead_letter))
    out = capsys.readouterr().out
    (record,) = [json.loads(line) for line in dead_letter.read_text().splitlines()]
    assert record["article_id"] == "2" and "1 dead letters appended" in out
    assert live(deployed.qdrant)[1] == 3  # the others landed, and the alias moved


def test_main_retries_failed_shards_and_a_rerun_resumes_where_it_stopped(deployed, capsys, tmp_path):
    save_snapshot("20231101.en", [article(i) for i in range(6)])
    deployed.fail_shards.add((2, 4))
    with pytest.raises(SystemExit, match=r"1 shards failed after 2 rounds; the alias did not move"):
        modal_app.main(shard_size=2, max_rounds=2, window=4, dead_letter=str(tmp_path / "dead.jsonl"))
    out = capsys.readouterr().out
    assert "failed shard [2, 4): ConnectionError: the container lost Qdrant" in out
    assert [call[:2] for call in deployed.methods.ingest_shard.calls] == [(0, 2), (2, 4), (4, 6), (2, 4)]
    assert deployed.methods.finish_load.calls == [] and live(deployed.qdrant) == (None, 0)

    deployed.fail_shards.clear()
    deployed.methods.ingest_shard.calls.clear()
    modal_app.main(shard_size=2, max_rounds=2, window=4, dead_letter=str(tmp_path / "dead.jsonl"))
    out = capsys.readouterr().out
    assert "2 shards already done by an earlier attempt" in out
    assert [call[:2] for call in deployed.methods.ingest_shard.calls] == [(2, 4)]
    assert live(deployed.qdrant)[1] == 6


def test_the_documented_trial_then_the_full_run_on_a_fresh_qdrant(deployed, capsys, tmp_path):
    """The README's flow: `--limit` first, on a Qdrant that holds nothing, then the whole
    corpus. The trial lives under its own name and never becomes `wikipedia`, so the full
    run after it starts cleanly (it used to be refused: "use the incremental reindex")."""
    save_snapshot("20231101.en", [article(i) for i in range(6)])
    modal_app.main(limit=4, shard_size=2, window=4, dead_letter=str(tmp_path / "dead.jsonl"))
    out = capsys.readouterr().out
    assert "a trial, built as wikipedia-trial" in out and "wikipedia-trial now leads to" in out
    assert [call[:2] for call in deployed.methods.ingest_shard.calls] == [(0, 2), (2, 4)]
    trial = live(deployed.qdrant, "wikipedia-trial")
    assert trial[1] == 4 and live(deployed.qdrant) == (None, 0)  # the live name is untouched

    deployed.methods.ingest_shard.calls.clear()
    modal_app.main(shard_size=3, window=4, dead_letter=str(tmp_path / "dead.jsonl"))
    assert [call[:2] for call in deployed.methods.ingest_shard.calls] == [(0, 3), (3, 6)]
    full = live(deployed.qdrant)
    assert full[1] == 6 and f"wikipedia now leads to {full[0]}" in capsys.readouterr().out
    assert live(deployed.qdrant, "wikipedia-trial") == trial  # the trial is still there to compare with

    deployed.methods.ingest_shard.calls.clear()
    modal_app.main(limit=2, chunk_size=500, shard_size=2, window=4, dead_letter=str(tmp_path / "dead.jsonl"))
    assert live(deployed.qdrant) == full  # a later trial, of other settings, leaves the live collection alone
    assert live(deployed.qdrant, "wikipedia-trial")[1] == 2


def test_main_builds_the_sparse_vectors_it_is_asked_for(deployed, tmp_path):
    save_snapshot("20231101.en", [article(i) for i in range(2)])
    modal_app.main(shard_size=2, window=4, sparse="none", dead_letter=str(tmp_path / "dead.jsonl"))
    store = open_store(StoreSettings(qdrant_path=deployed.qdrant))
    try:
        assert store.at(store.resolve("wikipedia").collection).read_spec().sparse is None
    finally:
        store.close()


# -- ModalEmbedder against a fake deployed class ---------------------------------------
class FakeMethod:
    def __init__(self, function):
        self.function, self.calls = function, []

    def remote(self, *args):
        self.calls.append(args)
        return self.function(*args)


class FakeDeployedEmbedder:
    """What `modal.Cls.from_name("wiki-embed", "GPUWorker")()` gives: methods with `.remote`."""

    def __init__(self, spec: dict | None | str = "known", refuse: str | None = None):
        spec = KNOWN_MODELS[MODEL].to_dict() if spec == "known" else spec  # None: a deployment without spec()
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


def test_modal_embedder_against_the_gpu_class_in_this_process(gpu_class):
    """The deployed class as ModalEmbedder calls it, with the real class's methods."""
    worker = gpu_class.cls()
    remote = SimpleNamespace(embed=Remote(worker.embed), spec=Remote(worker.spec))
    embedder = ModalEmbedder(remote_cls=lambda: remote)
    assert embedder.spec.name == MODEL and embedder.spec.revision == modal_app.MODEL_REVISION
    vectors = embedder.embed_queries(["who painted the Mona Lisa"])
    np.testing.assert_allclose(
        vectors[0], deterministic_vector(BGE_QUERY_INSTRUCTION + "who painted the Mona Lisa"), atol=1e-6
    )


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
        (
            modal.exception.NotFoundError("Lookup failed for Cls 'GPUWorker' from the 'wiki-embed' app"),
            r"modal deploy -m ingest\.modal_app",
        ),
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


# -- the preflight ----------------------------------------------------------------------
def test_the_preflight_runs_every_check_on_the_containers_tei_and_the_containers_own(gpu_class, on_volume, monkeypatch):
    """Run through its plain-Python core: the worker's TEI (the loopback server, started
    as the container starts it), the store of the secret (the embedded store here), and the
    container's checks. No credentials here: the deployed class is skipped, not passed."""
    save_snapshot("20231101.en", [article(i) for i in range(4)])
    monkeypatch.setenv("QDRANT_API_KEY", "k")
    monkeypatch.setenv("SEARCH_API_TOKEN", "t")
    monkeypatch.setenv("MODAL_CONFIG_PATH", "/nonexistent/modal.toml")
    for name in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET"):
        monkeypatch.delenv(name, raising=False)
    table = modal_app.preflight.local(config="20231101.en", articles=6)
    rows = {line[6:36].strip(): line[:4] for line in table.splitlines() if line[:4] in ("PASS", "FAIL", "SKIP")}
    assert rows["JSON and base64 routes agree"] == "PASS" and rows["chunks fit the token limit"] == "PASS"
    assert rows["collection round trip"] == "PASS"
    assert rows["Qdrant supports the run"] == "SKIP"  # the embedded store: no server
    assert rows["Volume commit, dataset mapped"] == "PASS" and "commit" in on_volume.state_volume.calls
    assert rows["secrets are present"] == "FAIL" and "modal secret create qdrant QDRANT_URL=..." in table  # QDRANT_PATH
    assert rows["deployed class embeds alike"] == "SKIP" and "modal deploy -m ingest.modal_app" in table
    assert "k" not in [line.split()[-1] for line in table.splitlines()]  # no secret value in the table
    assert all(not router.running for router in gpu_class.started)
