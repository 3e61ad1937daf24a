"""Article, chunk and point records, and the deterministic point id."""

from __future__ import annotations

import hashlib
import unicodedata
import uuid
from dataclasses import dataclass
from typing import Any, Mapping

from schemas.errors import ValidationError

# The columns of a `wikimedia/wikipedia` row: every source must provide them.
ARTICLE_FIELDS: tuple[str, ...] = ("id", "url", "title", "text")

# Fixed namespace so that point ids are stable across machines and versions.
POINT_NAMESPACE = uuid.UUID("6f1c3f52-6a0e-5b7e-9c38-0d7a0c9e2f41")
_NAMESPACE_BYTES = POINT_NAMESPACE.bytes


def visible(text: str) -> bool:
    """True when `text` holds something to read: not only whitespace, control and
    format characters (zero-width spaces and joiners, BOMs, direction marks)."""
    stripped = text.strip()
    if stripped.isascii():
        return any(" " < c < "\x7f" for c in stripped)
    return any(unicodedata.category(c)[0] not in "CZ" for c in stripped)  # stops at the first letter


def content_hash(text: str) -> str:
    """Short, stable hash of a text (blake2b, 16 hex digits)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


def point_id(article_id: str, chunk_index: int) -> str:
    """UUID of a chunk's point: the same article and index always give the same id,
    so a re-run overwrites its points instead of duplicating them. This is
    `uuid.uuid5(POINT_NAMESPACE, f"{article_id}:{chunk_index}")`, computed without
    the UUID objects (it runs for every point)."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + f"{article_id}:{chunk_index}".encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True, slots=True)
class Article:
    """One article, shaped like a `wikimedia/wikipedia` row."""

    id: str
    url: str
    title: str
    text: str

    @classmethod
    def from_row(cls, row: Mapping[str, Any], *, position: int | None = None) -> Article:
        """Validate a source row; errors name the field and the article."""
        raw_id = row.get("id")
        label = f"article {raw_id!r}" if raw_id not in (None, "") else f"row {position}"
        if row.get("title"):
            label += f" ({row['title']!r})"
        values: dict[str, str] = {}
        for field in ARTICLE_FIELDS:
            if field not in row:
                raise ValidationError(label, field, "is missing")
            value = row[field]
            if isinstance(value, int) and not isinstance(value, bool) and field == "id":
                value = str(value)
            if not isinstance(value, str):
                raise ValidationError(label, field, f"must be a string, got {type(value).__name__}")
            values[field] = value
        for field in ("id", "title"):
            if not visible(values[field]):
                raise ValidationError(label, field, "is empty (or only invisible characters)")
        return cls(**values)

    @property
    def content_hash(self) -> str:
        return content_hash(self.title + "\x00" + self.text)


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of an article's text, as stored; `embed_text` is what the model sees
    (the chunk, optionally prefixed with the title)."""

    article_id: str
    chunk_index: int
    text: str
    start: int
    end: int
    embed_text: str

    @property
    def content_hash(self) -> str:
        return content_hash(self.embed_text)

    @property
    def point_id(self) -> str:
        return point_id(self.article_id, self.chunk_index)


@dataclass(frozen=True, slots=True)
class PointPayload:
    """What each Qdrant point carries: enough to cite the article and re-check freshness."""

    id: str
    url: str
    title: str
    text: str
    chunk_index: int
    start: int
    end: int
    chunk_hash: str
    article_hash: str

    @classmethod
    def build(cls, article: Article, chunk: Chunk) -> PointPayload:
        return cls(
            id=article.id,
            url=article.url,
            title=article.title,
            text=chunk.text,
            chunk_index=chunk.chunk_index,
            start=chunk.start,
            end=chunk.end,
            chunk_hash=chunk.content_hash,
            article_hash=article.content_hash,
        )

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, point: str = "?") -> PointPayload:
        missing = [name for name in cls.__slots__ if name not in data]
        if missing:
            raise ValidationError(f"point {point}", missing[0], "is missing from the payload")
        return cls(**{name: data[name] for name in cls.__slots__})
