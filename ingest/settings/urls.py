"""Servers' URLs: checked with the flag that gave them, shown without credentials."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from ingest.errors import SettingsError


def check_url(flag: str, url: str, example: str) -> None:
    """A server's URL, or a SettingsError naming the flag and what is wrong (no credentials shown)."""
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises on a port out of range or not a number
    except ValueError as exc:
        raise SettingsError(f"{flag} {redact_url(url)!r}: {exc}; e.g. {example}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"{flag} {redact_url(url)!r} is not an http(s) URL with a host, e.g. {example}")


def redact_url(url: str) -> str:
    """The URL without user info or query string, safe to put in a message."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]  # as written, a bad port too (`parts.port` raises on it)
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def grpc_port_for(url: str) -> int:
    """The gRPC port beside a REST URL: Qdrant serves gRPC one port above REST (6333 and
    6334 by default). qdrant-client dials 6334 whatever port the URL names
    (`qdrant_remote.py:55-72, 103-110, 366-368` in 1.20), so the port is always given."""
    port = urlsplit(url).port
    return port + 1 if port else 6334
