"""Moving collections between stores without embedding again: `copy` between
folders, and `migrate` of a folder an earlier version wrote (qdrant-client's local
mode, with the earlier words-v1 lexical vectors)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ingest import lexical
from ingest.chunking import ChunkingSettings
from ingest.cli import main
from ingest.errors import LegacyStoreError
from ingest.jobs import run_ingest, verify_collection
from ingest.settings import IngestSettings, StoreSettings
from ingest.store import open_store
from ingest.store.legacy import LegacyStore, is_legacy
from schemas import SparseSpec
from search import Searcher
from tests.counting_embedder import CountingEmbedder
from tests.qdrant_standin import edge_points, stored_spec

WORDS_V1 = SparseSpec(tokenizer="words-v1", k1=1.2, b=0.75, avg_len=48.0)


def settings_for(tmp_path, rows, folder="qdrant") -> IngestSettings:
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return IngestSettings(
        source=str(source),
        progress=False,
        window=8,
        chunking=ChunkingSettings(max_chars=300),
        dead_letter=str(tmp_path / "dl.jsonl"),
        store=StoreSettings(qdrant_path=str(tmp_path / folder), collection="wiki"),
    )


@pytest.fixture
def rows(sample):
    return [dict(row) for row in sample[:20]]


def test_a_folder_of_the_earlier_version_is_migrated_with_its_vectors_and_manifest(tmp_path, rows, monkeypatch):
    settings = settings_for(tmp_path, rows)
    with monkeypatch.context() as old_version:  # what the earlier version wrote: local mode, words-v1
        old_version.setattr(lexical, "default_spec", lambda: WORDS_V1)
        store = LegacyStore.open(tmp_path / "qdrant")
        try:
            first = run_ingest(settings, embedder=CountingEmbedder(), store=store)
        finally:
            store.close()
    assert is_legacy(tmp_path / "qdrant") and first.points_written > 20
    with pytest.raises(LegacyStoreError, match="python -m ingest migrate --qdrant-path"):
        run_ingest(settings, embedder=CountingEmbedder())

    assert main(["migrate", "--qdrant-path", str(tmp_path / "qdrant"), "--no-progress", "-q"]) == 0
    assert not is_legacy(tmp_path / "qdrant") and not (tmp_path / "qdrant" / "collection").exists()
    assert stored_spec(tmp_path / "qdrant").sparse == lexical.default_spec()  # standard BM25 now
    points = edge_points(tmp_path / "qdrant")
    assert len(points) == first.points_written
    for payload, _, sparse in points.values():  # every lexical vector remade from the point's text
        assert sparse == pytest.approx(dict(zip(*lexical.passage_vector(payload["text"], lexical.default_spec()))))
    assert [p.name for p in (tmp_path / "qdrant-state").glob("*.sqlite")] == [
        f"{first_collection(tmp_path)}.sqlite"
    ]  # the manifest, under the new name only

    embedder = CountingEmbedder()
    again = run_ingest(settings, embedder=embedder)  # nothing embedded again
    assert (embedder.calls, again.unchanged, again.points_written) == (0, len(rows), 0)
    assert verify_collection(settings.store).in_sync
    with Searcher.open(settings.store, embedder=CountingEmbedder()) as searcher:
        assert searcher.default_mode == "hybrid" and searcher.search(rows[4]["title"], k=3)


def first_collection(tmp_path) -> str:
    store = open_store(StoreSettings(qdrant_path=str(tmp_path / "qdrant")))
    try:
        return store.resolve("wiki").collection
    finally:
        store.close()


def test_copy_moves_a_collection_to_another_folder_and_the_next_run_embeds_nothing(tmp_path, rows, capsys):
    source = settings_for(tmp_path, rows, "a")
    first = run_ingest(source, embedder=CountingEmbedder())
    args = [
        "copy",
        "--from-path",
        str(tmp_path / "a"),
        "--to-path",
        str(tmp_path / "b"),
        "--collection",
        "wiki",
        "--no-progress",
        "-q",
    ]
    assert main(args) == 0
    assert f"{first.points_written:,} points, manifest of {len(rows)} articles" in capsys.readouterr().out
    assert main(args) == 0  # again: written by id, nothing doubled
    a, b = edge_points(tmp_path / "a"), edge_points(tmp_path / "b")
    assert set(a) == set(b) and all(a[k][0] == b[k][0] and a[k][2] == pytest.approx(b[k][2]) for k in a)
    assert all(np.allclose(a[k][1], b[k][1], atol=1e-6) for k in a)
    embedder = CountingEmbedder()
    again = run_ingest(settings_for(tmp_path, rows, "b"), embedder=embedder)
    assert (embedder.calls, again.unchanged) == (0, len(rows))
    assert verify_collection(settings_for(tmp_path, rows, "b").store).in_sync


def test_copy_refuses_what_it_cannot_do_in_one_line(tmp_path, rows, capsys, caplog):
    run_ingest(settings_for(tmp_path, rows, "a"), embedder=CountingEmbedder())
    assert main(["copy", "--from-path", str(tmp_path / "a"), "--to-path", str(tmp_path / "a")]) == 1
    assert "the source and the target are the same folder" in caplog.text
    assert (
        main(["copy", "--from-path", str(tmp_path / "a"), "--to-path", str(tmp_path / "b"), "--collection", "nope"])
        == 1
    )
    assert "nothing is called 'nope'" in caplog.text and "Traceback" not in caplog.text
    assert main(["copy", "--to-path", str(tmp_path / "b")]) == 2
    assert "give one of --from-path and --from-url" in capsys.readouterr().err
    assert main(["migrate", "--qdrant-path", str(tmp_path / "a")]) == 1
    assert "nothing to migrate" in caplog.text
