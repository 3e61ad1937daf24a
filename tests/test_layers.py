"""The package's dependencies point one way, with no cycle:

    schemas  <-  shared layer  <-  jobs  <-  search  <-  the Modal app

`search` needs only the shared layer (never a job). Imports are read from the
source of every module, including those inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("schemas", "ingest", "search")

SCHEMAS, SHARED, JOBS, SEARCH, APP = range(5)
LAYER_NAMES = {SCHEMAS: "schemas", SHARED: "shared", JOBS: "jobs", SEARCH: "search", APP: "the Modal app"}
# The shared layer: what every job and search may use. Everything else in `ingest` is a job.
SHARED_MODULES = (
    "ingest.errors",
    "ingest.settings",
    "ingest.modal_settings",
    "ingest.logs",
    "ingest.edge",
    "ingest.progress",
    "ingest.sources",
    "ingest.chunking",
    "ingest.lexical",
    "ingest.definitions",
    "ingest.crashpoints",
    "ingest.embedders",
    "ingest.store",
)
# Where a function may import the project's own modules: the Modal app, whose containers
# have packages the deploying machine lacks.
INNER_IMPORTS_ALLOWED = {"ingest.modal_app"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def layer(module: str) -> int:
    if module == "schemas" or module.startswith("schemas."):
        return SCHEMAS
    if module == "ingest.modal_app":
        return APP
    if module == "search" or module.startswith("search."):
        return SEARCH
    if module == "ingest" or any(module == m or module.startswith(m + ".") for m in SHARED_MODULES):
        return SHARED
    return JOBS


def imports(module: str) -> list[tuple[str, int, bool]]:
    """(imported project module, line, inside a function) for every import of `module`."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    inner = {
        id(node)
        for fn in ast.walk(tree)
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
        for node in ast.walk(fn)
    }
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            # `from a.b import c` names the module a.b.c when there is one, else a.b
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name.split(".")[0] in PACKAGES and name != module:
                found.append((name, node.lineno, id(node) in inner))
    return found


GRAPH = {module: sorted({name for name, _, _ in imports(module)}) for module in MODULES}


def test_the_walk_finds_the_packages_modules():
    assert {"ingest.store.base", "ingest.pipeline.run", "search.api", "schemas.models"} <= set(MODULES)
    assert "ingest.store.base" in GRAPH["ingest.store.server"]


def test_no_module_imports_a_higher_layer():
    wrong = []
    for module in MODULES:
        for name, line, _ in imports(module):
            ours, theirs = layer(module), layer(name)
            if theirs > ours or (ours == SEARCH and theirs == JOBS):
                wrong.append(
                    f"{MODULES[module].relative_to(ROOT)}:{line}: {module} ({LAYER_NAMES[ours]}) "
                    f"imports {name} ({LAYER_NAMES[theirs]})"
                )
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_there_is_no_import_cycle():
    index, low, on_stack, stack, cycles = {}, {}, set(), [], []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in GRAPH[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in GRAPH:
        if module not in index:
            visit(module)
    assert not cycles, f"import cycles: {cycles}"


def test_the_projects_own_modules_are_imported_at_the_top():
    inner = [
        f"{MODULES[m].relative_to(ROOT)}:{line}: {name}"
        for m in MODULES
        if m not in INNER_IMPORTS_ALLOWED
        for name, line, in_function in imports(m)
        if in_function and not _lazy_backend(m, name)
    ]
    assert not inner, "imports inside functions (move them to the top):\n" + "\n".join(inner)


def _lazy_backend(module: str, name: str) -> bool:
    """`make_embedder` imports the backend it builds: torch or modal come only with the chosen one."""
    return module == "ingest.embedders" and name.startswith("ingest.embedders.")


def test_every_module_imports_without_a_deprecation_warning(tmp_path):
    """pytest's own filter ignores DeprecationWarning (libraries we do not control emit
    them); our modules must not: tenacity 9 deprecated an argument the store used."""
    import os
    import subprocess
    import sys

    names = sorted(m for m in MODULES if not m.endswith("__main__"))
    code = "import importlib\n" + "".join(f"importlib.import_module({name!r})\n" for name in names)
    done = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", code],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
