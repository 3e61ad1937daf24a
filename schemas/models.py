"""Embedding-model specs and the collection spec that records them.

Two 384-dimension models would mix silently in one collection, so a collection
records the model (and the chunker settings) it was built with, and both ingest
and search compare against that record.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from schemas.errors import ValidationError

BGE_QUERY_INSTRUCTION = "Represent this sentence for searching relevant passages: "


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """What shapes a vector: a model id (or path) and how it is used."""

    name: str
    dimension: int
    max_tokens: int
    revision: str | None = None
    pooling: str = "mean"
    normalize: bool = True
    query_instruction: str = ""
    passage_instruction: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        for key in ("name", "dimension", "max_tokens"):
            if key not in data:
                raise ValidationError("model spec", key, "is missing")
        known = {f for f in cls.__slots__}
        return cls(**{k: v for k, v in data.items() if k in known})


# Models whose usage we know. Others get their spec from the loaded model itself.
KNOWN_MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("sentence-transformers/all-MiniLM-L6-v2", 384, 256, pooling="mean"),
        ModelSpec("BAAI/bge-small-en-v1.5", 384, 512, pooling="cls", query_instruction=BGE_QUERY_INSTRUCTION),
        ModelSpec("BAAI/bge-base-en-v1.5", 768, 512, pooling="cls", query_instruction=BGE_QUERY_INSTRUCTION),
        ModelSpec("BAAI/bge-large-en-v1.5", 1024, 512, pooling="cls", query_instruction=BGE_QUERY_INSTRUCTION),
    )
}


@dataclass(frozen=True, slots=True)
class SparseSpec:
    """How a chunk's lexical (BM25) sparse vector is made: the analyser and the
    term weighting's parameters, so that queries are tokenized the way the
    passages were. Qdrant applies the IDF at query time.

    `tokenizer` "qdrant/bm25" is Qdrant's standard BM25 (the model name a Qdrant
    server's own inference answers to) for `language`; "words-v1" is this
    project's earlier analyser, still read from collections it built.
    `include_title`: whether the title's words count among a chunk's terms (when the
    chunker prefixes the title to what the model sees); earlier collections did."""

    name: str = "bm25"
    tokenizer: str = "qdrant/bm25"
    k1: float = 1.2
    b: float = 0.75
    avg_len: float = 48.0  # tokens in an average chunk, stopwords dropped
    language: str | None = None  # the stopwords' and stemmer's language (qdrant/bm25)
    include_title: bool = True

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["language"] is None:  # absent, not null: earlier records keep their fingerprints
            del data["language"]
        if data["include_title"]:  # likewise
            del data["include_title"]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SparseSpec:
        known = {f for f in cls.__slots__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValidationError("sparse spec", unknown[0], "is not a known setting (written by a newer version?)")
        return cls(**dict(data))


@dataclass(frozen=True, slots=True)
class CollectionSpec:
    """The record a collection keeps of how its vectors were made (stored as
    collection metadata). `chunking` holds the chunker's settings; `sparse`, the
    lexical vectors' (None: dense vectors only); `definition`, how each article's
    defining phrase is cut from its first sentence for a dense vector of its own on the
    article's first chunk (None: no such vector; `ingest.definitions`)."""

    model: ModelSpec
    distance: str = "cosine"
    chunking: dict[str, Any] = field(default_factory=dict)
    sparse: SparseSpec | None = None
    definition: str | None = None

    @property
    def dimension(self) -> int:
        return self.model.dimension

    @property
    def fingerprint(self) -> str:
        """Hash of everything that shapes a stored vector."""
        shape: dict[str, Any] = {"model": self.model.to_dict(), "distance": self.distance, "chunking": self.chunking}
        if self.sparse is not None:  # absent, not null: dense-only collections keep their fingerprints
            shape["sparse"] = self.sparse.to_dict()
        if self.definition is not None:  # likewise for collections without definition vectors
            shape["definition"] = self.definition
        blob = json.dumps(shape, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_metadata(self) -> dict[str, Any]:
        return {
            "embedding_model": self.model.to_dict(),
            "distance": self.distance,
            "chunking": dict(self.chunking),
            "sparse": self.sparse.to_dict() if self.sparse else None,
            "definition": self.definition,
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any] | None) -> CollectionSpec | None:
        """The spec recorded in a collection's metadata, or None for a collection
        this project did not create."""
        if not metadata or "embedding_model" not in metadata:
            return None
        return cls(
            model=ModelSpec.from_dict(metadata["embedding_model"]),
            distance=metadata.get("distance", "cosine"),
            chunking=dict(metadata.get("chunking") or {}),
            sparse=SparseSpec.from_dict(metadata["sparse"]) if metadata.get("sparse") else None,
            definition=metadata.get("definition"),
        )
