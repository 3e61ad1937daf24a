"""The TEI stand-in (`ingest.rehearsal.tei`) as a process that takes
`text-embeddings-router`'s flags, so that `ingest.sharded.tei_process.Router` starts it
exactly as it starts TEI (`runner()` gives the argv prefix), plus flags of its own for
the faults (a sick backend, a router that aborts, a storm of 429s):

    python -m ingest.rehearsal.standin_router --model-id BAAI/bge-small-en-v1.5 --port 8123 \\
        --max-client-batch-size 32 --revision abc --auto-truncate --sick-after 40

Vectors are the deterministic ones (`ingest.embedders.fake.deterministic_vector`).
Flags TEI has and this server ignores (`--dtype`, `--huggingface-hub-cache`, ...)
are accepted.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

from ingest.rehearsal.tei import ABORT_EXIT, Faults, TEIServer


def runner(*extra: str) -> tuple[str, ...]:
    """The argv prefix that runs this server as a process taking the router's flags (a
    `RouterConfig.executable`); `extra`: flags of its own (`--sick-after 40`, ...)."""
    return (sys.executable, "-m", "ingest.rehearsal.standin_router", *extra)


def free_port() -> int:
    """A TCP port free right now on loopback (the server binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class FixedPortTEIServer(TEIServer):
    """`TEIServer` on a port chosen by the caller (TEIServer picks a free one)."""

    def __init__(self, port: int, hostname: str = "127.0.0.1", **kwargs) -> None:
        super().__init__(**kwargs)
        self.port, self.host = port, hostname


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ingest.rehearsal.standin_router",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="A TEI-protocol server taking text-embeddings-router's flags (those it has no use for, such "
        "as --dtype, are accepted and ignored), with deterministic vectors and injectable faults.",
    )
    parser.add_argument("--model-id", default="test/deterministic")
    parser.add_argument("--revision", default=None)
    parser.add_argument("--hostname", default="127.0.0.1")  # TEI binds 0.0.0.0 by default; rehearsals stay on loopback
    parser.add_argument("-p", "--port", type=int, required=True)
    parser.add_argument("--payload-limit", type=int, default=2_000_000)
    parser.add_argument("--max-client-batch-size", type=int, default=32)
    parser.add_argument("--max-batch-tokens", type=int, default=16384)
    parser.add_argument("--max-concurrent-requests", type=int, default=512)
    # TEI's clap arg (router/src/main.rs, every arg `#[clap(long, env)]`), which its /info reports as
    # `tokenization_workers` (the `Info` struct, router/src/lib.rs)
    parser.add_argument("--tokenization-workers", type=int, default=1)
    parser.add_argument("--auto-truncate", nargs="?", const="true", default="true")
    parser.add_argument(
        "--startup-delay", type=float, default=0.0, help="seconds before it listens, like a model loading"
    )
    parser.add_argument("--exit-code", type=int, default=None, help="print a TEI-like error and exit with it instead")
    parser.add_argument("--poison", default=None, help="refuse any batch holding this text, as a too-long input")
    parser.add_argument("--rate-429", type=float, default=0.0, help="share of embedding requests answered 429")
    parser.add_argument("--retry-after", default=None, help="Retry-After sent with 429 and 503 (TEI sends none)")
    parser.add_argument(
        "--sick-after",
        type=int,
        default=None,
        help="embedding requests before the backend breaks: then every one 424, /health 503",
    )
    parser.add_argument(
        "--die-after",
        type=int,
        default=None,
        help="embedding requests before the process aborts (exit 134), as a sticky CUDA fault does",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dump-env", default=None, help="write the environment it was started with, as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args, ignored = build_parser().parse_known_args(argv)
    print(f"tei stand-in: model {args.model_id}, port {args.port}, ignoring {ignored}", flush=True)
    if args.dump_env:
        Path(args.dump_env).write_text(json.dumps(dict(os.environ)), encoding="utf-8")
    if args.exit_code is not None:
        print(f"Error: Could not download model artifacts: {args.model_id} not found", file=sys.stderr, flush=True)
        return args.exit_code
    time.sleep(args.startup_delay)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server = FixedPortTEIServer(
        args.port,
        hostname=args.hostname,
        model_id=args.model_id,
        max_client_batch_size=args.max_client_batch_size,
        max_batch_tokens=args.max_batch_tokens,
        max_concurrent_requests=args.max_concurrent_requests,
        faults=Faults(
            poison=args.poison,
            rate_429=args.rate_429,
            retry_after=args.retry_after,
            sick_after=args.sick_after,
            die_after=args.die_after,
            seed=args.seed,
        ),
        record_texts=False,
    )
    server.info["tokenization_workers"] = args.tokenization_workers
    server.info["model_sha"] = args.revision  # TEI reports --revision as model_sha (router/src/lib.rs:322)
    server.info["auto_truncate"] = args.auto_truncate.lower() != "false"
    with server:
        print(f"Ready on {server.url}", flush=True)
        while not stop.wait(0.05):
            if server.dead.is_set():
                print(
                    "thread 'tokio-runtime-worker' panicked: DriverError(CUDA_ERROR_ILLEGAL_ADDRESS, "
                    '"an illegal memory access was encountered")',
                    file=sys.stderr,
                    flush=True,
                )
                os._exit(ABORT_EXIT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
