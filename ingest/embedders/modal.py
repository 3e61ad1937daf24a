"""Embedder backend for the deployed Modal class (`ingest.modal_app.GPUWorker`,
deployed with `modal deploy -m ingest.modal_app`): each call is one
`Embedder().embed.remote(texts)` on a GPU container running TEI.

The remote `embed` embeds exactly what it is given; this class adds the model's
query instruction to queries and to nothing else. The model spec comes from the
deployed class's `spec` method (what its TEI server reports), or, for a
deployment without one, from `KNOWN_MODELS`.

    >>> embedder = ModalEmbedder()                        # doctest: +SKIP
    >>> embedder.embed_queries(["who painted the Mona Lisa"]).shape   # doctest: +SKIP
    (1, 384)

The Modal lookup is injectable: `remote_cls` is anything that, called with no
arguments, gives an object whose methods have `.remote(...)`, which is how the
tests run this class against an in-process fake.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np

from ingest.embedders.base import (
    PassageEmbeddings,
    Rejection,
    all_vectors,
    as_float32_matrix,
    with_query_instruction,
)
from ingest.errors import EmbedderError, InputRejected
from schemas import KNOWN_MODELS, ModelSpec

DEFAULT_APP = "wiki-embed"
DEFAULT_CLASS = "GPUWorker"
DEFAULT_MODEL = "BAAI/bge-small-en-v1.5"
DEFAULT_BATCH_SIZE = 512  # texts per remote call: the deployed TEI's --max-client-batch-size
DEPLOY_HINT = "deploy it with `modal deploy -m ingest.modal_app`"


class ModalEmbedder:
    """The deployed Modal class behind the `Embedder` interface (see the module docstring)."""

    def __init__(
        self,
        app_name: str = DEFAULT_APP,
        class_name: str = DEFAULT_CLASS,
        query_instruction: str | None = None,
        model_name: str | None = None,
        *,
        remote_cls: Callable[[], Any] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        environment_name: str | None = None,
    ) -> None:
        if batch_size < 1:
            raise EmbedderError(f"ModalEmbedder batch_size must be at least 1, got {batch_size}")
        self.app_name, self.class_name, self.batch_size = app_name, class_name, batch_size
        if remote_cls is None:
            remote_cls = _lookup(app_name, class_name, environment_name)
        try:
            self._remote = remote_cls()
        except Exception as exc:
            raise self._translate(exc, "instantiate") from exc
        self.spec = self._load_spec(model_name, query_instruction)

    def __repr__(self) -> str:
        return f"ModalEmbedder({self.app_name!r}, {self.class_name!r}, model={self.spec.name!r})"

    def _load_spec(self, model_name: str | None, query_instruction: str | None) -> ModelSpec:
        try:
            method = getattr(self._remote, "spec", None)  # a fake may lack it; Modal answers NotFoundError
            reported = method.remote() if method is not None else None
        except Exception as exc:
            if not _is_missing_method(exc):
                raise self._translate(exc, "spec") from exc
            reported = None
        if reported is not None:
            try:
                spec = ModelSpec.from_dict(reported)
            except (TypeError, ValueError) as exc:
                raise EmbedderError(f"{self._where()} reported an unusable model spec: {exc}") from exc
            if model_name and model_name != spec.name:
                raise EmbedderError(
                    f"{self._where()} serves {spec.name!r}, not {model_name!r}: "
                    "deploy the app with that model or drop the model name"
                )
        else:
            name = model_name or DEFAULT_MODEL
            if name not in KNOWN_MODELS:
                raise EmbedderError(
                    f"{self._where()} has no `spec` method and {name!r} is not a known model "
                    f"({', '.join(KNOWN_MODELS)}): redeploy the app (`modal deploy -m ingest.modal_app`)"
                )
            spec = KNOWN_MODELS[name]
        if query_instruction is not None:
            spec = dataclasses.replace(spec, query_instruction=query_instruction)
        return spec

    # -- Embedder protocol -------------------------------------------------
    def embed_passages(self, texts: Sequence[str]) -> PassageEmbeddings:
        texts = list(texts)
        out = np.zeros((len(texts), self.spec.dimension), dtype=np.float32)
        rejected: list[Rejection] = []
        for start in range(0, len(texts), self.batch_size):
            self._embed_into(texts[start : start + self.batch_size], start, out, rejected)
        rejected.sort(key=lambda r: r.index)
        return PassageEmbeddings(out, rejected)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return all_vectors(
            self.embed_passages(with_query_instruction(self.spec, texts)), where=self._where(), what="query"
        )

    def count_tokens(self, texts: Sequence[str]) -> list[int] | None:
        return None  # no tokenizer here: the chunker budgets by characters, TEI truncates

    def close(self) -> None:
        pass  # nothing held locally; the containers scale down by themselves

    def __enter__(self) -> ModalEmbedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- remote calls --------------------------------------------------------
    def _embed_into(self, texts: list[str], offset: int, out: np.ndarray, rejected: list[Rejection]) -> None:
        """Embed `texts` into `out[offset:]`. An input the server refuses comes back
        as `InputRejected`: it is recorded, left a zero row, and the rest resent."""
        pending = list(range(len(texts)))
        while pending:
            try:
                vectors = self._remote.embed.remote([texts[i] for i in pending])
            except InputRejected as exc:
                if not 0 <= exc.index < len(pending):
                    raise EmbedderError(f"{self._where()} refused an input it cannot place: {exc}") from exc
                rejected.append(Rejection(offset + pending.pop(exc.index), exc.status, exc.message))
                continue
            except EmbedderError:
                raise
            except Exception as exc:
                raise self._translate(exc, "embed") from exc
            out[[offset + i for i in pending]] = as_float32_matrix(vectors, len(pending), self.spec.dimension)
            return

    def _where(self) -> str:
        return f"Modal class {self.class_name!r} of app {self.app_name!r}"

    def _translate(self, exc: Exception, method: str) -> EmbedderError:
        """Modal's errors as EmbedderErrors that say what to do."""
        try:
            from modal import (
                exception as modal_errors,  # absent where only the fakes run
            )
        except ImportError:  # pragma: no cover - the fakes in tests need no Modal
            modal_errors = None
        if modal_errors is not None and isinstance(exc, modal_errors.AuthError):
            return EmbedderError(
                f"cannot call {self._where()}: Modal credentials are missing or invalid ({exc}). "
                "Run `modal token new`, or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET"
            )
        if modal_errors is not None and isinstance(exc, modal_errors.NotFoundError):
            return EmbedderError(
                f"{self._where()} was not found ({exc}): {DEPLOY_HINT}, or check --modal-app "
                "and the Modal environment (MODAL_ENVIRONMENT)"
            )
        if modal_errors is not None and isinstance(exc, modal_errors.ConnectionError):
            return EmbedderError(f"cannot connect to Modal to call {self._where()} ({exc}): check the network")
        return EmbedderError(f"{self._where()}: {method} failed ({type(exc).__name__}: {exc})")


def _lookup(app_name: str, class_name: str, environment_name: str | None) -> Callable[[], Any]:
    """The deployed class, looked up lazily: nothing is contacted until the first call."""
    try:
        import modal  # only this backend needs it: the rest of the package imports without
    except ImportError as exc:
        raise EmbedderError("--embedder modal needs the `modal` package: pip install modal") from exc
    return modal.Cls.from_name(app_name, class_name, environment_name=environment_name)


def _is_missing_method(exc: Exception) -> bool:
    """Modal's answer for a deployed class without the method (an older deployment)."""
    return type(exc).__name__ == "NotFoundError" and "has no method" in str(exc)
