"""Data contracts shared by `ingest` and `search`.

Pure data and rules, no I/O: the article record, the chunk, the Qdrant point
payload and its deterministic id, the embedding-model spec and the collection
spec that records which model built a collection.
"""

from schemas.errors import SchemaError, ValidationError
from schemas.models import KNOWN_MODELS, CollectionSpec, ModelSpec, SparseSpec
from schemas.records import (
    ARTICLE_FIELDS,
    Article,
    Chunk,
    PointPayload,
    content_hash,
    point_id,
    visible,
)

__all__ = [
    "ARTICLE_FIELDS",
    "Article",
    "Chunk",
    "CollectionSpec",
    "KNOWN_MODELS",
    "ModelSpec",
    "PointPayload",
    "SchemaError",
    "SparseSpec",
    "ValidationError",
    "content_hash",
    "point_id",
    "visible",
]
