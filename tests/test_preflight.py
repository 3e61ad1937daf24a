"""python -m ingest preflight against the loopback TEI server (held to TEI's protocol)
and the embedded store: what passes, what fails with its fix, what is skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.chunking import ChunkingSettings
from ingest.cli import main
from ingest.embedders.local import resolve_model
from ingest.preflight import FAIL, PASS, SKIP, report, run_preflight
from ingest.rehearsal.tei import Faults, TEIServer
from ingest.settings import EmbedderSettings, IngestSettings, StoreSettings

MINILM_TOKENIZER = str(Path(resolve_model("all-MiniLM-L6-v2")[1]) / "tokenizer.json")


def settings_for(tmp_path, url, **embedder) -> IngestSettings:
    return IngestSettings(
        progress=False,
        window=16,
        chunking=ChunkingSettings(max_chars=300),
        embedder=EmbedderSettings(embedder="tei", tei_url=url, **embedder),
        store=StoreSettings(qdrant_path=str(tmp_path / "qdrant")),
    )


@pytest.fixture(scope="module")
def server():
    with TEIServer(model_id="BAAI/bge-small-en-v1.5") as running:
        running.info["model_sha"] = "5c38ec7c405ec4b44b94cc5a9bb96e735b38267a"
        yield running


def by_name(result):
    return {check.name: check for check in result.checks}


def test_a_healthy_tei_and_store_pass_and_what_needs_a_server_is_skipped(tmp_path, server, sample):
    result = run_preflight(
        settings_for(tmp_path, server.url, tei_tokenizer=MINILM_TOKENIZER),
        sample[:30],
        expect_model="BAAI/bge-small-en-v1.5",
        expect_revision="5c38ec7c405ec4b44b94cc5a9bb96e735b38267a",
        gpus=10,
        qdrant_seconds=1.0,
    )
    checks = by_name(result)
    assert {name: c.status for name, c in checks.items()} == {
        "TEI serves the pinned model": PASS,
        "JSON and base64 routes agree": PASS,
        "chunks fit the token limit": PASS,
        "Qdrant supports the run": SKIP,
        "collection round trip": PASS,
        "Qdrant write rate": PASS,
        "embedder throughput": PASS,
    }
    assert "5c38ec7c" in checks["TEI serves the pinned model"].detail
    assert "max |difference| 0.00e+00" in checks["JSON and base64 routes agree"].detail
    assert result.go and result.chars_per_s > 0 and result.points_per_s > 0
    assert result.projection.gpus == 10 and result.projection.searchable_seconds > result.projection.wall_seconds
    text = report(result)
    assert "the full corpus on 10 such GPUs" in text and "searchable after" in text
    assert text.splitlines()[-1] == "GO (1 not checked: Qdrant supports the run)"
    assert not list((tmp_path / "qdrant").glob("edge/shards/preflight-*"))  # the throw-away collections are gone


def test_what_a_full_run_would_trip_on_fails_with_its_fix(tmp_path, server, sample):
    result = run_preflight(
        settings_for(tmp_path, server.url),
        sample[:10],
        expect_model="BAAI/bge-small-en-v1.5",
        expect_revision="0" * 40,
        gpus=10,
        qdrant_seconds=0,
    )
    checks = by_name(result)
    model, budget = checks["TEI serves the pinned model"], checks["chunks fit the token limit"]
    assert model.status == FAIL and "--revision" in model.fix
    assert budget.status == FAIL and "--tei-tokenizer" in budget.fix  # chunks budgeted by characters only
    text = report(result)
    assert "FAIL  TEI serves the pinned model" in text and "fix: " in text
    assert "3 of 7 checks passed; 2 failed, 2 skipped" in text
    assert text.splitlines()[-1] == "NO-GO: 2 checks failed" and not result.go


def test_a_sick_gpu_is_a_no_go(tmp_path, sample):
    with TEIServer(model_id="BAAI/bge-small-en-v1.5", faults=Faults(sick_after=3)) as sick:
        result = run_preflight(
            settings_for(tmp_path, sick.url, tei_tokenizer=MINILM_TOKENIZER), sample[:5], qdrant_seconds=0
        )
    failed = [c for c in result.checks if c.status == FAIL]
    assert failed and not result.go and "its GPU is broken" in " ".join(c.detail for c in failed)


def test_the_command_exits_one_when_a_check_fails_and_prints_the_table(tmp_path, server, capsys):
    code = main(
        [
            "preflight",
            "--embedder",
            "tei",
            "--tei-url",
            server.url,
            "--qdrant-path",
            str(tmp_path / "q"),
            "--articles",
            "5",
            "--gpus",
            "10",
            "--no-progress",
            "-q",
        ]
    )
    out = capsys.readouterr().out
    assert code == 1 and "FAIL  chunks fit the token limit" in out and "SKIP  Qdrant supports the run" in out
