"""The embedded store's search index (`ingest.store.edge_index`): built at the end of a
load that leaves `INDEX_FROM` points outside a graph, in a process of its own, with
progress; a build stopped half-way leaves every point searchable; searches over the
graph agree with exact search. The threshold is lowered so that the real engine builds
real graphs over a few thousand points in seconds."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ingest import lexical
from ingest.definitions import CUT, DEFINITION_VECTOR
from ingest.errors import StoreError
from ingest.store import edge_index
from ingest.store.edge import EdgeStore
from schemas import KNOWN_MODELS, Article, Chunk, CollectionSpec

SPEC = CollectionSpec(
    model=KNOWN_MODELS["sentence-transformers/all-MiniLM-L6-v2"],
    chunking={"max_chars": 1000},
    sparse=lexical.default_spec(),
)


@pytest.fixture
def small_threshold(monkeypatch):
    monkeypatch.setattr(edge_index, "INDEX_FROM", 1000)


def clustered(n: int, start: int = 0) -> tuple[list, np.ndarray]:
    """`n` one-chunk articles whose vectors form 50 clusters (a graph's usual case)."""
    rng = np.random.default_rng(start)
    centres = np.random.default_rng(0).standard_normal((50, 384))
    vectors = (centres[np.arange(start, start + n) % 50] + 0.5 * rng.standard_normal((n, 384))).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    pairs = []
    for i in range(start, start + n):
        article = Article(f"a{i}", f"https://en.wikipedia.org/wiki/T{i}", f"Title {i}", f"river {i % 50} w{i} text")
        pairs.append((article, Chunk(article.id, 0, article.text, 0, len(article.text), f"Title {i}\n{article.text}")))
    return pairs, vectors


def segment_indexes(store: EdgeStore) -> list[str]:
    """The dense index type of each of the shard's segments, as Qdrant records it."""
    folder = store._folder.shard_path(store.collection) / "segments"
    return sorted(
        json.loads(p.read_text())["config"]["vector_data"][""]["index"]["type"] for p in folder.glob("*/segment.json")
    )


def outside(store: EdgeStore) -> int:
    return json.loads(store._folder.graph_path(store.collection).read_text())["outside"]


def rankings(store: EdgeStore, queries: np.ndarray, *, exact: bool) -> list[list[str]]:
    """Dense top-10s, then hybrid ones with a word only one article has (no ties to break)."""
    store.exact = exact
    try:
        dense = [[hit.id for hit in store.search(v, limit=10)] for v in queries]
        hybrid = [
            [hit.id for hit in store.search(v, limit=10, sparse=lexical.query_vector(f"w{7 * i}", SPEC.sparse))]
            for i, v in enumerate(queries)
        ]
        return dense + hybrid
    finally:
        store.exact = False


def agreement(graph: list[list[str]], exact: list[list[str]]) -> float:
    """Mean top-10 overlap of the graph's rankings with exact search's. Thousands of points in 50
    tight clusters put a query's neighbours within int8's error of each other: a graph build (its
    threads, its quantiles) may then swap one past the rescored candidates now and then."""
    return float(np.mean([len(set(g) & set(e)) / max(len(e), 1) for g, e in zip(graph, exact)]))


def test_a_load_past_the_threshold_gets_a_graph_built_in_another_process(tmp_path, small_threshold, caplog):
    store = EdgeStore.open(tmp_path / "q", collection="wiki")
    store.ensure_collection(SPEC)
    pairs, vectors = clustered(1500)
    store.upsert_pairs(pairs, vectors)
    with caplog.at_level(logging.WARNING, logger="ingest.store.edge_index"):
        assert store.finish_bulk_load() is True
    lines = [r.getMessage() for r in caplog.records]
    assert any("in a process of its own" in line and "1,500 new points" in line for line in lines)
    assert any(line.startswith("search index built") for line in lines)
    assert "hnsw" in segment_indexes(store)
    assert outside(store) == 0 and store.count() == 1500
    queries = vectors[:20] + 0.1
    assert rankings(store, queries, exact=False) == rankings(store, queries, exact=True)
    store.close()


def test_the_definitions_get_a_sparser_graph_of_their_own_and_rank_as_exact_search_does(tmp_path, small_threshold):
    store = EdgeStore.open(tmp_path / "q", collection="wiki")
    store.ensure_collection(replace(SPEC, definition=CUT))
    pairs, vectors = clustered(1500)
    definitions = clustered(1500, start=7)[1]  # other vectors of the same kind
    store.upsert_pairs(pairs, vectors, dict(enumerate(definitions)))
    assert store.finish_bulk_load() is True
    folder = store._folder.shard_path(store.collection) / "segments"
    configs = [json.loads(p.read_text())["config"]["vector_data"] for p in folder.glob("*/segment.json")]
    built = [c for c in configs if c[""]["index"]["type"] == "hnsw"]
    assert built and all(c[DEFINITION_VECTOR]["index"]["type"] == "hnsw" for c in built)
    assert {c[DEFINITION_VECTOR]["index"]["options"]["m"] for c in built} == {edge_index.DEFINITION_HNSW_M}
    assert {c[""]["index"]["options"]["m"] for c in built} == {edge_index.HNSW_M}
    queries = definitions[:20] + 0.1  # near a definition: its ranking decides
    assert rankings(store, queries, exact=False) == rankings(store, queries, exact=True)
    store.close()


def test_points_outside_the_graph_are_counted_across_stores_until_a_build(tmp_path, small_threshold):
    path = tmp_path / "q"
    store = EdgeStore.open(path, collection="wiki")
    store.ensure_collection(SPEC)
    store.upsert_pairs(*clustered(600))
    store.finish_bulk_load()
    assert outside(store) == 600 and segment_indexes(store) == ["plain"]  # below the threshold: exact search
    store.close()

    store = EdgeStore.open(path, collection="wiki")  # another run: the record carries the count
    store.upsert_pairs(*clustered(300, start=600))
    store.finish_bulk_load()
    assert outside(store) == 900
    store.upsert_pairs(*clustered(100, start=0))  # changed points count too: they leave the graph
    store.finish_bulk_load()
    assert outside(store) == 0 and "hnsw" in segment_indexes(store)
    assert store.count() == 900
    store.close()


def test_a_store_of_an_earlier_version_has_all_its_points_outside(tmp_path, small_threshold):
    store = EdgeStore.open(tmp_path / "q", collection="wiki")
    store.ensure_collection(SPEC)
    store.upsert_pairs(*clustered(1200))
    store._folder.outside.clear()
    store._folder.graph_path("wiki").unlink()  # as an earlier version left it: no record
    store.finish_bulk_load()
    assert outside(store) == 0 and "hnsw" in segment_indexes(store)
    store.close()


def test_a_build_stopped_half_way_leaves_every_point_searchable(tmp_path, small_threshold, monkeypatch):
    store = EdgeStore.open(tmp_path / "q", collection="wiki")
    store.ensure_collection(SPEC)
    pairs, vectors = clustered(4000)
    store.upsert_pairs(pairs, vectors)
    exact = rankings(store, vectors[:10], exact=True)

    def interrupt(*args, **kwargs):  # Ctrl-C at the first progress line: the child is killed mid-build
        raise KeyboardInterrupt

    monkeypatch.setattr(edge_index, "HEARTBEAT_S", 0.05)
    monkeypatch.setattr(
        edge_index.log, "warning", lambda message, *args: message.startswith("  building") and interrupt()
    )
    with pytest.raises(KeyboardInterrupt):
        store.finish_bulk_load()
    assert store.count() == 4000  # the shard opens again with every point
    assert rankings(store, vectors[:10], exact=False) == exact
    assert outside(store) == 4000  # not built: the next load's end builds it
    monkeypatch.undo()
    monkeypatch.setattr(edge_index, "INDEX_FROM", 1000)
    store.finish_bulk_load()
    assert outside(store) == 0 and "hnsw" in segment_indexes(store)
    assert agreement(rankings(store, vectors[:10], exact=False), exact) >= 0.97
    store.close()


def test_a_failed_build_is_one_line_naming_the_retry(tmp_path):
    with pytest.raises(StoreError, match=r"building the search index of nowhere failed \(.+\): .*run the same command"):
        edge_index.build_in_child(Path(tmp_path / "nowhere"), 384, True, definitions=False, points=10)


def test_a_long_load_builds_graphs_as_it_goes_and_reads_wait_for_them(tmp_path, monkeypatch):
    """Past SEGMENT_POINTS outside a graph, the write that crossed it builds one before it
    returns, so the appendable segment (held in memory) never grows past it; a read from
    another thread meanwhile waits for the shard instead of finding it closed."""
    monkeypatch.setattr(edge_index, "INDEX_FROM", 1000)
    monkeypatch.setattr(edge_index, "SEGMENT_POINTS", 2000)
    store = EdgeStore.open(tmp_path / "q", collection="wiki")
    store.ensure_collection(SPEC)
    for start in range(0, 5000, 1000):
        store.upsert_pairs(*clustered(1000, start=start))
        assert store._outside() == (start + 1000) % 2000
    assert segment_indexes(store).count("hnsw") == 2 and outside(store) == 0
    store.finish_bulk_load()  # 1,000 left outside: at INDEX_FROM, built too
    assert segment_indexes(store).count("hnsw") >= 2 and outside(store) == 0 and store.count() == 5000

    pairs, vectors = clustered(2000, start=5000)
    reads = []
    building = threading.Event()
    real_build = edge_index.build_in_child

    def build(*args, **kwargs):
        building.set()
        time.sleep(0.3)  # the reader below asks while the shard is closed
        return real_build(*args, **kwargs)

    monkeypatch.setattr("ingest.store.edge.build_in_child", build)
    reader = threading.Thread(target=lambda: building.wait() and reads.append(store.count()))
    reader.start()
    store.upsert_pairs(pairs, vectors)
    reader.join()
    assert reads == [7000] and store.count() == 7000
    store.close()


KILLED_MID_BUILD = """
import sys
import numpy as np
from ingest.store import edge_index
from ingest.store.edge import EdgeStore
from tests.test_edge_index import SPEC, clustered
edge_index.INDEX_FROM = 1000
store = EdgeStore.open(sys.argv[1], collection="wiki")
store.ensure_collection(SPEC)
store.upsert_pairs(*clustered(6000))
store.flush()
print("written", flush=True)
store.finish_bulk_load()
print("built", flush=True)
"""


def test_a_command_killed_mid_build_takes_its_build_along_and_loses_nothing(tmp_path, small_threshold):
    """SIGKILL to the command while its build runs: the build's process dies with it (no process
    is left holding the shard), and the next command opens every point and builds the graph."""
    command = subprocess.Popen(
        [sys.executable, "-c", KILLED_MID_BUILD, str(tmp_path / "q")], stdout=subprocess.PIPE, text=True
    )
    assert command.stdout.readline().strip() == "written"
    deadline = time.monotonic() + 30
    while not (builds := _builds_of(command.pid)) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert builds, "no build process started"
    command.kill()
    command.wait()
    command.stdout.close()
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() and _state(pid) != "Z" for pid in builds) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(Path(f"/proc/{pid}").exists() and _state(pid) != "Z" for pid in builds), "the build outlived it"

    store = EdgeStore.open(tmp_path / "q", collection="wiki")
    assert store.count() == 6000 and outside(store) == 6000
    pairs, vectors = clustered(6000)
    exact = rankings(store, vectors[:10], exact=True)
    store.finish_bulk_load()
    assert outside(store) == 0 and "hnsw" in segment_indexes(store)
    assert agreement(rankings(store, vectors[:10], exact=False), exact) >= 0.97
    store.close()


def _builds_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat[1]) == pid and b"edge_index import main" in cmdline:
                found.append(int(entry.name))
    return found


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_progress_lines_give_the_time_left_at_the_earlier_builds_rate(monkeypatch):
    monkeypatch.setattr(edge_index, "_built", [0.0, 0])
    assert edge_index._progress(10, 1000) == "0:10 elapsed"  # no earlier build: no guess
    monkeypatch.setattr(edge_index, "_built", [30.0, 200_000])
    assert edge_index._progress(10, 200_000) == "0:10 elapsed, about 0:20 left at the earlier builds' rate"
    assert edge_index._progress(45, 200_000) == "0:45 elapsed, about done"
