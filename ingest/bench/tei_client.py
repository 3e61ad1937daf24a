"""How much client CPU a chunk costs on the TEI path, ours against the reference's.

A GPU running TEI embeds tens of thousands of chunks a second; the client must
keep up on a core or two. This benchmark runs an *instant* TEI server (vectors
precomputed, no model: only the HTTP and JSON work a real server does) in a
separate process on loopback, and measures, side by side in one run:

- reference (Modal's Wikipedia example): a sync `httpx.Client`, one batch at a
  time, `json=` bodies to `/embed`, `res.json()` and `np.array`;
- ours, `wire="json"`: `TEIEmbedder` on `/embed` (orjson request bodies,
  concurrent requests on one `httpx.AsyncClient`, orjson + numpy decoding);
- ours, `wire="base64"`: the same on TEI's `/v1/embeddings` with base64 vectors;

then decoding alone on a captured response body, and point building
(`ingest.store.points.build_batch`, the same for all). Because the server shares this machine's
cores, "CPU" columns count only this process's CPU time (`time.process_time`,
all threads), and report chunks per second per core of client work.

    python -m ingest bench-tei --chunks 20000 --batch-size 256
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import random
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import httpx
import numpy as np
import orjson

from ingest.bench.vectors import Structured, sample_vectors
from ingest.edge import Edge, run_command
from ingest.embedders.tei import TEIEmbedder
from ingest.embedders.tei_wire import decode_base64_vectors, decode_vectors
from ingest.lexical import default_spec
from ingest.store.points import build_batch
from schemas import Article, Chunk, SparseSpec

DIMENSION = 384
CHUNK_CHARS = 512  # the reference's fixed 512-character windows
CHUNKS_PER_ARTICLE = 6  # Wikipedia averages ~3,000 characters an article
WORDS = "the of and in to was is for on as by with he at from his an were are which this".split()


# -- an instant TEI server, in its own process --------------------------------------------
def _serve(
    conn: Any, dimension: int, max_batch: int, wide_floats: bool, rate_429: float = 0.0, structured: int = 0
) -> None:
    """Child process: answer /info, /embed and /v1/embeddings (base64) from
    precomputed rows until told to stop; `rate_429` of the embedding requests get
    TEI's "model is overloaded" 429 with `Retry-After: 0` instead (seeded).
    `structured`: answer each input with its own vector instead, the real vector of one of
    the first `structured` sample leads plus noise (`ingest.bench.vectors`)."""
    shaped = Structured(*sample_vectors(structured)) if structured else None
    refusals = random.Random(0)
    refused = [0]
    rows = np.random.default_rng(0).standard_normal((1024, dimension)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    # TEI (serde_json) writes float32 in shortest form, ~12 bytes a number; wide floats
    # (float64 digits, ~21 bytes) reproduce the 8.4 kB/vector of the reference's notes.
    wire = rows.astype(np.float64) if wide_floats else rows
    pool = [orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY) for row in wire]
    pool64 = [base64.b64encode(row.tobytes()).decode() for row in rows]
    info = orjson.dumps(
        {
            "model_id": "bench/instant",
            "max_input_length": 512,
            "max_client_batch_size": max_batch,
            "max_batch_tokens": max_batch * 512,
            "max_concurrent_requests": 1 << 20,
            "model_type": {"embedding": {"pooling": "cls"}},
        }
    )

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            self._reply(info if self.path == "/info" else b"")

        def do_POST(self) -> None:
            body = orjson.loads(self.rfile.read(int(self.headers["content-length"])))
            if rate_429 and refusals.random() < rate_429:
                refused[0] += 1
                self._reply(orjson.dumps({"error": "Model is overloaded", "error_type": "overloaded"}), 429)
                return
            if self.path == "/v1/embeddings":
                texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
                if shaped is None:
                    encoded = [pool64[i % len(pool64)] for i in range(len(texts))]
                else:
                    encoded = [base64.b64encode(row.tobytes()).decode() for row in shaped.rows(texts)]
                data = [{"object": "embedding", "embedding": vector, "index": i} for i, vector in enumerate(encoded)]
                self._reply(
                    orjson.dumps(
                        {
                            "object": "list",
                            "data": data,
                            "model": "bench/instant",
                            "usage": {"prompt_tokens": 0, "total_tokens": 0},
                        }
                    )
                )
            else:
                texts = body["inputs"] if isinstance(body["inputs"], list) else [body["inputs"]]
                if shaped is None:
                    self._reply(b"[" + b",".join([pool[i % len(pool)] for i in range(len(texts))]) + b"]")
                else:
                    self._reply(orjson.dumps(shaped.rows(texts), option=orjson.OPT_SERIALIZE_NUMPY))

        def _reply(self, body: bytes, status: int = 200) -> None:
            self.send_response(status)
            if status == 429:
                self.send_header("retry-after", "0")
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    conn.send(server.server_address[1])
    while (asked := conn.recv()) in ("cpu", "refused"):  # anything else: stop
        conn.send(time.process_time() if asked == "cpu" else refused[0])


@dataclass
class InstantServer:
    url: str
    process: Any
    conn: Any

    @classmethod
    def start(cls, *, max_batch: int, wide_floats: bool, rate_429: float = 0.0, structured: int = 0) -> InstantServer:
        """`structured`: see `_serve` (the real vectors are computed, once, in the server's process)."""
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        process = ctx.Process(
            target=_serve, args=(child, DIMENSION, max_batch, wide_floats, rate_429, structured), daemon=True
        )
        process.start()
        while not parent.poll(1.0):  # computing structured vectors takes minutes the first time
            if not process.is_alive():
                raise RuntimeError(f"the instant TEI server exited (code {process.exitcode}) before it was ready")
        return cls(f"http://127.0.0.1:{parent.recv()}", process, parent)

    def cpu(self) -> float:
        self.conn.send("cpu")
        return self.conn.recv()

    def refused(self) -> int:
        """429s answered so far."""
        self.conn.send("refused")
        return self.conn.recv()

    def stop(self) -> None:
        self.conn.send("stop")
        self.process.join(timeout=5)


# -- workload -------------------------------------------------------------------------------
def make_chunks(n: int) -> tuple[list[str], list[tuple[Article, Chunk]]]:
    rng = np.random.default_rng(1)
    words = np.array(WORDS)[rng.integers(0, len(WORDS), size=n * CHUNK_CHARS // 4)]
    blob = " ".join(words)
    texts = [blob[i * CHUNK_CHARS : (i + 1) * CHUNK_CHARS] for i in range(n)]
    pairs = []
    for a in range(0, n, CHUNKS_PER_ARTICLE):
        body = "".join(texts[a : a + CHUNKS_PER_ARTICLE])
        url = f"https://en.wikipedia.org/wiki?curid={a}"
        article = Article(id=str(a), url=url, title=f"Article {a}", text=body)
        for k, text in enumerate(texts[a : a + CHUNKS_PER_ARTICLE]):
            start = k * CHUNK_CHARS
            pairs.append((article, Chunk(article.id, k, text, start, start + len(text), text)))
    return texts, pairs


@dataclass
class Timing:
    chunks: int
    wall: float
    cpu: float

    @property
    def rate(self) -> float:
        return self.chunks / self.wall

    @property
    def cpu_rate(self) -> float:
        return self.chunks / max(self.cpu, 1e-9)


def timed(chunks: int, fn: Callable[[], Any]) -> tuple[Timing, Any]:
    cpu, wall = time.process_time(), time.perf_counter()
    result = fn()
    return Timing(chunks, time.perf_counter() - wall, time.process_time() - cpu), result


def reference_embed(client: httpx.Client, texts: list[str], batch_size: int) -> np.ndarray:
    """The reference's loop: one request at a time, stdlib JSON both ways."""
    out = []
    for i in range(0, len(texts), batch_size):
        res = client.post("/embed", json={"inputs": texts[i : i + batch_size]})
        out.append(np.array(res.json()))
    return np.concatenate(out).astype(np.float32)


def build_all(
    pairs: list[tuple[Article, Chunk]], vectors: np.ndarray, batch_size: int, sparse: SparseSpec | None = None
) -> int:
    return sum(
        len(build_batch(pairs[i : i + batch_size], vectors[i : i + batch_size], sparse).ids)
        for i in range(0, len(pairs), batch_size)
    )


# -- report ------------------------------------------------------------------------------------
@dataclass
class Run:
    """One approach's numbers."""

    name: str
    embed: Timing
    decode: Timing
    server_cpu: float
    bytes_per_vector: float


def measure(
    name: str,
    server: InstantServer,
    texts: list[str],
    embed: Callable[[list[str]], np.ndarray],
    capture: Callable[[], bytes],
    decode: Callable[[bytes], Any],
    batch_size: int,
) -> tuple[Run, np.ndarray]:
    """Time `embed` over all texts, then `decode` alone on a captured response."""
    embed(texts[:batch_size])  # open and warm the connections
    server_before = server.cpu()
    embedded, vectors = timed(len(texts), lambda: embed(texts))
    server_cpu = server.cpu() - server_before
    body = capture()
    repeats = max(1, len(texts) // batch_size)
    decoded, _ = timed(batch_size * repeats, lambda: [decode(body) for _ in range(repeats)])
    return Run(name, embedded, decoded, server_cpu, len(body) / batch_size), vectors


def main(argv: list[str] | None = None) -> int:
    return run_command("python -m ingest bench-tei", lambda edge: _bench(edge, argv))


def _bench(edge: Edge, argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ingest bench-tei", description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight for ours (default 4)")
    parser.add_argument("--wide-floats", action="store_true", help="serve float64-length numbers (~8 kB/vector)")
    args = parser.parse_args(argv)
    edge.ready()
    n, bs = args.chunks, args.batch_size
    texts, pairs = make_chunks(n)
    server = InstantServer.start(max_batch=bs, wide_floats=args.wide_floats)
    sample = orjson.dumps({"inputs": texts[:bs]})
    sample64 = orjson.dumps({"input": texts[:bs], "encoding_format": "base64"})
    runs: list[Run] = []
    results: list[np.ndarray] = []
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            run, vectors = measure(
                "reference: sync httpx, json",
                server,
                texts,
                lambda t: reference_embed(client, t, bs),
                lambda: client.post("/embed", content=sample).content,
                lambda body: np.array(json.loads(body)),
                bs,
            )
            runs.append(run)
            results.append(vectors)
            wires = [
                ("json", "/embed", sample, decode_vectors),
                ("base64", "/v1/embeddings", sample64, decode_base64_vectors),
            ]
            for wire, route, body, decode in wires:
                options = {"batch_size": bs, "max_concurrency": args.concurrency, "wire": wire}
                with TEIEmbedder(server.url, **options) as ours:
                    run, vectors = measure(
                        f"ours: {route} {wire}",
                        server,
                        texts,
                        lambda t: ours.embed_passages(t).vectors,
                        lambda route=route, body=body: client.post(route, content=body).content,
                        decode,
                        bs,
                    )
                runs.append(run)
                results.append(vectors)
    finally:
        server.stop()
    for vectors in results[1:]:  # every approach must have decoded the same vectors
        if not np.allclose(vectors, results[0], atol=1e-6):
            raise SystemExit("the approaches decoded different vectors")
    dense_build, built = timed(n, lambda: build_all(pairs, results[1], bs))
    build, built_too = timed(n, lambda: build_all(pairs, results[1], bs, default_spec()))  # the workers' default
    if built != n or built_too != n:
        raise SystemExit(f"built {built} points for {n} chunks")

    print(
        f"TEI client cost: {n:,} chunks of {CHUNK_CHARS} chars, batch {bs}, {DIMENSION} dims, "
        f"ours with {args.concurrency} requests in flight; chunks/s (CPU/core: per CPU-second of "
        "this process, all threads)"
    )
    heads = ["kB/vec", "embed/s", "embed CPU/core", "decode CPU/core", "+build CPU/core", "vs ref"]
    print(f"{'approach':32}" + "".join(f" {head:>{len(head) + 1}}" for head in heads))
    reference = runs[0].embed.cpu_rate
    for run in runs:
        total = Timing(n, run.embed.wall + build.wall, run.embed.cpu + build.cpu)
        cells = [
            f"{run.bytes_per_vector / 1000:.1f}",
            f"{run.embed.rate:,.0f}",
            f"{run.embed.cpu_rate:,.0f}",
            f"{run.decode.cpu_rate:,.0f}",
            f"{total.cpu_rate:,.0f}",
            f"{run.embed.cpu_rate / reference:.2f}x",
        ]
        print(f"{run.name:32}" + "".join(f" {cell:>{len(head) + 1}}" for cell, head in zip(cells, heads)))
    print(
        f"{'point building (build_batch)':32} {build.cpu_rate:,.0f} chunks/s per core with BM25 sparse "
        f"vectors (the default, in +build), {dense_build.cpu_rate:,.0f} dense only"
    )
    shares = ", ".join(f"{run.server_cpu / run.embed.wall:.0%}" for run in runs)
    print(f"(the instant server process used {shares} of a core during each embed run)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
