"""ingest.sharded: the TEI router's command line and lifecycle (against a real
process: the loopback TEI stand-in, started the way TEI is), one shard through the
real pipeline into the embedded store, a worker that checks its TEI before each
shard, and the driver's arithmetic and report."""

from __future__ import annotations

import json
import os
import pickle
import signal
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest

from ingest.chunking import Chunker, ChunkingSettings
from ingest.definitions import definition_text
from ingest.embedders.base import PassageEmbeddings, Rejection
from ingest.embedders.fake import deterministic_vector
from ingest.errors import (
    BackendFailure,
    CollectionMismatchError,
    InputRejected,
    RebuildError,
    RouterError,
    SettingsError,
    ShardError,
    SourceError,
)
from ingest.modal_settings import shard_settings
from ingest.pipeline.summary import RunSummary
from ingest.rehearsal.standin_router import free_port, runner
from ingest.sharded.driver import (
    A10G_PRICE_PER_HOUR,
    GpuTime,
    LoadOutcome,
    LoadRequest,
    ShardRun,
    load_report,
    plan_shards,
    run_shards,
)
from ingest.sharded.shard import (
    ShardResult,
    WorkerStamp,
    check_refusals,
    embed_texts,
    ensure_collection,
    ingest_shard,
)
from ingest.sharded.tei_process import (
    Router,
    RouterConfig,
    router_command,
    router_environment,
)
from ingest.sharded.worker import Worker, WorkerConfig
from ingest.sources import sample_rows
from schemas import Article, point_id
from tests.qdrant_standin import edge_points, stored_spec

MODEL = "BAAI/bge-small-en-v1.5"
POISON = "POISON-MARKER"


def test_router_command_names_every_flag():
    config = RouterConfig(
        MODEL,
        port=8000,
        revision="abc123",
        huggingface_hub_cache="/weights",
        max_client_batch_size=512,
        max_batch_tokens=262144,
        concurrent_requests=40,
    )
    assert router_command(config) == [
        "text-embeddings-router",
        "--model-id",
        MODEL,
        "--hostname",
        "127.0.0.1",  # not HOSTNAME from the environment: an IP there would move it
        "--port",
        "8000",
        "--payload-limit",
        "2000000",  # what the client's request sizing assumes
        "--max-client-batch-size",
        "512",
        "--max-batch-tokens",
        "262144",
        "--max-concurrent-requests",
        str(512 * 40),
        "--revision",
        "abc123",
        "--huggingface-hub-cache",
        "/weights",
        "--dtype",
        "float16",
        "--auto-truncate",
    ]
    bare = router_command(RouterConfig(MODEL, dtype=None, auto_truncate=False))
    for flag in ("--revision", "--huggingface-hub-cache", "--dtype", "--auto-truncate"):
        assert flag not in bare


def test_the_router_environment_drops_what_tei_would_read_as_flags():
    env = {
        "PATH": "/usr/bin",
        "HF_TOKEN": "hf_x",
        "API_KEY": "from-a-secret",
        "HOSTNAME": "10.0.0.7",
        "PAYLOAD_LIMIT": "100",
        "MAX_BATCH_REQUESTS": "1",
        "LD_LIBRARY_PATH": "/usr/local/cuda/lib64",
    }
    assert router_environment(env) == {
        "PATH": "/usr/bin",
        "HF_TOKEN": "hf_x",
        "LD_LIBRARY_PATH": "/usr/local/cuda/lib64",
    }


def test_the_router_starts_with_the_environment_it_is_given(tmp_path):
    dump = tmp_path / "env.json"
    port = free_port()
    config = RouterConfig(MODEL, port=port, executable=runner("--dump-env", str(dump)))
    env = router_environment({**os.environ, "API_KEY": "from-a-secret", "HOSTNAME": "10.0.0.7"})
    with Router.from_config(config, startup_timeout=60, env=env):
        seen = json.loads(dump.read_text())
    assert "API_KEY" not in seen and "HOSTNAME" not in seen and seen["PATH"] == os.environ["PATH"]


@pytest.mark.parametrize(
    "bad",
    [
        {"port": 0},
        {"dtype": "int8"},
        {"max_client_batch_size": 0},
        {"concurrent_requests": 0},
        {"executable": ()},
        {"payload_limit": 0},
    ],
)
def test_router_config_refuses_bad_values(bad):
    with pytest.raises(SettingsError):
        RouterConfig(MODEL, **bad)


def test_router_starts_the_server_and_waits_until_healthy():
    port = free_port()
    config = RouterConfig(
        MODEL,
        port=port,
        revision="rev-test",
        huggingface_hub_cache="/nowhere",
        executable=runner("--startup-delay", "0.5"),
    )
    started = time.monotonic()
    with Router.from_config(config, startup_timeout=20) as router:
        assert time.monotonic() - started >= 0.5  # it waited for the "model" to load
        assert router.running and router.url == f"http://127.0.0.1:{port}"
        info = httpx.get(f"{router.url}/info", trust_env=False).json()
        assert (info["model_id"], info["model_sha"], info["max_client_batch_size"]) == (MODEL, "rev-test", 512)
        assert info["max_concurrent_requests"] == config.max_concurrent_requests
        assert "ignoring ['--huggingface-hub-cache', '/nowhere', '--dtype', 'float16']" in router.tail
    assert not router.running
    router.stop()  # twice is fine


def test_router_fails_fast_with_the_output_of_a_process_that_exits():
    config = RouterConfig(MODEL, port=free_port(), executable=runner("--exit-code", "3"))
    started = time.monotonic()
    with pytest.raises(RouterError, match="exited with code 3") as info:
        Router.from_config(config, startup_timeout=60).start()
    assert time.monotonic() - started < 10
    assert "Could not download model artifacts" in str(info.value)


def test_router_gives_up_after_the_startup_timeout_and_stops_the_process():
    command = [sys.executable, "-c", "import time; print('loading weights', flush=True); time.sleep(60)"]
    router = Router(command, url=f"http://127.0.0.1:{free_port()}", startup_timeout=0.5, poll_interval=0.1)
    started = time.monotonic()
    with pytest.raises(RouterError, match=r"not healthy .* within 0.5 s") as info:
        router.start()
    assert time.monotonic() - started < 10
    assert "loading weights" in str(info.value)
    assert not router.running


def test_router_reports_a_missing_binary():
    with pytest.raises(RouterError, match="cannot run"):
        Router(["no-such-text-embeddings-router"], url="http://127.0.0.1:1").start()


STUBBORN_SERVER = """
import signal, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
signal.signal(signal.SIGTERM, signal.SIG_IGN)
class Health(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *args):
        pass
HTTPServer(("127.0.0.1", int(sys.argv[1])), Health).serve_forever()
"""


def test_router_stop_kills_a_server_that_ignores_sigterm():
    port = free_port()
    router = Router(
        [sys.executable, "-c", STUBBORN_SERVER, str(port)], url=f"http://127.0.0.1:{port}", startup_timeout=20
    ).start()
    started = time.monotonic()
    router.stop(grace=0.3)
    assert not router.running
    assert router._process.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 5


# -- one shard, end to end ----------------------------------------------------------
@pytest.fixture(scope="module")
def tei_router():
    config = RouterConfig(
        MODEL, port=free_port(), revision="rev-test", max_client_batch_size=32, executable=runner("--poison", POISON)
    )
    with Router.from_config(config, startup_timeout=20) as router:
        yield router


@pytest.fixture
def wiki_rows():
    """40 sample articles; one with a blank title (invalid), one whose text the
    server refuses (as TEI refuses an input too long to embed)."""
    rows = [dict(row) for row in sample_rows()[:40]]
    rows[5]["title"] = "   "
    rows[7]["text"] += f" {POISON} is refused."
    return rows


@pytest.fixture
def dataset_dir(tmp_path, wiki_rows):
    import datasets

    datasets.disable_progress_bars()
    path = tmp_path / "wiki"
    datasets.Dataset.from_list(wiki_rows).save_to_disk(str(path))
    return str(path)


def expected_chunks(rows, chunking: ChunkingSettings):
    """The chunks the pipeline makes of `rows` (TEI reports 512 tokens, no tokenizer)."""
    chunker = Chunker(chunking, max_tokens=512)
    chunks = []
    for row in rows:
        if not row["title"].strip() or not row["text"].strip():
            continue
        chunks.extend(chunker.chunks(Article.from_row(row)))
    return chunks


def test_ingest_shard_writes_exactly_the_shards_points(tmp_path, tei_router, dataset_dir, wiki_rows):
    qdrant = tmp_path / "qdrant"
    settings = shard_settings(
        {"QDRANT_PATH": str(qdrant)},
        tei_url=tei_router.url,
        collection="wiki",
        model=MODEL,
        chunking={"max_chars": 300},
        window=16,
    )
    first = ingest_shard(dataset_dir, 0, 25, settings=settings)
    second = ingest_shard(dataset_dir, 25, 100, settings=settings)  # stop past the end

    chunks = expected_chunks(wiki_rows, settings.chunking)
    refused = [c for c in chunks if POISON in c.embed_text]
    stored = [c for c in chunks if POISON not in c.embed_text]
    assert len(refused) == 1 and len(stored) > 40  # several chunks per article at 300 characters

    assert (first.shard, second.shard) == ((0, 25), (25, 100))
    assert (first.summary.articles, second.summary.articles) == (25, 15)
    assert (first.summary.invalid, second.summary.invalid) == (1, 0)
    assert (first.summary.rejected_chunks, second.summary.rejected_chunks) == (1, 0)
    assert first.summary.chunks + second.summary.chunks == len(chunks)
    assert first.summary.points_written + second.summary.points_written == len(stored)
    read = sum(len(c.embed_text) for c in chunks) + sum(
        len(definition_text(c.text)) for c in chunks if not c.chunk_index
    )
    assert first.summary.characters + second.summary.characters == read  # the chunks and each article's definition
    assert first.summary.seconds >= first.summary.embed_seconds > 0
    kinds = sorted((d["kind"], d["article_id"], d["status"]) for d in first.dead_letters)
    assert kinds == [("article", wiki_rows[5]["id"], None), ("chunk", wiki_rows[7]["id"], 422)]
    assert second.dead_letters == []

    points = edge_points(qdrant, "wiki")
    assert set(points) == {point_id(c.article_id, c.chunk_index) for c in stored}
    sample = stored[3]
    np.testing.assert_allclose(points[sample.point_id][1], deterministic_vector(sample.embed_text), atol=1e-5)
    assert points[sample.point_id][0]["text"] == sample.text
    spec = stored_spec(qdrant)
    assert (spec.model.name, spec.model.revision, spec.chunking["max_chars"]) == (MODEL, "rev-test", 300)

    again = ingest_shard(dataset_dir, 0, 25, settings=settings)
    assert again.summary.points_written == first.summary.points_written
    assert len(edge_points(qdrant, "wiki")) == len(stored)  # a retry overwrites, never duplicates


def test_ingest_shard_refuses_a_collection_built_another_way(tmp_path, tei_router, dataset_dir):
    env = {"QDRANT_PATH": str(tmp_path / "qdrant")}
    one = shard_settings(env, tei_url=tei_router.url, collection="wiki", model=MODEL, chunking={"max_chars": 300})
    other = shard_settings(env, tei_url=tei_router.url, collection="wiki", model=MODEL, chunking={"max_chars": 600})
    ingest_shard(dataset_dir, 0, 3, settings=one)
    with pytest.raises(CollectionMismatchError, match="max_chars"):
        ingest_shard(dataset_dir, 3, 6, settings=other)


def test_ingest_shard_names_a_missing_dataset(tmp_path, tei_router):
    settings = shard_settings({"QDRANT_PATH": str(tmp_path / "q")}, tei_url=tei_router.url)
    with pytest.raises(SourceError, match="download"):
        ingest_shard(str(tmp_path / "absent"), 0, 10, settings=settings)


def test_shard_settings_read_qdrant_from_the_environment():
    settings = shard_settings(
        {"QDRANT_URL": "https://q.example:6333", "QDRANT_API_KEY": "k"},
        tei_url="http://127.0.0.1:8000",
        collection="c",
        model=MODEL,
        window=64,
    )
    assert (settings.store.qdrant_url, settings.store.qdrant_api_key, settings.store.collection) == (
        "https://q.example:6333",
        "k",
        "c",
    )
    assert settings.store.prefer_grpc and "k" not in repr(settings.store)
    assert (settings.embedder.embedder, settings.embedder.model, settings.window) == ("tei", MODEL, 64)
    rest = shard_settings({"QDRANT_URL": "http://q", "QDRANT_NO_GRPC": "1"}, tei_url="http://t")
    assert not rest.store.prefer_grpc
    with pytest.raises(SettingsError, match="QDRANT_URL is not set.*modal secret create qdrant"):
        shard_settings({}, tei_url="http://t")
    with pytest.raises(SettingsError):
        shard_settings({"QDRANT_URL": "http://q"}, tei_url="http://t", chunking={"max_chars": 10})


def test_ensure_collection_tolerates_another_shard_creating_it_first():
    class Store:
        collection = "wiki"

        def __init__(self, exists_after_failure):
            self.calls = 0
            self.exists_after_failure = exists_after_failure

        def exists(self):
            return self.exists_after_failure

        def ensure_collection(self, spec):
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("409 Conflict: collection `wiki` already exists")

    racing = Store(exists_after_failure=True)
    ensure_collection(racing, spec=None)
    assert racing.calls == 2
    with pytest.raises(RuntimeError, match="409"):
        ensure_collection(Store(exists_after_failure=False), spec=None)


def test_embed_texts_refuses_to_pass_a_zero_row_for_a_vector():
    class Embedder:
        def embed_passages(self, texts):
            return PassageEmbeddings(np.ones((len(texts), 2), np.float32), [Rejection(1, 422, "too long")])

    with pytest.raises(InputRejected) as info:
        embed_texts(Embedder(), ["a", "b", "c"])
    assert (info.value.index, info.value.status, info.value.message) == (1, 422, "too long")


def test_results_and_errors_pickle_with_their_fields():
    stamp = WorkerStamp("ta-01", 100.0, 160.0)
    result = ShardResult(0, 10, RunSummary(articles=10, seconds=1.5), [{"kind": "article"}], stamp)
    assert pickle.loads(pickle.dumps(result)) == result == ShardResult.from_dict(result.to_dict())
    error = pickle.loads(pickle.dumps(ShardError(0, 10, "TimeoutError: slow", broken=True, stamp=stamp)))
    assert (error.shard, error.message, error.broken, error.stamp) == ((0, 10), "TimeoutError: slow", True, stamp)
    assert str(error) == "shard [0, 10): TimeoutError: slow"
    rejected = pickle.loads(pickle.dumps(InputRejected(2, 422, "too long")))
    assert (rejected.index, rejected.status, rejected.message) == (2, 422, "too long")


# -- the driver's arithmetic ---------------------------------------------------------
def test_plan_shards_covers_every_row_once():
    assert plan_shards(10, 3) == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert plan_shards(6, 3) == [(0, 3), (3, 6)]
    assert plan_shards(0, 3) == []
    shards = plan_shards(6_407_814, 5_000)
    assert shards[0][0] == 0 and shards[-1][1] == 6_407_814
    assert all(a[1] == b[0] for a, b in zip(shards, shards[1:]))
    with pytest.raises(SettingsError):
        plan_shards(10, 0)
    with pytest.raises(SettingsError):
        plan_shards(-1, 3)


def test_run_shards_retries_what_failed_for_a_bounded_number_of_rounds():
    shards = plan_shards(40, 10)
    rounds = []

    def run_round(pending):
        rounds.append(pending)
        for start, stop in pending:
            if (start, stop) == (10, 20) and len(rounds) == 1:
                yield ShardError(start, stop, "ConnectionError: Qdrant went away")
            elif (start, stop) == (30, 40):
                yield TimeoutError("container timed out")  # names no shard
            else:
                yield ShardResult(start, stop, RunSummary(articles=stop - start), [{"shard": start}])

    run = run_shards(shards, run_round, max_rounds=3)
    assert rounds == [shards, [(10, 20), (30, 40)], [(30, 40)]]
    assert sorted(r.shard for r in run.results) == [(0, 10), (10, 20), (20, 30)]
    assert run.failed == {(30, 40): "no result (the container failed or timed out)"}
    assert run.rounds == 3 and len(run.unattributed) == 3
    assert sorted(d["shard"] for d in run.dead_letters) == [0, 10, 20]

    once = run_shards(shards, lambda pending: (ShardError(s, e, "boom") for s, e in pending), max_rounds=1)
    assert once.failed == {shard: "boom" for shard in shards} and once.rounds == 1


def test_gpu_time_is_what_each_worker_was_held_for_not_gpus_times_the_wall():
    stamps = [
        WorkerStamp("a", 0.0, 50.0),
        WorkerStamp("a", 0.0, 100.0),  # one container, two shards
        WorkerStamp("b", 10.0, 60.0),
        WorkerStamp("c", 200.0, 230.0),
    ]  # a late one, after a's release
    held = GpuTime.of(stamps, idle_seconds=20.0)
    assert held.seconds == (100 + 20) + (50 + 20) + (30 + 20) and held.workers == 3
    assert held.peak == 2  # a and b together; c started after both were let go
    assert GpuTime.of([]) == GpuTime(0.0, 0, 0)


def test_the_load_report_splits_the_time_to_searchable_and_costs_the_gpu_seconds_held():
    """100 GPUs asked for, 2 granted: a 100-second load, a 2-hour index build and a
    30-second switch. The cost is the load's GPU-seconds held (not 100 x the whole wall)."""
    stamps = [WorkerStamp("a", 0.0, 90.0), WorkerStamp("b", 0.0, 100.0)]
    results = [
        ShardResult(
            0,
            10,
            RunSummary(articles=10, invalid=1, chunks=300, characters=600_000, points_written=299, rejected_chunks=1),
            stamp=stamps[0],
        ),
        ShardResult(
            10, 20, RunSummary(articles=10, chunks=200, characters=400_000, points_written=200), stamp=stamps[1]
        ),
    ]
    run = ShardRun(results=results, rounds=1, stamps=stamps)
    outcome = LoadOutcome(
        run,
        plan=None,
        skipped=[],
        load_seconds=100.0,
        index_seconds=7200.0,
        switch_seconds=30.0,
        switched="wikipedia now leads to wikipedia-1",
    )
    request = LoadRequest(dataset="/d", rows=20, key="k", gpus=100, price_per_gpu_hour=1.8, idle_seconds=120.0)
    assert load_report(outcome, request).splitlines() == [
        "shards               2 done this attempt",
        "articles             20 (1 invalid)",
        "chunks               500 (499 points written, 1 refused)",
        "characters           1,000,000",
        "load                 0:01:40 (100.0 s): 5 chunks/s, 10,000 characters/s",
        "workers              2 ran shards, 2 at once at most (100 asked for)",
        "characters/s per GPU 2,326 (over the GPU-seconds held)",
        "GPU-seconds held     430 (0.12 GPU-hours, 120 s idle each before release)",
        "cost                 $0.22 at $1.8000/GPU-hour",
        "index build          2:00:00 (7,200.0 s)",
        "alias switch         0:00:30 (30.0 s)",
        "time to searchable   2:02:10 (7,330.0 s)",
    ]


def test_the_a10g_price_is_modals_hourly_rate():
    assert A10G_PRICE_PER_HOUR == pytest.approx(1.1016)
    outcome = LoadOutcome(ShardRun(), plan=None, skipped=[])
    assert "$1.1016/GPU-hour" in load_report(outcome, LoadRequest(dataset="/d", rows=0, key="k"))


def test_a_shard_refusing_more_than_a_healthy_gpu_refuses_fails():
    check_refusals(RunSummary(chunks=10, rejected_chunks=5), "shard [0, 10)")  # the floor: a tiny shard's few
    check_refusals(RunSummary(chunks=20_000, rejected_chunks=200), "shard [0, 5000)")  # 1%
    with pytest.raises(BackendFailure, match=r"refused 201 of 20,000 chunks.*not recorded"):
        check_refusals(RunSummary(chunks=20_000, rejected_chunks=201), "shard [0, 5000)")
    with pytest.raises(BackendFailure):
        check_refusals(RunSummary(chunks=10, rejected_chunks=6), "shard [0, 10)")


def test_prepare_and_finish_load_bracket_a_bulk_load_and_move_the_alias(tmp_path, tei_router, dataset_dir):
    from ingest.sharded.load import finish_load, prepare_load
    from ingest.sharded.records import ShardRecords, ingest_recorded_shard

    settings = shard_settings(
        {"QDRANT_PATH": str(tmp_path / "qdrant")},
        tei_url=tei_router.url,
        collection="wiki",
        model=MODEL,
        chunking={"max_chars": 300},
    )
    runs = str(tmp_path / "runs")
    plan = prepare_load(settings, records_root=runs, key="k")
    assert plan.created and plan.collection.startswith("wiki-") and plan.live is None and plan.finished == []
    shard = replace(settings, store=replace(settings.store, collection=plan.collection))
    lock, commits = threading.Lock(), []

    def commit():  # the Volume's: only with the record whole on disk, and the lock held
        commits.append((lock.locked(), sorted(p.name for p in Path(plan.records).iterdir())))

    first = ingest_recorded_shard(
        dataset_dir, 0, 3, settings=shard, records=ShardRecords(Path(plan.records)), commit=commit, lock=lock
    )
    assert commits == [(True, ["000000000000-000000000003.json"])] and not lock.locked()
    again = prepare_load(settings, records_root=runs, key="k")  # the driver, started again
    assert not again.created and again.finished == [first]
    assert prepare_load(settings, records_root=runs, key="other").finished == []  # starts over
    ingest_recorded_shard(dataset_dir, 0, 3, settings=shard, records=ShardRecords(Path(plan.records)))
    line = finish_load(settings, plan, state_dir=str(tmp_path / "state"))
    assert line == f"manifest of {plan.collection}: 3 articles; wiki now leads to {plan.collection}"
    assert stored_spec(tmp_path / "qdrant").chunking["max_chars"] == 300
    assert len(edge_points(tmp_path / "qdrant", "wiki")) == first.summary.points_written > 0
    with pytest.raises(RebuildError, match="incremental reindex"):  # live with these settings: not a load's job
        prepare_load(settings, records_root=runs, key="k")


def test_shards_budget_chunks_in_tokens_with_the_served_tokenizer(tmp_path, tei_router, dataset_dir, wiki_rows):
    from pathlib import Path

    from ingest.embedders.local import resolve_model

    tokenizer = str(Path(resolve_model("all-MiniLM-L6-v2")[1]) / "tokenizer.json")
    settings = shard_settings(
        {"QDRANT_PATH": str(tmp_path / "qdrant")},
        tei_url=tei_router.url,
        collection="wiki",
        model=MODEL,
        chunking={"max_chars": 4000},
        tei_tokenizer=tokenizer,
    )
    assert settings.embedder.tei_tokenizer == tokenizer
    result = ingest_shard(dataset_dir, 0, 10, settings=settings)
    points = [SimpleNamespace(payload=payload) for payload, _, _ in edge_points(tmp_path / "qdrant", "wiki").values()]
    from tokenizers import Tokenizer

    counter = Tokenizer.from_file(tokenizer)
    longest = max(len(counter.encode(p.payload["title"] + "\n" + p.payload["text"]).ids) for p in points)
    assert result.summary.points_written == len(points) and longest <= 512  # TEI's limit, counted, not truncated


# -- a worker checks its TEI before each shard -------------------------------------------------
def worker_for(tmp_path, *flags: str) -> Worker:
    router = RouterConfig(MODEL, port=free_port(), max_client_batch_size=32, executable=runner(*flags))
    return Worker(WorkerConfig(router, env={"QDRANT_PATH": str(tmp_path / "qdrant")}), name="gpu-7")


def test_a_healthy_worker_stamps_its_shards(tmp_path, dataset_dir):
    with worker_for(tmp_path) as worker:
        assert worker.broken() is None and worker.spec()["name"] == MODEL
        result = worker.ingest_shard(0, 4, dataset_dir, "wiki", {"max_chars": 300, "sparse": "none"}, 16)
    assert result.summary.articles == 4 and result.stamp.worker == "gpu-7"
    assert result.stamp.started <= result.stamp.finished
    assert stored_spec(tmp_path / "qdrant").sparse is None  # the layout's "sparse", not the default


@pytest.mark.parametrize(
    ("flags", "why"),
    [(("--sick-after", "3"), "answers 503 to its health check"), (("--die-after", "3"), r"exited \(code 134\)")],
)
def test_a_worker_whose_gpu_or_tei_broke_fails_the_shard_and_says_it_is_broken(tmp_path, dataset_dir, flags, why):
    """A sick backend (every batch 424, /health 503) or a router that aborted: the shard
    fails at once as broken, not after the retry budget and not as a pile of dead letters,
    and the next shard is not even started."""
    with worker_for(tmp_path, *flags) as worker:
        started = time.monotonic()
        with pytest.raises(ShardError, match=why) as failed:
            worker.ingest_shard(0, 40, dataset_dir, "wiki", {"max_chars": 300}, 8)
        assert failed.value.broken and failed.value.stamp.worker == "gpu-7"
        assert time.monotonic() - started < 20
        with pytest.raises(ShardError, match="not started: this worker's TEI server") as refused:
            worker.ingest_shard(40, 80, dataset_dir, "wiki", {"max_chars": 300}, 8)
        assert refused.value.broken
    assert not list((tmp_path / "qdrant").glob("**/records"))  # nothing recorded


def test_a_trial_rebuilds_what_its_own_name_leads_to(tmp_path, tei_router, dataset_dir):
    from ingest.sharded.load import finish_load, prepare_load

    settings = shard_settings(
        {"QDRANT_PATH": str(tmp_path / "qdrant")},
        tei_url=tei_router.url,
        collection="wiki-trial",
        model=MODEL,
        chunking={"max_chars": 300},
    )
    runs = str(tmp_path / "runs")
    plan = prepare_load(settings, records_root=runs, key="k1", trial=True)
    shard = replace(settings, store=replace(settings.store, collection=plan.collection))
    ingest_shard(dataset_dir, 0, 3, settings=shard)
    finish_load(settings, plan, state_dir=str(tmp_path / "state"))
    again = prepare_load(settings, records_root=runs, key="k2", trial=True)  # a second trial: built again
    assert again.collection == plan.collection and again.created and again.finished == []
    with pytest.raises(RebuildError, match="trials now live under their own name"):
        prepare_load(settings, records_root=runs, key="k3")  # not a trial: the load refuses a live collection


def test_dead_letters_of_an_earlier_attempts_shards_reach_the_local_file_once(tmp_path):
    """A driver stopped after some shards finished never wrote their dead letters; the run
    that resumes writes them with its own, and a third run adds nothing twice."""
    from ingest.sharded.driver import write_dead_letters

    earlier = ShardResult(0, 10, RunSummary(), [{"kind": "chunk", "article_id": "3", "chunk_index": 1}])
    now = ShardResult(10, 20, RunSummary(), [{"kind": "article", "article_id": "14", "chunk_index": None}])
    outcome = LoadOutcome(ShardRun(results=[now]), plan=None, skipped=[earlier])
    path = tmp_path / "dead.jsonl"
    assert write_dead_letters(path, outcome) == 2
    assert write_dead_letters(path, outcome) == 0
    assert sorted(json.loads(line)["article_id"] for line in path.read_text().splitlines()) == ["14", "3"]
