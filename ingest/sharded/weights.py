"""The served model, pinned, and its weights cached in the image at build time.

Modal runs an image's `run_function` step in a build container that imports the
step's module and holds only that module's own package (`ingest`, automounted;
modal 1.6.4 `_image.py:2983-3000`, `_utils/function_utils.py:371-382`): this module
imports nothing of the project and nothing outside the standard library at its
top, so that step runs whatever the image's later layers add. (`ingest.modal_app`
imports the settings, and with them `schemas`, which that container lacks.)

BAAI/bge-small-en-v1.5: 384 dimensions, CLS pooling, 512 tokens; the revision is
pinned so that every container, and every later run, embeds with the same weights.
"""

from __future__ import annotations

import os

MODEL_ID = "BAAI/bge-small-en-v1.5"
MODEL_REVISION = "5c38ec7c405ec4b44b94cc5a9bb96e735b38267a"
WEIGHTS_DIR = "/weights"  # a Hugging Face hub cache inside the image; TEI reads it with --huggingface-hub-cache


def snapshot_dir(cache_dir: str = WEIGHTS_DIR, model_id: str = MODEL_ID, revision: str = MODEL_REVISION) -> str:
    return os.path.join(cache_dir, "models--" + model_id.replace("/", "--"), "snapshots", revision)


def pin_revision(cache_dir: str, model_id: str, revision: str) -> str:
    """Record `revision` under `refs/` in a hub cache, as a download by branch
    name would have. `huggingface_hub` writes `refs/<name>` only for branch and
    tag names, while TEI's hub client finds cached files only through
    `refs/<revision>`: without this file it fetches a commit-pinned model again."""
    repo = os.path.join(cache_dir, "models--" + model_id.replace("/", "--"))
    if not os.path.isdir(os.path.join(repo, "snapshots", revision)):
        raise FileNotFoundError(f"{model_id}@{revision} is not in the hub cache at {cache_dir}")
    refs = os.path.join(repo, "refs")
    os.makedirs(refs, exist_ok=True)
    path = os.path.join(refs, revision)
    with open(path, "w") as handle:
        handle.write(revision)
    return path


def download_weights(cache_dir: str = WEIGHTS_DIR) -> None:
    """Runs once, while the image is built: the files TEI loads (and the chunker's
    tokenizer.json), at the pinned revision."""
    from huggingface_hub import snapshot_download  # in the image; not a dependency of the package

    snapshot_download(
        MODEL_ID,
        revision=MODEL_REVISION,
        cache_dir=cache_dir,
        allow_patterns=["*.json", "*.safetensors", "*.txt"],  # no ONNX or PyTorch copies
    )
    pin_revision(cache_dir, MODEL_ID, MODEL_REVISION)
