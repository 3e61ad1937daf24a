"""`python -m search QUERY`: ranked passages with title, url and score.

  python -m search "the space film in which the computer HAL 9000 turns on its crew"
  python -m search -k 3 --json "who painted the Mona Lisa"     # one JSON object per hit
  python -m search eval --questions search/questions/sample.jsonl  # recall@1/5/10 and MRR

Exit codes: 0 hits printed (or none found); 1 failed; 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import textwrap
from typing import Sequence

from ingest.cli import setup_logging
from ingest.errors import IngestError, SettingsError
from ingest.settings import add_embedder_args, add_store_args, embedder_settings, store_settings
from search.api import Hit, Searcher

log = logging.getLogger("search")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m search", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("query", help="what to look for, in plain words")
    parser.add_argument("-k", type=int, default=5, help="number of hits (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="one JSON object per hit on stdout")
    add_embedder_args(parser)
    add_store_args(parser)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    return parser


def format_hit(hit: Hit, width: int = 100) -> str:
    snippet = textwrap.shorten(hit.text, width=240, placeholder=" …")
    body = textwrap.indent(textwrap.fill(snippet, width=width - 4), "    ")
    return f"{hit.rank}. {hit.title}  ({hit.score:.3f})\n    {hit.url}\n{body}"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["eval"]:  # python -m search eval --questions FILE: retrieval quality
        from search.evaluation import main as evaluate

        return evaluate(argv[1:])
    try:
        args = build_parser().parse_args(argv)
        setup_logging(args.verbose - 1)
        stores, embedders = store_settings(args), embedder_settings(args)
    except SettingsError as exc:
        print(f"python -m search: error: {exc}", file=sys.stderr)
        return 2
    try:
        with Searcher.open(stores, embedders) as searcher:
            hits = searcher.search(args.query, k=args.k)
    except IngestError as exc:
        log.error("%s", exc)
        return 1
    for hit in hits:
        print(json.dumps(hit.to_dict(), ensure_ascii=False) if args.json else format_hit(hit))
    if not hits:
        log.warning("no hits: the collection is empty")
    return 0
