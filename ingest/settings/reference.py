"""docs/configuration.md's tables, generated from the settings' declarations, so that the
reference cannot drift from what the commands read.

    python -m ingest.settings.reference           # the tables, on stdout
    python -m ingest.settings.reference --write   # into docs/configuration.md, between its markers
    python -m ingest.settings.reference --check   # exit 1 when docs/configuration.md is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from ingest.modal_settings import DeploySettings
from ingest.settings.declare import Declared, declared, default_text, env_text
from ingest.settings.models import IngestSettings
from ingest.settings.serve import ServeSettings

BEGIN = "<!-- BEGIN GENERATED: python -m ingest.settings.reference -->"
END = "<!-- END GENERATED -->"
DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def _row(item: Declared) -> str:
    flag = f"`{item.option.flag}`" if item.option.flag else "—"
    env = f"`{env_text(item).removeprefix('env ')}`" if item.option.env else "—"
    values = f" ({' / '.join(map(str, item.choices))})" if item.choices else ""
    default = default_text(item).removeprefix("default ") or "—"
    text = item.option.help.replace("|", "\\|") + values
    return f"| {flag} | {env} | {default.replace('|', '/')} | {text} |"


def tables(sections: Sequence[tuple[str, type]] | None = None) -> str:
    """A Markdown table a settings class: flag, variable, default and meaning of each setting."""
    if sections is None:
        sections = default_sections()
    out = []
    for title, cls in sections:
        out += [f"### {title}", "", "| flag | environment | default | meaning |", "| --- | --- | --- | --- |"]
        out += [_row(item) for item in declared(cls)]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def default_sections() -> list[tuple[str, type]]:
    """Every settings class a user sets, in the order a reader meets them."""
    return [
        ("python -m ingest (run, reindex, verify, repair, ...) and python -m search", IngestSettings),
        ("python -m search serve", ServeSettings),
        ("modal deploy -m ingest.modal_app (read from the deploying shell)", DeploySettings),
    ]


def rewrite(text: str, generated: str) -> str:
    """`text` with what stands between the markers replaced by `generated`."""
    head, found, rest = text.partition(BEGIN)
    _, found_end, tail = rest.partition(END)
    if not found or not found_end:
        raise SystemExit(f"{DOC}: the markers {BEGIN!r} and {END!r} are missing")
    return f"{head}{BEGIN}\n\n{generated}\n{END}{tail}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ingest.settings.reference",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--write", action="store_true", help=f"rewrite {DOC.name} between its markers")
    parser.add_argument("--check", action="store_true", help=f"exit 1 when {DOC.name} is not what --write writes")
    args = parser.parse_args(argv)
    generated = tables()
    if not (args.write or args.check):
        sys.stdout.write(generated)
        return 0
    current = DOC.read_text(encoding="utf-8")
    wanted = rewrite(current, generated)
    if args.check:
        if current != wanted:
            print(f"{DOC} is stale: run python -m ingest.settings.reference --write", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
