"""The TEI server a GPU container runs, started and watched from Python.

- `RouterConfig` and `router_command`: the `text-embeddings-router` command line,
  every flag explicit;
- `Router`: runs that command, waits until `GET /health` answers 200, fails fast
  with the tail of the server's output when it dies or never gets healthy.

    >>> config = RouterConfig("BAAI/bge-small-en-v1.5", port=8000)
    >>> with Router.from_config(config) as router:          # doctest: +SKIP
    ...     print(router.url)
"""

from __future__ import annotations

import collections
import logging
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import IO, Any, Mapping, Sequence

import httpx

from ingest.errors import RouterError, SettingsError

log = logging.getLogger(__name__)

ROUTER = "text-embeddings-router"
TEI_DTYPES = (None, "float16", "float32")  # text-embeddings-router --dtype (None: its default)
# TEI 1.9 reads every router flag from an environment variable of the flag's name too
# (clap's `env`). The flags we pass win over those; these we do not pass, and one set
# in a container (by an image, or a Modal secret) would change the server under us:
# API_KEY, above all, would make it demand a token the client does not send.
UNSET_ENV = (
    "API_KEY",
    "HOSTNAME",
    "PAYLOAD_LIMIT",
    "MAX_BATCH_REQUESTS",
    "TOKENIZATION_WORKERS",
    "POOLING",
    "DEFAULT_PROMPT",
    "DEFAULT_PROMPT_NAME",
    "DENSE_PATH",
    "SERVED_MODEL_NAME",
    "UDS_PATH",
)
PAYLOAD_LIMIT = 2_000_000  # bytes; TEI's default, which the client's request sizing assumes


def router_environment(env: Mapping[str, str]) -> dict[str, str]:
    """`env` without the variables TEI would read as flags we leave unset (`UNSET_ENV`)."""
    return {name: value for name, value in env.items() if name not in UNSET_ENV}


@dataclass(frozen=True, slots=True)
class RouterConfig:
    """How `text-embeddings-router` is started.

    `concurrent_requests` is how many client requests may be in flight at once;
    TEI 1.9 counts every *input* of a request against `--max-concurrent-requests`
    (and answers 429 past it), so that flag is sized to batch size x requests."""

    model_id: str
    port: int = 8000
    revision: str | None = None
    huggingface_hub_cache: str | None = None
    max_client_batch_size: int = 512
    max_batch_tokens: int = 512 * 512  # a full batch of 512-token inputs, as the reference runs it
    concurrent_requests: int = 32
    dtype: str | None = "float16"
    auto_truncate: bool = True
    hostname: str = "127.0.0.1"  # loopback: only this container's pipeline talks to it
    payload_limit: int = PAYLOAD_LIMIT
    executable: tuple[str, ...] = (ROUTER,)  # on Modal, the image's entrypoint script (see ingest.modal_app)
    # TEI's tokenizer threads (--tokenization-workers; TEI's default: every core it sees, which in a
    # container can be the host's, not the container's share). None: TEI's default.
    tokenization_workers: int | None = None

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise SettingsError(f"router port {self.port} is not a TCP port")
        for name in ("max_client_batch_size", "max_batch_tokens", "concurrent_requests", "payload_limit"):
            if getattr(self, name) < 1:
                raise SettingsError(f"router {name} must be at least 1, got {getattr(self, name)}")
        if self.tokenization_workers is not None and self.tokenization_workers < 1:
            raise SettingsError(f"router tokenization_workers must be at least 1, got {self.tokenization_workers}")
        if self.dtype not in TEI_DTYPES:
            raise SettingsError(f"router dtype {self.dtype!r} is not one of float16, float32 (or None)")
        if not self.executable:
            raise SettingsError("router executable is empty")

    @property
    def max_concurrent_requests(self) -> int:
        return self.max_client_batch_size * self.concurrent_requests

    @property
    def url(self) -> str:
        return f"http://{self.hostname}:{self.port}"


def router_command(config: RouterConfig) -> list[str]:
    """The argv that starts TEI for `config`; no flag is left to a default that
    could change under us between TEI releases."""
    command = [
        *config.executable,
        "--model-id",
        config.model_id,
        "--hostname",
        config.hostname,
        "--port",
        str(config.port),
        "--payload-limit",
        str(config.payload_limit),
        "--max-client-batch-size",
        str(config.max_client_batch_size),
        "--max-batch-tokens",
        str(config.max_batch_tokens),
        "--max-concurrent-requests",
        str(config.max_concurrent_requests),
    ]
    if config.revision:
        command += ["--revision", config.revision]
    if config.huggingface_hub_cache:
        command += ["--huggingface-hub-cache", config.huggingface_hub_cache]
    if config.dtype:
        command += ["--dtype", config.dtype]
    if config.tokenization_workers:
        command += ["--tokenization-workers", str(config.tokenization_workers)]
    if config.auto_truncate:
        command.append("--auto-truncate")
    return command


class Router:
    """A TEI server in a child process; a context manager.

    `start()` returns once `GET {url}/health` answers 200. It raises `RouterError`
    at once if the process exits first, or after `startup_timeout` seconds; both
    messages carry the last lines the server printed (stdout and stderr, merged).
    `echo` receives every line as it comes (the container log, on Modal). `env` is
    the server's environment (default: this process's); pass `router_environment(...)`."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        url: str,
        startup_timeout: float = 600.0,
        poll_interval: float = 0.25,
        echo: IO[str] | None = None,
        tail_lines: int = 40,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if not command:
            raise SettingsError("router command is empty")
        self.command = list(command)
        self.url = url.rstrip("/")
        self.startup_timeout = startup_timeout
        self.poll_interval = poll_interval
        self.echo = echo
        self.env = dict(env) if env is not None else None  # None: this process's environment
        self._tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    @classmethod
    def from_config(cls, config: RouterConfig, **kwargs: Any) -> Router:
        return cls(router_command(config), url=config.url, **kwargs)

    def __repr__(self) -> str:
        return f"Router({self.command[0]!r}, url={self.url!r}, running={self.running})"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def returncode(self) -> int | None:
        """The server's exit code once it exited, else None."""
        return self._process.poll() if self._process is not None else None

    @property
    def tail(self) -> str:
        """The last lines the server printed."""
        return "\n".join(self._tail)

    def start(self) -> Router:
        if self._process is not None:
            raise RouterError(f"{self!r} was already started")
        name = self.command[0]
        log.info("starting %s", " ".join(self.command))
        try:
            self._process = subprocess.Popen(
                self.command,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,  # one stream: TEI logs to stdout, fails to stderr
                text=True,
                errors="replace",
                bufsize=1,
            )
        except OSError as exc:
            raise RouterError(
                f"cannot run {name!r} ({exc}): the TEI image puts {ROUTER} on PATH; "
                "outside it, pass RouterConfig(executable=...)"
            ) from exc
        self._reader = threading.Thread(target=self._read_output, name="router-output", daemon=True)
        self._reader.start()
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        log.info("%s is healthy at %s", name, self.url)
        return self

    def _read_output(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        try:
            for line in self._process.stdout:
                self._tail.append(line.rstrip("\n"))
                if self.echo is not None:
                    self.echo.write(line)
        except (OSError, ValueError):  # the pipe was closed under us by stop()
            pass

    def _wait_healthy(self) -> None:
        assert self._process is not None
        started = time.monotonic()
        last = "no answer yet"
        # trust_env=False: a proxy from the environment must not sit between us and loopback.
        with httpx.Client(timeout=max(self.poll_interval, 2.0), trust_env=False) as client:
            while True:
                code = self._process.poll()
                if code is not None:
                    if self._reader is not None:
                        self._reader.join(timeout=2.0)  # collect what it printed before dying
                    raise RouterError(
                        f"{self.command[0]} exited with code {code} before it was healthy; "
                        f"its last output:\n{self.tail or '(nothing)'}"
                    )
                try:
                    response = client.get(f"{self.url}/health")
                    if response.status_code == 200:
                        return
                    last = f"GET /health answered {response.status_code}"
                except httpx.TransportError as exc:
                    last = f"GET /health failed: {type(exc).__name__}"
                elapsed = time.monotonic() - started
                if elapsed >= self.startup_timeout:
                    raise RouterError(
                        f"{self.command[0]} was not healthy at {self.url} within "
                        f"{self.startup_timeout:g} s ({last}); its last output:\n{self.tail or '(nothing)'}"
                    )
                time.sleep(min(self.poll_interval, max(self.startup_timeout - elapsed, 0.0)))

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds; safe to call twice."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                log.warning("%s ignored SIGTERM for %g s; killing it", self.command[0], grace)
                process.kill()
                process.wait()
        if self._reader is not None:
            self._reader.join(timeout=2.0)
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> Router:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
