"""What only a Modal container can check before a full run, for
`modal run -m ingest.modal_app::preflight` (beside `ingest.preflight`'s checks): the
secrets' keys, TEI started through the image's entrypoint, the dataset on its Volume,
a commit of the state Volume while the dataset is mapped, and the deployed class
embedding as this container's TEI does."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from ingest.embedders import Embedder
from ingest.errors import SourceError
from ingest.preflight import FAIL, PASS, PROBE_TEXTS, SKIP, Check
from ingest.sharded.shard import load_rows


def check_dataset(path: str, articles: int) -> tuple[list[dict], Check]:
    """The first `articles` rows of the dataset saved at `path` (on Modal, the Volume),
    and whether it is there."""
    name = "the dataset is on its Volume"
    try:
        rows = load_rows(path, 0, articles)
    except SourceError as exc:
        return [], Check(name, FAIL, str(exc)[:300], "modal run -m ingest.modal_app::download_dataset")
    return [dict(row) for row in rows], Check(name, PASS, f"{path}: checked with its first {len(rows):,} articles")


def check_entrypoint(command: Sequence[str], entrypoint: str) -> Check:
    """TEI's CUDA images from 1.9.1 start the router through a script that adds the CUDA
    forward-compatibility libraries when the host's driver is older than the image's CUDA."""
    name = "TEI started by its entrypoint"
    if command and command[0] == entrypoint:
        return Check(name, PASS, f"{entrypoint} started text-embeddings-router")
    return Check(
        name,
        FAIL,
        f"started {command[0] if command else 'nothing'}, not {entrypoint}",
        "use a TEI CUDA image of 1.9.1 or later (86-1.9 is), whose entrypoint script is " + entrypoint,
    )


def check_secrets(env: Mapping[str, str], required: Mapping[str, Sequence[str]]) -> Check:
    """Every secret's keys are in the container's environment (names only: values are never shown)."""
    name = "secrets are present"
    missing = {secret: [key for key in keys if not env.get(key)] for secret, keys in required.items()}
    missing = {secret: keys for secret, keys in missing.items() if keys}
    if missing:
        return Check(
            name,
            FAIL,
            "missing " + "; ".join(f"{s}: {', '.join(k)}" for s, k in missing.items()),
            " and ".join(
                f"modal secret create {s} " + " ".join(f"{k}=..." for k in keys) for s, keys in missing.items()
            ),
        )
    return Check(name, PASS, ", ".join(f"{s} ({', '.join(keys)})" for s, keys in required.items()))


def check_commit_while_mapped(
    dataset_path: str, commit_state: Callable[[], None], commit_dataset: Callable[[], None] | None = None
) -> Check:
    """The run commits its state Volume while shards have the dataset memory-mapped;
    that must work. Whether committing the dataset's own Volume would, is reported."""
    name = "Volume commit, dataset mapped"
    import datasets  # heavy (pyarrow): only this check maps a dataset

    if not Path(dataset_path).exists():
        return Check(name, SKIP, f"no dataset at {dataset_path}", "modal run -m ingest.modal_app::download_dataset")
    mapped = datasets.load_from_disk(dataset_path)
    first = mapped[0]["id"] if len(mapped) else None  # touch it: the Arrow file is mapped now
    commit_state()
    detail = f"state Volume committed with {dataset_path} mapped (row 0: {first})"
    if commit_dataset is not None:
        try:
            commit_dataset()
            detail += "; the dataset's own Volume committed too"
        except Exception as exc:  # noqa: BLE001 - what Modal says is the finding
            detail += f"; the dataset's own Volume refused ({type(exc).__name__}), as the run expects"
    del mapped
    return Check(name, PASS, detail)


def check_deployed_class(lookup: Callable[[], object], embedder: Embedder) -> Check:
    """A query embedded through the deployed class (as search does it) matches the same
    text embedded by this container's TEI."""
    name = "deployed class embeds alike"
    try:
        remote = lookup()
        vectors = np.asarray(remote.embed.remote(PROBE_TEXTS), dtype=np.float32)
    except Exception as exc:  # noqa: BLE001 - not deployed yet is a skip, not a failure
        if type(exc).__name__ in ("NotFoundError", "AuthError"):
            return Check(name, SKIP, f"no deployed class ({type(exc).__name__})", "modal deploy -m ingest.modal_app")
        raise
    ours = embedder.embed_passages(PROBE_TEXTS).vectors
    cosine = float(((vectors * ours).sum(1) / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(ours, axis=1))).min())
    detail = f"cosine between the deployed class's and this TEI's vectors: {cosine:.5f} (at least)"
    if cosine < 0.999:
        return Check(name, FAIL, detail, "redeploy: the deployed class serves another model or revision")
    return Check(name, PASS, detail)
