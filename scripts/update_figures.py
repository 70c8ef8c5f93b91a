#!/usr/bin/env python3
"""Rewrite the generated figures spans of README.md, docs/batch.md and benchmarks/README.md from
``facealign_cli/data/figures.json`` (:mod:`facealign_cli.figures`).

The measuring scripts run it themselves after ``--write-figures``; run it by hand after editing
a span's wording in :mod:`facealign_cli.figures`. ``--check``: change nothing, exit 1 when a
document is out of date.

Usage::

    PYTHONPATH=$PWD python scripts/update_figures.py [--check]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from facealign_cli.figures import update_documents  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when a document is stale")
    args = ap.parse_args(argv)
    stale = update_documents(ROOT, write=not args.check)
    for rel in stale:
        print(f"{rel}: {'out of date' if args.check else 'rewritten'}")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    raise SystemExit(main())
