"""Output keys that every file system takes, and that never make a file and a folder of one
run share a path (used by :func:`facealign_cli.io.inputs.assign_keys`).

* **Long names** (:func:`shorten_component`): a key component over
  :data:`MAX_COMPONENT_BYTES` bytes (UTF-8; an input name near the 255-byte limit of common
  file systems, which the suffixes the commands add would push over it) becomes a readable
  prefix, ``~`` and 12 hexadecimal digits of the SHA-256 of the whole component: the same
  input gets the same name on every run, and two long names sharing a prefix stay apart.
* **File/folder clashes** (:func:`clashing_folders`): the outputs and done records of a key
  ``K`` are files named ``K`` plus one of :data:`FILE_SUFFIXES` (``K.json``, ``K.jsonl``,
  ``K.jpg``, ``K.mp4``, ``.facealign/done/<command>/K.json``) or ``K_face<k>.<ext>``
  (``<ext>`` in :data:`MESH_EXTENSIONS`); the folders of a run are the folders of its keys
  (``sub`` for ``sub/img``) and, for a video, the key itself (``mesh`` writes a video's
  meshes into ``K/``). A folder that one of those file names of another key would take (a
  folder ``a.json/`` beside ``a.jpg``: ``a.json/b`` beside ``a``) is a clash; the caller
  renames the folder (``a.json_/b``).

Names are compared folded (:func:`facealign_cli.io.inputs.fold_key`), as a case-insensitive
file system compares them. Only the standard library is imported.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence

#: Longest key component, in bytes (UTF-8), kept as it is: with the longest suffix a command
#: adds (``_face<k>.mtl``, 11 bytes up to 99 faces, 14 up to 99,999) a name stays within the
#: 255 bytes of common file systems (temporary files shorten their own names:
#: :func:`facealign_cli.io.records.atomic_open`).
MAX_COMPONENT_BYTES = 240
#: Hexadecimal digits of the hash that ends a shortened component.
_HASH_DIGITS = 12
#: Suffixes of the files named after a key (outputs, thumbnails, done records).
FILE_SUFFIXES = (".json", ".jsonl", ".jpg", ".mp4")
#: Extensions of ``mesh``'s per-face files ``K_face<k>.<ext>`` (mesh formats and texture).
MESH_EXTENSIONS = ("obj", "ply", "glb", "mtl", "png")
_FACE_FILE = re.compile(r"^(.*)_face[0-9]+\.(?:" + "|".join(MESH_EXTENSIONS) + r")$", re.DOTALL)


def _utf8(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


def shorten_component(name: str) -> str:
    """``name`` if it has at most :data:`MAX_COMPONENT_BYTES` bytes, else its longest prefix
    (whole characters) that leaves room for ``~`` and :data:`_HASH_DIGITS` hexadecimal digits
    of the SHA-256 of ``name`` (``<prefix>~<hash>``, at most ``MAX_COMPONENT_BYTES`` bytes)."""
    raw = _utf8(name)
    if len(raw) <= MAX_COMPONENT_BYTES:
        return name
    room = MAX_COMPONENT_BYTES - 1 - _HASH_DIGITS
    prefix = name[:room]
    while len(_utf8(prefix)) > room:
        prefix = prefix[:-1]
    return f"{prefix}~{hashlib.sha256(raw).hexdigest()[:_HASH_DIGITS]}"


def shorten_key(key: str) -> str:
    """Every ``/``-separated component of ``key`` through :func:`shorten_component`."""
    return "/".join(shorten_component(c) for c in key.split("/"))


def _file_owner(folder: str, keys: set[str]) -> str | None:
    """The key (folded, in ``keys``) one of whose file names is ``folder`` (folded), or None."""
    for suffix in FILE_SUFFIXES:
        if folder.endswith(suffix) and folder[:-len(suffix)] in keys:
            return folder[:-len(suffix)]
    m = _FACE_FILE.match(folder)
    if m and m.group(1) in keys:
        return m.group(1)
    return None


def clashing_folders(keys: Sequence[str], is_video: Sequence[bool],
                     fold: Callable[[str], str]) -> set[str]:
    """The folders of a run (folded, ``/``-separated) that a file named after another key
    would take (see the module docstring).

    Args:
        keys: the run's keys, unique after ``fold``.
        is_video: per key, whether its input is a video (its key is a folder too).
        fold: the comparison form of a name (:func:`facealign_cli.io.inputs.fold_key`).
    """
    folded = [fold(k) for k in keys]
    key_set = set(folded)
    folders: set[str] = set()
    for f, video in zip(folded, is_video):
        parts = f.split("/")
        folders.update("/".join(parts[:i]) for i in range(1, len(parts)))
        if video:
            folders.add(f)
    return {d for d in folders if _file_owner(d, key_set) is not None}
