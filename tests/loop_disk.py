"""A small ext4 file system on a loop device, for the tests of full disks and power cuts.

A power cut is emulated below the file system: `cut()` copies the loop device's
backing file as it is at that moment, which holds what the kernel has written to
the "disk", and nothing of what sits dirty in the page cache (a file's data written
without fsync, a rename not yet committed by the journal). Mounting the copy
replays ext4's journal, as booting after a power cut would.

Needs root, `losetup`, `mkfs.ext4` and `mount` (util-linux, e2fsprogs): tests skip,
saying so, where any of them is missing (no loop devices in an unprivileged
container, for instance)."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest


def unavailable() -> str | None:
    """Why loop-device file systems cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root (losetup, mount)"
    missing = [tool for tool in ("losetup", "mkfs.ext4", "mount", "umount") if shutil.which(tool) is None]
    if missing:
        return f"needs {', '.join(missing)}"
    probe = Path(f"/tmp/loop-probe-{uuid.uuid4().hex[:6]}.img")
    try:
        probe.write_bytes(b"\0" * (1 << 20))
        found = subprocess.run(["losetup", "-f", "--show", str(probe)], capture_output=True, text=True)
        if found.returncode != 0:
            return f"no loop device: {found.stderr.strip()}"
        subprocess.run(["losetup", "-d", found.stdout.strip()], check=False)
        return None
    finally:
        probe.unlink(missing_ok=True)


def _run(*args: str) -> str:
    return subprocess.run(list(args), check=True, capture_output=True, text=True).stdout.strip()


class LoopDisk:
    """An ext4 file system of `megabytes` in the image `image`, mounted at `mount`."""

    def __init__(self, image: Path, mount: Path, *, megabytes: int = 0) -> None:
        self.image, self.mount, self.device = image, mount, ""
        if megabytes:
            with open(image, "wb") as handle:
                handle.truncate(megabytes << 20)
            _run("mkfs.ext4", "-q", "-F", "-m", "0", str(image))  # no blocks reserved for root
        mount.mkdir(parents=True, exist_ok=True)
        self.device = _run("losetup", "-f", "--show", str(image))
        _run("mount", "-t", "ext4", self.device, str(mount))

    def cut(self, image: Path, mount: Path) -> LoopDisk:
        """The disk as a power cut now would leave it, mounted at `mount` (this one stays as it is)."""
        with open(self.image, "rb") as source, open(image, "wb") as copy:
            shutil.copyfileobj(source, copy, 1 << 22)
        return LoopDisk(image, mount)

    def close(self) -> None:
        if self.device:
            subprocess.run(["umount", "-l", str(self.mount)], check=False, capture_output=True)
            subprocess.run(["losetup", "-d", self.device], check=False, capture_output=True)
            self.device = ""
        self.image.unlink(missing_ok=True)


@pytest.fixture
def loop_disks(tmp_path):
    """A factory of mounted loop disks under tmp_path, all unmounted at the end; skips where they cannot be made."""
    reason = unavailable()
    if reason:
        pytest.skip(f"loop-device file systems: {reason}")
    disks: list[LoopDisk] = []

    def make(name: str, megabytes: int) -> LoopDisk:
        disks.append(LoopDisk(tmp_path / f"{name}.img", tmp_path / name, megabytes=megabytes))
        return disks[-1]

    def cut(disk: LoopDisk, name: str) -> LoopDisk:
        disks.append(disk.cut(tmp_path / f"{name}.img", tmp_path / name))
        return disks[-1]

    make.cut = cut  # type: ignore[attr-defined]
    yield make
    for disk in reversed(disks):
        disk.close()
