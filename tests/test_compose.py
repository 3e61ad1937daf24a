"""docker-compose.yml: the local Qdrant and CPU TEI servers, pinned and secret-free."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

import ingest.modal_app as modal_app  # noqa: E402

COMPOSE = Path(__file__).resolve().parents[1] / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_has_qdrant_and_tei(compose):
    default = {name for name, service in compose["services"].items() if not service.get("profiles")}
    assert default == {"qdrant", "tei"}  # what `docker compose up` starts


def test_the_cluster_profile_is_three_peers_bootstrapped_from_the_first(compose):
    nodes = {name: s for name, s in compose["services"].items() if "cluster" in s.get("profiles", [])}
    assert set(nodes) == {"qdrant-node-1", "qdrant-node-2", "qdrant-node-3"}
    assert nodes["qdrant-node-1"]["command"] == ["./qdrant", "--uri", "http://qdrant-node-1:6335"]
    for name in ("qdrant-node-2", "qdrant-node-3"):
        assert nodes[name]["command"] == [
            "./qdrant",
            "--bootstrap",
            "http://qdrant-node-1:6335",
            "--uri",
            f"http://{name}:6335",
        ]
        assert "ports" not in nodes[name]  # reached through node 1; peer traffic (6335) is never published
    single = compose["services"]["qdrant"]
    for node in nodes.values():
        assert node["image"] == single["image"]
        assert node["environment"]["QDRANT__CLUSTER__ENABLED"] == "true"
        assert node["environment"]["QDRANT__SERVICE__API_KEY"] == single["environment"]["QDRANT__SERVICE__API_KEY"]
        (volume,) = node["volumes"]
        assert volume.endswith(":/qdrant/storage") and volume.split(":")[0] in compose["volumes"]
    assert set(nodes["qdrant-node-1"]["ports"]) == {"7333:6333", "7334:6334"}  # beside the single node's 6333


def test_images_are_pinned_to_a_version(compose):
    images = {name: service["image"] for name, service in compose["services"].items()}
    assert re.fullmatch(r"qdrant/qdrant:v1\.\d+\.\d+", images["qdrant"])
    assert images["tei"] == "ghcr.io/huggingface/text-embeddings-inference:cpu-1.9"
    for image in images.values():
        assert ":" in image and not image.endswith((":latest", ":main", ":cpu-latest"))


def test_qdrant_is_within_the_clients_compatibility_window(compose):
    from importlib.metadata import version

    server_minor = int(compose["services"]["qdrant"]["image"].split(":v")[1].split(".")[1])
    client_major, client_minor = (int(part) for part in version("qdrant-client").split(".")[:2])
    assert client_major == 1 and abs(client_minor - server_minor) <= 1


def test_qdrant_ports_storage_and_api_key_from_the_environment(compose):
    qdrant = compose["services"]["qdrant"]
    assert set(qdrant["ports"]) == {"6333:6333", "6334:6334"}
    assert "qdrant_storage:/qdrant/storage" in qdrant["volumes"]
    assert "qdrant_storage" in compose["volumes"]
    key = qdrant["environment"]["QDRANT__SERVICE__API_KEY"]
    assert re.fullmatch(r"\$\{QDRANT_API_KEY:\?[^}]+\}", key)  # required, never a literal


def test_tei_serves_the_modal_workers_model_and_revision(compose):
    tei = compose["services"]["tei"]
    command = [str(part) for part in tei["command"]]
    flags = dict(zip(command[::2], command[1::2]))
    assert flags["--model-id"] == modal_app.MODEL_ID == "BAAI/bge-small-en-v1.5"
    assert flags["--revision"] == modal_app.MODEL_REVISION
    assert flags["--port"] == "80" and tei["ports"] == ["8080:80"]
    cache = flags["--huggingface-hub-cache"]
    assert any(volume.endswith(f":{cache}") and volume.split(":")[0] in compose["volumes"] for volume in tei["volumes"])


def test_no_secret_values_in_the_file(compose):
    for name, service in compose["services"].items():
        environment = service.get("environment") or {}
        for key, value in environment.items():
            if any(word in key for word in ("KEY", "TOKEN", "SECRET", "PASSWORD")):
                assert str(value).startswith("${") and str(value).endswith("}"), f"{name}: {key} is a literal"
            else:
                assert str(value) in ("true", "false"), f"{name}: {key}={value!r}: a setting, or a secret?"
        command = [str(part) for part in service.get("command") or []]
        assert not {"--api-key", "--hf-token", "--hf-api-token"} & set(command), name
    settings = [line for line in COMPOSE.read_text().splitlines() if not line.lstrip().startswith("#")]
    long_hex = {m for line in settings for m in re.findall(r"\b[0-9a-fA-F]{32,}\b", line)}
    assert long_hex <= {modal_app.MODEL_REVISION}  # the model's commit is the only long hex string
