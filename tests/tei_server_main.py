"""Run the loopback TEI test server (tests/tei_server.py) as a process that takes
`text-embeddings-router`'s flags, so `ingest.sharded.router.Router` can start it exactly
as it starts TEI (`runner()` gives the argv prefix):

    python -m tests.tei_server_main --model-id BAAI/bge-small-en-v1.5 --port 8123 \
        --max-client-batch-size 32 --revision abc --auto-truncate

Vectors are the deterministic ones (`tests.tei_server.deterministic_vector`).
Flags TEI has and this server ignores (`--dtype`, `--huggingface-hub-cache`, ...)
are accepted. Test-only flags: `--startup-delay` (seconds before it listens, like
a model loading), `--exit-code` (print a TEI-like error and exit instead),
`--poison` (refuse any batch holding that text, as TEI refuses a too-long input).
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

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: make `tests` importable from anywhere
    sys.path.insert(0, str(ROOT))

from tests.tei_server import Faults, TEIServer, _Handler, _Server  # noqa: E402


def runner(*extra: str) -> tuple[str, ...]:
    """The argv prefix that runs this server (a `RouterConfig.executable`)."""
    return (sys.executable, str(Path(__file__).resolve()), *extra)


def free_port() -> int:
    """A TCP port free right now on loopback (the server binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class FixedPortTEIServer(TEIServer):
    """`TEIServer` on a port chosen by the caller (TEIServer picks a free one)."""

    def __init__(self, port: int, hostname: str = "127.0.0.1", **kwargs) -> None:
        super().__init__(**kwargs)
        self.port, self.hostname = port, hostname

    def __enter__(self) -> "FixedPortTEIServer":
        handler = type("Handler", (_Handler,), {"tei": self})
        self._httpd = _Server((self.hostname, self.port), handler)
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="tei-server", daemon=True).start()
        return self


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.tei_server_main", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-id", default="test/deterministic")
    parser.add_argument("--revision", default=None)
    parser.add_argument("--hostname", default="127.0.0.1")  # TEI binds 0.0.0.0 by default; tests stay on loopback
    parser.add_argument("-p", "--port", type=int, required=True)
    parser.add_argument("--payload-limit", type=int, default=2_000_000)  # taken, not enforced here
    parser.add_argument("--max-client-batch-size", type=int, default=32)
    parser.add_argument("--max-batch-tokens", type=int, default=16384)
    parser.add_argument("--max-concurrent-requests", type=int, default=512)
    parser.add_argument("--auto-truncate", action="store_true")
    parser.add_argument("--startup-delay", type=float, default=0.0)
    parser.add_argument("--exit-code", type=int, default=None)
    parser.add_argument("--poison", default=None)
    parser.add_argument("--dump-env", default=None, help="write the environment it was started with, as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args, ignored = build_parser().parse_known_args(argv)
    print(f"tei test server: model {args.model_id}, port {args.port}, ignoring {ignored}", flush=True)
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
        faults=Faults(poison=args.poison),
        record_texts=False,
    )
    server.info["model_sha"] = args.revision  # TEI reports --revision as model_sha
    server.info["auto_truncate"] = args.auto_truncate
    with server:
        print(f"Ready on {server.url}", flush=True)
        while not stop.wait(0.1):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
