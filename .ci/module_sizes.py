"""Report the project's largest modules: a signal to split one by job, not a gate
(a hard cap rewards packing statements onto lines). Always exits 0.

    python .ci/module_sizes.py [--over N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("schemas", "ingest", "search")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--over", type=int, default=400, help="list modules longer than this (default 400 lines)")
    args = parser.parse_args()
    sizes = sorted(
        (
            (path.read_text(encoding="utf-8").count("\n"), path.relative_to(ROOT))
            for package in PACKAGES
            for path in (ROOT / package).rglob("*.py")
        ),
        reverse=True,
    )
    over = [(lines, path) for lines, path in sizes if lines > args.over]
    print(
        f"module sizes: {len(sizes)} modules, median {sizes[len(sizes) // 2][0]} lines; "
        f"{len(over)} over {args.over}" + (":" if over else "")
    )
    for lines, path in over:
        print(f"  {lines:5d}  {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
