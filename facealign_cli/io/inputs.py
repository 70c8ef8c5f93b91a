"""Turning command-line arguments (files, folders, ``-`` for a list on stdin) into the ordered
list of images of a run, each with the output key its results are written under.

Rules (documented in the CLI help):

* A **folder** is walked recursively (sorted, depth first); files whose extension is one of
  :data:`IMAGE_EXTENSIONS` (case-insensitive) are taken. Names starting with ``.`` (hidden
  files such as macOS ``._photo.jpg`` resource forks, hidden folders) and the run's own output
  folder are skipped. Symbolic links to files are followed; links to folders are not (no loops).
* A **file** named explicitly is always taken, whatever its extension (content decides whether
  it is an image).
* ``-`` reads more arguments, one path per line, from stdin (blank lines ignored); they follow
  the same rules.
* ``--include`` / ``--exclude`` GLOBs (fnmatch, case-insensitive; ``*`` also matches ``/``) are
  tested against the path relative to its input root *and* against the file name; a file is
  kept when it matches some include (or none are given) and no exclude.
* The same file reached twice (a folder and a file inside it) is kept once, at its first place.
* **Output key**: the path relative to its input root, without extension, with ``/``
  separators (a file named explicitly is relative to its own folder: key = its stem). Outputs go
  to ``<out>/<key>...``, mirroring the input tree. When two inputs would share a key
  (``a.jpg`` and ``a.png`` in one folder, or ``x.jpg`` in two roots; compared
  case-insensitively, for case-insensitive file systems), those inputs use the file name with
  its extension (``a.jpg``) as the last component instead, and any that still collide get
  ``~2``, ``~3`` ... appended in input order.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

#: Extensions taken when walking folders (compared lower-case).
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


class InputError(ValueError):
    """A command-line input is unusable (e.g. does not exist). The CLI reports it as a usage
    error (exit code 2)."""


@dataclass(frozen=True)
class InputItem:
    """One image of a run.

    Attributes:
        index: position in the run (0-based, input order).
        path: the file path as the user will recognise it (the argument joined with the
            relative path inside a folder); written to outputs and the manifest.
        rel: path relative to its input root, POSIX separators (e.g. ``"sub/img.jpg"``).
        key: output key (``"sub/img"``), unique within the run; see the module docstring.
    """

    index: int
    path: str
    rel: str
    key: str


def _matches(patterns: Sequence[str], rel: str) -> bool:
    rel_l = rel.lower()
    name_l = rel_l.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(rel_l, p.lower()) or fnmatch.fnmatchcase(name_l, p.lower())
               for p in patterns)


def _walk(root: Path, skip: set[str]) -> Iterable[Path]:
    """Image files under ``root``, sorted, depth first, hidden names and ``skip`` dirs pruned."""
    for dirpath, dirnames, filenames in os.walk(root, onerror=None):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and os.path.realpath(os.path.join(dirpath, d)) not in skip)
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                full = Path(dirpath) / name
                if full.is_file():
                    yield full


def read_path_list(stream) -> list[str]:
    """Paths from a text stream, one per line (``\\n`` or ``\\r\\n``), blank lines ignored;
    surrounding whitespace is kept except the line end, so names with spaces work."""
    out = []
    for line in stream:
        line = line.rstrip("\r\n")
        if line.strip():
            out.append(line)
    return out


def collect_inputs(args: Sequence[str], *, include: Sequence[str] = (),
                   exclude: Sequence[str] = (), stdin=None,
                   skip_dirs: Sequence[str | os.PathLike] = (),
                   missing_ok: bool = False) -> list[InputItem]:
    """Expand command-line inputs into the run's images, in order, with unique output keys.

    Args:
        args: file paths, folder paths, and ``"-"`` (read a path list from ``stdin``).
        include, exclude: fnmatch patterns (see the module docstring).
        stdin: text stream for ``"-"`` (default ``sys.stdin``).
        skip_dirs: folders never walked into (the output folder).
        missing_ok: keep non-existent paths from the stdin list as items (their reading fails
            later and is recorded per image) instead of raising. Missing command-line
            arguments always raise.

    Returns:
        The :class:`InputItem` list.

    Raises:
        InputError: a command-line argument does not exist, or ``-`` is given twice.
    """
    import sys

    skip = {os.path.realpath(d) for d in skip_dirs}
    entries: list[tuple[str, bool]] = []  # (path, from_stdin)
    seen_stdin = False
    for a in args:
        if a == "-":
            if seen_stdin:
                raise InputError("'-' (read paths from stdin) given more than once")
            seen_stdin = True
            entries.extend((p, True) for p in read_path_list(stdin or sys.stdin))
        else:
            entries.append((a, False))

    found: list[tuple[str, str]] = []  # (display path, rel)
    for a, from_stdin in entries:
        p = Path(a)
        if p.is_dir():
            for f in _walk(p, skip):
                rel = f.relative_to(p).as_posix()
                found.append((os.path.join(a, *rel.split("/")), rel))
        elif p.exists() or (from_stdin and missing_ok):
            found.append((a, p.name))
        else:
            raise InputError(f"no such file or folder: {a}")

    seen: set[str] = set()
    kept: list[tuple[str, str]] = []
    for path, rel in found:
        if include and not _matches(include, rel):
            continue
        if exclude and _matches(exclude, rel):
            continue
        ident = os.path.realpath(path)
        if ident in seen:
            continue
        seen.add(ident)
        kept.append((path, rel))

    keys = assign_keys([rel for _, rel in kept])
    return [InputItem(i, path, rel, key) for i, ((path, rel), key) in enumerate(zip(kept, keys))]


def assign_keys(rels: Sequence[str]) -> list[str]:
    """Unique output keys for relative paths (see the module docstring for the rule).

    >>> assign_keys(["a.jpg", "a.png", "b/c.jpg"])
    ['a.jpg', 'a.png', 'b/c']
    """

    def stem_key(rel: str) -> str:
        pp = PurePosixPath(rel)
        return str(pp.with_suffix("")) if pp.suffix else rel

    keys = [stem_key(r) for r in rels]
    counts: dict[str, int] = {}
    for k in keys:
        counts[k.lower()] = counts.get(k.lower(), 0) + 1
    keys = [rel if counts[k.lower()] > 1 else k for k, rel in zip(keys, rels)]
    used: dict[str, int] = {}
    out = []
    for k in keys:
        n = used.get(k.lower(), 0) + 1
        used[k.lower()] = n
        out.append(k if n == 1 else f"{k}~{n}")
    return out
