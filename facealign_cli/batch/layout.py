"""What a run writes under ``--out``: the names the tool owns at the top of the output folder
(state folder, manifest, ``pose.csv``, the contact sheet's pages and thumbnails) and the test
that keeps output keys off them (:func:`is_reserved_name`).

Standard library only: every module of the engine (the commands, the state, the recorder)
may import it.
"""

from __future__ import annotations

import re

#: Folder (under ``--out``) of the run's state: lock, done records, settings.
STATE_DIR = ".facealign"
#: The run's manifest: one JSON line per item.
MANIFEST_NAME = "manifest.jsonl"
#: The table of ``pose`` (one row per face).
POSE_CSV_NAME = "pose.csv"
#: Folder (under ``--out``) of the thumbnails of ``render --sheet``.
THUMBS_DIR = ".thumbs"
#: Stem of the pages of ``render --sheet``: ``index.html``, ``index-2.html``, ...
SHEET_STEM = "index"
#: What the runner writes at the top of ``--out`` (besides the sheet's further pages): no
#: output key may start with one of these, or with one of them without its extension
#: (:func:`is_reserved_name`).
RESERVED_NAMES = frozenset({STATE_DIR, MANIFEST_NAME, MANIFEST_NAME + ".partial", POSE_CSV_NAME,
                            THUMBS_DIR, SHEET_STEM + ".html"})
_RESERVED_STEMS = frozenset(n.split(".")[0] for n in RESERVED_NAMES if not n.startswith("."))
_SHEET_PAGE = re.compile(re.escape(SHEET_STEM) + r"-[0-9]+(?:\.html)?")


def is_reserved_name(name: str) -> bool:
    """Whether a name at the top of ``--out`` belongs to the tool: one of
    :data:`RESERVED_NAMES`, such a name without its extension (``manifest``, ``pose``,
    ``index``: a video's ``<key>.jsonl`` or a key used as a folder would reach them), or a page
    of the sheet (``index-2.html``, ``index-2``). ``name`` is compared as given: pass it
    folded (:func:`facealign_cli.io.inputs.fold_key`) to compare as a case-insensitive file
    system would. The ``reserved`` test of
    :func:`facealign_cli.io.inputs.collect_inputs` for the batch engine."""
    return (name in RESERVED_NAMES or name in _RESERVED_STEMS
            or _SHEET_PAGE.fullmatch(name) is not None)
