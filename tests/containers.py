"""What each container of `ingest.modal_app` holds, read from modal's own view of the
app, and an interpreter that holds exactly that (the container rehearsal).

A Modal container has: the Python packages its image's `pip_install` layers put
there; the files its image's `add_local_*` layers and the function's automount ship
under `/root` (which is on its path); the modal client, mounted at `/pkg`; and
modal's own dependencies, appended last to `sys.path` from `/__modal/deps`. Nothing
else: not the repository, not this machine's extras. `containers(app_module)` reads
all of it from the objects modal builds while the app module is imported (modal
1.6.4, offline, no credentials), and `Interpreter.build(container)` makes a folder
and a virtual environment that hold the same:

- an image's layers (`modal/_image.py`): each `_Image` keeps its build in the
  closure of its `_load`: `_from_args` layers hold `dockerfile_function` (the
  Dockerfile commands for a builder version: the `RUN python -m pip install ...`
  and `ENV` lines), `base_images` and `build_function` (a `run_function` step,
  `_image.py:2906-3023`); `_add_mount_layer_or_copy` layers hold `base_image` and
  `mount` (`add_local_python_source` and friends, `_image.py:645-693, 1049-1071`);
- the files a mount uploads: `_Mount.entries[...].get_files_to_upload()`, the
  generator `_Mount._load_mount` itself uses (`mount.py:130-135`), so each layer's
  `ignore` (by default `NON_PYTHON_FILES` for Python sources) is honoured;
- a function's own mounts: `_Function._spec.mounts`: the client mount and the
  automount of the function module's top-level package (`_functions.py:790-794`,
  `_utils/function_utils.py:371-382`); a `run_function` step's build container
  gets the same, on the image as it is at that step (`_image.py:2983-3000`);
- the client and its dependencies: `mount.py:801-867` (the packages
  `modal`, `modal_proto`, `modal_version`, `synchronicity` at `/pkg`; the pins of
  `modal/builder/<version>.txt`, installed `--no-deps`, at `/__modal/deps`).

Private APIs of modal 1.6.4 (pinned in pyproject): modal has no public way to list
an image's layers or a mount's files offline.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "wiki-vector-index" / "containers"
CLIENT_PACKAGES = ("modal", "modal_proto", "modal_version", "synchronicity")  # mount.py:805-844
# The TEI image's own environment, which modal cannot see (a registry image): Dockerfile-cuda's
# runtime stage at v1.9.3 (lines 123-152), the `86-` variant built from the same file.
TEI_IMAGE_ENV = {"HUGGINGFACE_HUB_CACHE": "/data", "PORT": "80", "USE_FLASH_ATTENTION": "True"}


@dataclass(frozen=True)
class Container:
    """What one container of the app holds."""

    name: str  # the function's tag, or "build <function>" for an image's run_function step
    image: str  # the app module's attribute that holds its image
    module: str  # what the container imports first: the function's module (`_runtime/user_code_imports.py:509`)
    python: str  # "3.11"
    packages: tuple[str, ...]  # every pin of the image's pip layers (below the step, for a build)
    files: tuple[tuple[str, str], ...]  # (local file, path under /root), sorted
    env: dict[str, str] = field(default_factory=dict)  # the image's ENV lines
    registry: str | None = None  # the base image, when it comes from a registry

    def has(self, remote: str) -> bool:
        return any(path == remote for _, path in self.files)


def _impl(obj: Any) -> Any:
    from modal._utils.async_utils import synchronizer

    return synchronizer._translate_in(obj)


def _closure(function: Any) -> dict[str, Any]:
    return dict(zip(function.__code__.co_freevars, (c.cell_contents for c in function.__closure__ or ())))


def _builder_version() -> str:
    from modal._image import LATEST_IMAGE_BUILDER_VERSION

    return os.environ.get("MODAL_IMAGE_BUILDER_VERSION") or LATEST_IMAGE_BUILDER_VERSION


def _mount_files(mount: Any) -> list[tuple[str, str]] | None:
    """(local file, path under /root) of a local mount; None for a named (global) one."""
    from modal.mount import NonLocalMountError

    try:
        entries = mount.entries
    except NonLocalMountError:
        return None
    files = []
    for entry in entries:
        for local, remote in entry.get_files_to_upload():
            remote = PurePosixPath(remote)
            if remote.parts[:2] != ("/", "root"):
                raise AssertionError(f"{local} is shipped to {remote}, outside /root: the rehearsal does not place it")
            files.append((str(local), str(remote.relative_to("/root"))))
    return files


@dataclass
class _Layer:
    kind: str  # "docker", "build" or "mount"
    commands: list[str] = field(default_factory=list)
    files: list[tuple[str, str]] = field(default_factory=list)
    build_function: Any = None


def _layers(image: Any, version: str) -> list[_Layer]:
    """An image's layers, base first."""
    layers, current = [], _impl(image)
    while current is not None:
        held = _closure(current._load)
        if "mount" in held and "base_image" in held:  # _add_mount_layer_or_copy, copy=False
            layers.append(_Layer("mount", files=_mount_files(held["mount"]) or []))
            current = held["base_image"]
        elif "split_image" in held:  # from_registry(add_python=...): one layer or two, by builder version
            current = held["split_image"] if version > "2025.06" else held["single_layer_image"]
        elif "dockerfile_function" in held:  # _from_args
            spec = held["dockerfile_function"](version) if held["dockerfile_function"] else None
            context = held["context_mount_function"](version) if held["context_mount_function"] else None
            layer = _Layer(
                "build" if held["build_function"] is not None else "docker",
                commands=list(spec.commands) if spec else [],
                build_function=held["build_function"],
            )
            if context is not None:  # copy=True: a COPY of these files into the image
                layer.files = _mount_files(context) or []
            layers.append(layer)
            current = (held["base_images"] or {}).get("base")
        else:
            raise AssertionError(f"an image layer the rehearsal does not know: {sorted(held)}")
    return layers[::-1]


def _pins(command: str) -> list[str]:
    words = shlex.split(command)
    if words[:5] != ["RUN", "python", "-m", "pip", "install"]:
        return []
    pins = [w for w in words[5:] if not w.startswith("-")]
    if len(pins) != len(words) - 5:
        raise AssertionError(f"pip flags the rehearsal does not model: {command}")
    return pins


def _describe(layers: list[_Layer], name: str, image: str, module: str, own_files: list[tuple[str, str]]) -> Container:
    packages, files, env, python, registry = [], list(own_files), {}, None, None
    for layer in layers:
        for command in layer.commands:
            packages += _pins(command)
            if command.startswith("ENV "):
                key, _, value = command[4:].partition("=")
                env[key.strip()] = value.strip()
            if found := re.match(r"FROM python:(\d+\.\d+)", command):
                python = found.group(1)
            elif command.startswith("FROM ") and command != "FROM base":
                registry = command.split()[1]
        files += layer.files
    if registry and "text-embeddings-inference" in registry:
        env = {**TEI_IMAGE_ENV, **env}
    return Container(name, image, module, python or "3.11", tuple(packages), tuple(sorted(set(files))), env, registry)


def containers(module: Any) -> dict[str, Container]:
    """Every container of the app in `module`: each function's and class's, and each
    `run_function` build step's ("build <name>")."""
    import modal

    version = _builder_version()
    images = {id(_impl(v)): k for k, v in vars(module).items() if isinstance(v, modal.Image)}
    state = _impl(module.app)._local_state
    functions = {tag: f for tag, f in state.functions.items() if not tag.endswith(".*")}
    functions.update({tag: c._class_service_function for tag, c in state.classes.items()})
    found: dict[str, Container] = {}
    for tag, function in functions.items():
        spec = function._spec
        layers = _layers(spec.image, version)
        image = images.get(id(spec.image), "?")
        own = [f for mount in spec.mounts for f in (_mount_files(mount) or [])]
        found[tag] = _describe(layers, tag, image, module.__name__, own)
        for index, layer in enumerate(layers):
            if layer.kind == "build":
                step = layer.build_function
                files = [f for mount in step._spec.mounts for f in (_mount_files(mount) or [])]
                name = f"build {step._source_info.implementation_name}"
                found[name] = _describe(layers[:index], name, image, step._source_info.module_name, files)
    return found


def client_version() -> str:
    import modal

    return modal.__version__


# -- an interpreter that holds what a container holds ---------------------------------------------
def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{what} failed ({done.returncode}): {done.stderr[-3000:] or done.stdout[-3000:]}")


def _cached(name: str, build) -> Path:
    """`CACHE/name`, built by `build(folder)` once: a half-built folder is built again."""
    folder = CACHE / name
    if (folder / ".complete").is_file():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    build(folder)
    (folder / ".complete").write_text("")
    return folder


def image_environment(python: str, packages: tuple[str, ...]) -> Path:
    """A virtual environment with exactly these pins (and what they need), cached by them."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" != python:
        raise RuntimeError(
            f"the image runs Python {python}, this interpreter is {sys.version_info.major}.{sys.version_info.minor}"
        )
    key = hashlib.sha256(json.dumps([python, sorted(packages)]).encode()).hexdigest()[:16]

    def build(folder: Path) -> None:
        _run([sys.executable, "-m", "venv", str(folder)], "python -m venv")
        if packages:
            _run(
                [
                    str(folder / "bin" / "python"),
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    *packages,
                ],
                f"pip install {' '.join(packages)}",
            )

    return _cached(f"venv-{python}-{key}", build)


def client_mount() -> Path:
    """The modal client as a container gets it at /pkg (this machine's copy of the same version)."""

    def build(folder: Path) -> None:
        import importlib

        for name in CLIENT_PACKAGES:
            source = Path(importlib.import_module(name).__path__[0])
            shutil.copytree(source, folder / name, ignore=shutil.ignore_patterns("__pycache__"))

    return _cached(f"client-{client_version()}", build)


def client_dependencies(python: str) -> Path:
    """Modal's own dependencies at /__modal/deps: `modal/builder/<version>.txt`, no
    dependencies of theirs. A pin PyPI lacks in that exact form (certifi 2026.10.19
    is published as 2026.10.19.post1) is taken as a prefix (`==2026.10.19.*`)."""
    import modal

    version = _builder_version()
    pins = (Path(modal.__file__).parent / "builder" / f"{version}.txt").read_text().split()

    def build(folder: Path) -> None:
        python_exe = image_environment(python, ()) / "bin" / "python"
        command = [
            str(python_exe),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--target",
            str(folder),
        ]
        try:
            _run(command + pins, "pip install the client's dependencies")
        except RuntimeError:
            _run(command + [f"{pin}.*" for pin in pins], "pip install the client's dependencies")

    return _cached(f"client-deps-{version}-{python}", build)


@dataclass(frozen=True)
class Interpreter:
    """A container's Python: `python` (of its image's environment), `root` (its /root),
    and the client's folders; `command(script, ...)` runs a script there with only
    those on the path (`-I`: no PYTHONPATH, no user site, no script folder)."""

    container: Container
    python: Path
    root: Path
    client: Path
    dependencies: Path

    @classmethod
    def build(cls, container: Container, folder: Path) -> Interpreter:
        root = folder / "root"
        for local, remote in container.files:
            target = root / remote
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local, target)
        root.mkdir(parents=True, exist_ok=True)
        environment = image_environment(container.python, container.packages)
        return cls(
            container, environment / "bin" / "python", root, client_mount(), client_dependencies(container.python)
        )

    def command(self, script: Path, *args: str) -> list[str]:
        return [
            str(self.python),
            "-I",
            str(script),
            json.dumps({"path_first": [str(self.root), str(self.client)], "path_last": [str(self.dependencies)]}),
            *args,
        ]
