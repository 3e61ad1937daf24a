"""What `python -m search serve` (and the Modal search endpoint) reads besides the store
and the embedder. Declared with the other settings, so that the configuration reference
lists them too; search's HTTP code takes its defaults from here."""

from __future__ import annotations

from dataclasses import dataclass

from ingest.settings.declare import Settings, setting

SERVE = "serve"


@dataclass(frozen=True, slots=True)
class ServeSettings(Settings):
    host: str = setting(
        "127.0.0.1",
        flag="--host",
        env="SEARCH_HOST",
        group=SERVE,
        help="address to listen on; 0.0.0.0 or :: for every interface",
    )
    port: int = setting(
        8000,
        flag="--port",
        env="SEARCH_PORT",
        group=SERVE,
        minimum=0,
        maximum=65535,
        help="port to listen on; 0: any free one",
    )
    max_query_chars: int = setting(
        2000,
        flag="--max-query-chars",
        env="SEARCH_MAX_QUERY_CHARS",
        group=SERVE,
        minimum=1,
        help="longer queries get 413",
    )
    max_concurrent: int = setting(
        4,
        flag="--max-concurrent",
        env="SEARCH_MAX_CONCURRENT",
        group=SERVE,
        minimum=1,
        help="searches at once; more wait their turn",
    )
    token: str | None = setting(
        None,
        env="SEARCH_API_TOKEN",
        secret=True,
        help="the bearer token every search must carry (environment only; --open: none)",
    )
