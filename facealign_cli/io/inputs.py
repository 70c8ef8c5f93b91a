"""Turning command-line arguments (files, folders, ``-`` for a list on stdin) into the ordered
list of images of a run, each with the output key its results are written under.

Rules (documented in the CLI help):

* A **folder** is walked recursively (sorted by name, depth first: a folder's files, then its
  subfolders); regular files whose extension is one of :data:`IMAGE_EXTENSIONS`
  (case-insensitive) are taken, and with ``videos=True`` (``detect``, ``landmarks``, ``pose``,
  ``mesh``) also those of :data:`facealign_cli.io.video.VIDEO_EXTENSIONS` (one item per video).
  Names starting with ``.`` (hidden files such as macOS
  ``._photo.jpg`` resource forks, hidden folders) and the run's own output folder are skipped
  silently. Symbolic links to files are followed; links to folders are not (no loops). The
  walk is iterative (any depth) and linear in the number of entries.
* A **subfolder that holds a facealign run** (a ``.facealign`` folder and a
  ``manifest.jsonl``: another command's ``--out`` inside the input folder) is not walked, so
  one command's outputs (``render``'s overlays, say) are never taken as another's inputs; it
  is reported like the entries below (reason :data:`RUN_FOLDER_REASON`). A folder named on
  the command line is walked even if it holds a run.
* **Entries that cannot be taken are reported, never dropped silently**: a subfolder that
  cannot be listed (permissions, I/O error), a symbolic link to a folder, and an entry named
  like an image (or without extension) that is not a regular file -- a FIFO, a device, a
  socket, a dangling symbolic link, a symbolic-link loop -- each become an :class:`InputItem`
  with a :attr:`~InputItem.skip_reason` at its place in the walk (no key: nothing is written
  for it). The batch engine records it in the manifest as ``skipped`` with that reason, and
  warns.
* A **file** named explicitly is always taken, whatever its extension (content decides whether
  it is an image).
* ``-`` reads more arguments, one path per line, from stdin (blank lines ignored); they follow
  the same rules.
* ``--include`` / ``--exclude`` GLOBs (fnmatch, case-insensitive; ``*`` also matches ``/``) are
  tested against the path relative to its input root *and* against the file name; a file is
  kept when it matches some include (or none are given) and no exclude.
* The same file reached twice (a folder and a file inside it) is kept once, at its first place.
* **Output key** (:func:`assign_keys`): the path relative to its input root, without
  extension, with ``/`` separators (a file named explicitly is relative to its own folder: key
  = its stem). Outputs go to ``<out>/<key>...``, mirroring the input tree. Keys are compared
  *folded* (Unicode NFC, then case-folded), as a case-insensitive, normalising file system
  (macOS, Windows) would compare the names. The rule, applied to the run's whole input list:

  1. Inputs whose keys fold equal (``a.jpg`` and ``a.png`` in one folder, ``x.jpg`` in two
     roots, ``A.jpg`` and ``a.jpg``) keep the file name *with* its extension as the last
     component instead (``a.jpg``, ``a.png``). These are the inputs' *claimed* keys.
  2. In input order, an input takes its claimed key unless an earlier input has taken that key
     (folded); then it takes ``<claimed key>~N`` with the smallest ``N >= 2`` whose folded form
     is neither taken nor claimed by any input of the run.

  So keys are unique over the run by construction (also folded): a ``~N`` key never takes the
  key another input claims (``d1/x.jpg``, ``d2/x.jpg``, ``d2/x.jpg~2.jpg`` get ``x.jpg``,
  ``x.jpg~3``, ``x.jpg~2``), and they depend only on the input list, so a re-run of the same
  command finds the same outputs.

  Every key (stem or claimed) is first made **safe** (:func:`safe_key`): a component that is
  empty, ``.`` or ``..`` (the stem of a file named ``...mp4`` is ``..``) gets ``_`` appended
  (``.._``), so no output leaves ``--out``; and a first component that names one of the
  tool's own files or folders at the top of ``--out`` (the ``reserved`` test of
  :func:`collect_inputs`; for the batch engine
  :func:`facealign_cli.batch.layout.is_reserved_name`: ``manifest.jsonl``, ``pose.csv``,
  ``index.html``, ``.facealign`` ... and their stems) gets ``_`` appended too: a video
  ``manifest.mp4`` has the key ``manifest_`` (its frames go to ``manifest_.jsonl``, never
  over the run's manifest), a folder ``index.html/`` the keys ``index.html_/...``. A
  component over 240 bytes is shortened to a prefix and a hash, and a folder named like the
  output file of another key (``a.json/`` beside ``a.jpg``) gets ``_`` appended
  (:mod:`facealign_cli.io.key_names`); :attr:`InputItem.note` says so, for the manifest.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
import unicodedata
from collections.abc import Callable, Collection, Iterator, Sequence
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
            ``""`` for a skipped entry.
        skip_reason: ``None`` for an image to process; for a folder entry that cannot be
            taken (unreadable folder, FIFO, device, dangling link, link loop ...), why, in a
            few words: the engine records it as ``skipped`` with this message and processes
            nothing.
        note: why the key is not the input's path, for the manifest (a long name shortened,
            a folder renamed: :mod:`facealign_cli.io.key_names`), else ``None``.
    """

    index: int
    path: str
    rel: str
    key: str
    skip_reason: str | None = None
    note: str | None = None

    @property
    def skipped(self) -> bool:
        """The entry is reported, not processed (:attr:`skip_reason` is set)."""
        return self.skip_reason is not None


def _matches(patterns: Sequence[str], rel: str) -> bool:
    rel_l = rel.lower()
    name_l = rel_l.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(rel_l, p.lower()) or fnmatch.fnmatchcase(name_l, p.lower())
               for p in patterns)


def _why_not_a_file(full: str) -> str | None:
    """Why a folder entry (not a folder) cannot be read as an image, or None for a regular
    file (symbolic links followed)."""
    try:
        st = os.stat(full)
    except OSError as exc:
        if os.path.islink(full):
            if exc.errno == errno.ELOOP:
                return "symbolic link loop"
            if exc.errno == errno.ENOENT:
                return "dangling symbolic link (its target does not exist)"
            return f"symbolic link that cannot be followed: {exc.strerror or exc}"
        return f"cannot access: {exc.strerror or exc}"
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe), not a regular file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device, not a regular file"
    if stat.S_ISSOCK(mode):
        return "a socket, not a regular file"
    return "not a regular file"


#: Why a subfolder holding a facealign run is not walked (:func:`is_run_folder`).
RUN_FOLDER_REASON = "the output folder of a facealign run (not walked)"


def is_run_folder(names: Collection[str]) -> bool:
    """Whether a folder whose entries are named ``names`` holds a facealign run: a
    ``.facealign`` state folder and a manifest (``manifest.jsonl``, or the
    ``manifest.jsonl.partial`` of a run in progress or killed)."""
    return ".facealign" in names and ("manifest.jsonl" in names
                                      or "manifest.jsonl.partial" in names)


def _walk(root: Path, skip: set[str], exts: frozenset[str] = IMAGE_EXTENSIONS
          ) -> Iterator[tuple[Path, str | None, str]]:
    """``(path, None, real path)`` for the image files under ``root`` and ``(path, reason,
    real path)`` for the entries that cannot be taken, sorted, depth first (a folder's files,
    then its subfolders), hidden names and ``skip`` folders (real paths) pruned; a subfolder
    holding a facealign run (:func:`is_run_folder`) is reported, not walked.

    Iterative (an explicit stack: any depth, whatever the interpreter's recursion limit), and
    linear in the entries: real paths are built from the parent's (a symbolic link is
    resolved on its own), never resolved component by component for each file."""
    stack: list[tuple[Path, str, str | None]] = [(root, os.path.realpath(root), None)]
    while stack:
        folder, real, why = stack.pop()
        if why is not None:
            yield folder, why, real
            continue
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            yield folder, f"cannot read folder: {exc.strerror or exc}", real
            continue
        if folder is not root and is_run_folder({e.name for e in entries}):
            yield folder, RUN_FOLDER_REASON, real
            continue
        files: list[tuple[Path, str | None, str]] = []
        folders: list[tuple[Path, str, str | None]] = []
        for e in entries:
            if e.name.startswith("."):
                continue
            full = folder / e.name
            try:
                is_dir = e.is_dir()  # follows symbolic links
                link = e.is_symlink()
            except OSError:
                is_dir = link = False
            e_real = os.path.realpath(full) if link else os.path.join(real, e.name)
            if is_dir:
                if e_real in skip:
                    continue
                folders.append((full, e_real, "symbolic link to a folder (not followed)"
                                if link else None))
                continue
            ext = os.path.splitext(e.name)[1].lower()
            if ext not in exts and ext:
                continue
            why = _why_not_a_file(str(full))
            if why is None and not ext:
                continue  # a regular file without extension: not an image by name
            files.append((full, why, e_real))
        yield from files
        stack.extend(reversed(folders))


def iter_files(top: str | os.PathLike) -> Iterator[tuple[str, str]]:
    """``(folder, name)`` of every entry under ``top`` that is not a folder (files, links to
    files, dangling links ...), at any depth, in no particular order; symbolic links to folders
    are not followed and folders that cannot be listed are passed over. Iterative (unlike
    :func:`os.walk` in Python 3.11, which recurses once per level)."""
    stack = [os.fspath(top)]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError:
            continue
        for e in entries:
            try:
                is_dir = e.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if is_dir:
                stack.append(e.path)
            else:
                yield folder, e.name


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
                   missing_ok: bool = False, videos: bool = False,
                   reserved: Callable[[str], bool] | None = None) -> list[InputItem]:
    """Expand command-line inputs into the run's images, in order, with unique output keys.

    Args:
        args: file paths, folder paths, and ``"-"`` (read a path list from ``stdin``).
        include, exclude: fnmatch patterns (see the module docstring).
        stdin: text stream for ``"-"`` (default ``sys.stdin``).
        skip_dirs: folders never walked into (the output folder).
        missing_ok: keep non-existent paths from the stdin list as items (their reading fails
            later and is recorded per image) instead of raising. Missing command-line
            arguments always raise.
        videos: folders also yield the files with one of
            :data:`facealign_cli.io.video.VIDEO_EXTENSIONS` (the commands that take videos).
        reserved: the names no output key may start with (:func:`assign_keys`).

    Returns:
        The :class:`InputItem` list.

    Raises:
        InputError: a command-line argument does not exist, or ``-`` is given twice.
    """
    import sys

    skip = {os.path.realpath(d) for d in skip_dirs}
    exts = IMAGE_EXTENSIONS
    if videos:
        from facealign_cli.io.video import VIDEO_EXTENSIONS

        exts = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS
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

    # (display path, rel, skip reason, real path)
    found: list[tuple[str, str, str | None, str]] = []
    for a, from_stdin in entries:
        p = Path(a)
        if p.is_dir():
            for f, why, real in _walk(p, skip, exts):
                rel = f.relative_to(p).as_posix() if f != p else p.name
                shown = a if f == p else os.path.join(a, *rel.split("/"))
                found.append((shown, rel, why, real))
        elif p.exists() or (from_stdin and missing_ok):
            found.append((a, p.name, None, os.path.realpath(a)))
        else:
            raise InputError(f"no such file or folder: {a}")

    seen: set[str] = set()
    kept: list[tuple[str, str, str | None]] = []
    for path, rel, why, ident in found:
        if why is None or not _is_folder_entry_reason(why):
            if include and not _matches(include, rel):
                continue
        if exclude and (_matches(exclude, rel)
                        or (why is not None and _matches(exclude, rel + "/"))):
            continue
        if ident in seen:
            continue
        seen.add(ident)
        kept.append((path, rel, why))

    keys, short, renamed = _keys_and_changes([rel for _, rel, why in kept if why is None],
                                             reserved)
    it = iter(zip(keys, short))
    items = []
    for i, (path, rel, why) in enumerate(kept):
        key, shortened = next(it) if why is None else ("", False)
        items.append(InputItem(i, path, rel, key, why, _key_note(key, shortened, renamed)))
    return items


def _key_note(key: str, shortened: bool, renamed: set[str]) -> str | None:
    """What the manifest says of a key that is not the input's path: shortened names, folders
    renamed (:mod:`facealign_cli.io.key_names`); None otherwise."""
    from facealign_cli.io.key_names import MAX_COMPONENT_BYTES

    notes = []
    if shortened:
        notes.append(f"output names shortened (a name in the input's path is over "
                     f"{MAX_COMPONENT_BYTES} bytes): {key}")
    parts = key.split("/") if key and renamed else []
    moved = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)
             if fold_key("/".join(parts[:i])) in renamed]
    if moved:
        notes.append(f"output folder renamed to {moved[-1]}/ (its name is that of another "
                     "input's output file)")
    return "; ".join(notes) or None


def _is_folder_entry_reason(why: str) -> bool:
    """The skip reason is about a folder (an include pattern for files does not hide it)."""
    return why.startswith(("cannot read folder", "symbolic link to a folder",
                           RUN_FOLDER_REASON))


def fold_key(key: str) -> str:
    """A key as a case-insensitive, normalising file system compares it (NFC, case-folded)."""
    return unicodedata.normalize("NFC", key).casefold()


#: Path components that would leave the output folder or name no file (a key made of them gets
#: ``_`` appended to each: :func:`safe_key`).
UNSAFE_COMPONENTS = ("", ".", "..")


def is_safe_rel(rel: str) -> bool:
    """Whether ``rel`` (``/``-separated) names a path inside the folder it is relative to: not
    absolute, no empty, ``.`` or ``..`` component."""
    return not any(c in UNSAFE_COMPONENTS for c in rel.split("/"))


def safe_key(key: str, reserved: Callable[[str], bool] | None = None) -> str:
    """``key`` with ``_`` appended to every component that is empty, ``.`` or ``..`` (so
    ``...mp4``'s stem ``..`` becomes ``.._``, and an absolute ``/x`` ``_/x``), and to its first
    component as long as ``reserved`` (called with the component :func:`fold_key` ed) says
    the name is the tool's own (``manifest`` -> ``manifest_``). The result satisfies
    :func:`is_safe_rel`."""
    parts = [c + "_" if c in UNSAFE_COMPONENTS else c for c in key.split("/")]
    while reserved is not None and reserved(fold_key(parts[0])):
        parts[0] += "_"
    return "/".join(parts)


def assign_keys(rels: Sequence[str],
                reserved: Callable[[str], bool] | None = None) -> list[str]:
    """Unique output keys for relative paths (the rule is in the module docstring): unique
    also after :func:`fold_key`, safe (:func:`safe_key` with ``reserved``), every component at
    most :data:`facealign_cli.io.key_names.MAX_COMPONENT_BYTES` bytes, no folder of the run
    where a file named after another key goes (:mod:`facealign_cli.io.key_names`), and a
    function of the whole list only.

    >>> assign_keys(["a.jpg", "a.png", "b/c.jpg"])
    ['a.jpg', 'a.png', 'b/c']
    >>> assign_keys(["x.jpg", "x.jpg", "x.jpg~2.jpg"])
    ['x.jpg', 'x.jpg~3', 'x.jpg~2']
    >>> assign_keys(["...mp4", "manifest.mp4"], reserved=lambda name: name == "manifest")
    ['.._', 'manifest_']
    >>> assign_keys(["a.jpg", "a.json/b.jpg"])
    ['a', 'a.json_/b']
    """
    return _keys_and_changes(rels, reserved)[0]


def _keys_and_changes(rels: Sequence[str], reserved: Callable[[str], bool] | None
                      ) -> tuple[list[str], list[bool], set[str]]:
    """:func:`assign_keys`, whether each key has a shortened component, and the folded
    folders (as renamed) that were renamed."""
    from facealign_cli.io.key_names import clashing_folders
    from facealign_cli.io.video import is_video_path

    videos = [is_video_path(r) for r in rels]
    renamed: set[str] = set()  # folded folders that take "_"
    while True:
        keys, short = _unique_keys(rels, reserved, renamed)
        clash = clashing_folders(keys, videos, fold_key) - renamed
        if not clash:
            return keys, short, {f + "_" for f in renamed}
        renamed |= clash  # each round appends "_" to new folders only: it ends


def _rename_folders(key: str, renamed: set[str]) -> str:
    """``key`` with ``_`` appended to each of its folders (and the key itself, a video's
    folder) whose folded path, as renamed so far, is in ``renamed``."""
    if not renamed:
        return key
    parts = key.split("/")
    for i in range(len(parts)):
        if fold_key("/".join(parts[:i + 1])) in renamed:
            parts[i] += "_"
    return "/".join(parts)


def _unique_keys(rels: Sequence[str], reserved: Callable[[str], bool] | None,
                 renamed: set[str]) -> tuple[list[str], list[bool]]:
    """:func:`assign_keys` for a given set of folders to rename, and whether each key has a
    shortened component."""
    from facealign_cli.io.key_names import shorten_key

    shortened: set[str] = set()

    def claim(key: str) -> str:
        safe = safe_key(key, reserved)
        short = shorten_key(safe)
        if short != safe:
            shortened.add(key)
        return _rename_folders(short, renamed)

    def stem_key(rel: str) -> str:
        pp = PurePosixPath(rel)
        return claim(str(pp.with_suffix("")) if pp.suffix else rel)

    stems = [stem_key(r) for r in rels]
    counts: dict[str, int] = {}
    for k in stems:
        counts[fold_key(k)] = counts.get(fold_key(k), 0) + 1
    claimed = [claim(rel) if counts[fold_key(k)] > 1 else k for k, rel in zip(stems, rels)]
    claimed_folded = {fold_key(k) for k in claimed}
    taken: set[str] = set()
    next_n: dict[str, int] = {}  # claimed key (folded) -> next suffix number to try
    out = []
    for k in claimed:
        f = fold_key(k)
        if f not in taken:
            taken.add(f)
            out.append(k)
            continue
        n = next_n.get(f, 2)
        while fold_key(f"{k}~{n}") in taken or fold_key(f"{k}~{n}") in claimed_folded:
            n += 1
        next_n[f] = n + 1
        taken.add(fold_key(f"{k}~{n}"))
        out.append(f"{k}~{n}")
    return out, [(str(PurePosixPath(r).with_suffix("")) if k == s else r) in shortened
                 for r, k, s in zip(rels, claimed, stems)]
