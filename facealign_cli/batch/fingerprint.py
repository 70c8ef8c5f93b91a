"""What an item's outputs were made with, as one digest stored in the run state
(:mod:`facealign_cli.batch.run_db`): the command's settings that change an output
(:meth:`Command.fingerprint <facealign_cli.batch.commands.base.Command.fingerprint>`, a
video's :meth:`~facealign_cli.batch.commands.base.Command.video_fingerprint`), the sha256 of
the model files actually run and the output schema version (:data:`OUTPUT_SCHEMA`).

The model files: the detector's ONNX models (every command), and for the commands that regress
the regressor's checkpoint and its ONNX export beside it when there is one
(:func:`facealign_cli.models.regressor_onnx.onnx_path_for`: what ``--runtime auto`` runs).
Hashes are by content, never by path or name: replacing the file at a ``--weights`` path, or an
upgrade that ships other weights, changes the digest and redoes every item. A file's hash is
cached in the state by its path, size and modification time (hashing the shipped weights
costs about 0.1 s, once).

The digest is the first 32 hex digits of the sha256 of the fingerprint document's canonical
JSON (sorted keys); the document itself is kept in the state's ``fingerprints`` table.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

#: Version of what the commands write (file formats, manifest fields): raise it when an output
#: changes for the same settings and weights, so that every item is redone.
OUTPUT_SCHEMA = 1


def _missing_ok():
    """Ignore a missing or unreadable file."""
    return contextlib.suppress(OSError, KeyError, ValueError)


def digest_of(doc: dict[str, Any]) -> str:
    """32 hex digits: the sha256 of ``doc``'s canonical JSON (sorted keys, compact)."""
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:32]


def file_sha256(path: str | Path, db=None) -> str:
    """The sha256 (hex) of the file ``path``, from ``db``'s cache
    (:meth:`~facealign_cli.batch.run_db.RunDB.cached_hash`) when its size and mtime are those
    recorded, else read (1 MiB at a time) and cached.

    Raises:
        OSError: the file cannot be read.
    """
    from facealign_cli.models.weights import sha256_of

    path = os.path.abspath(path)
    st = os.stat(path)
    if db is not None:
        cached = db.cached_hash(path, st.st_size, st.st_mtime_ns)
        if cached is not None:
            return cached
    sha = sha256_of(path)
    if db is not None:
        db.cache_hash(path, st.st_size, st.st_mtime_ns, sha)
    return sha


def model_files(opts, regresses: bool) -> dict[str, Path]:
    """The model files whose content the outputs of a run with ``opts`` depend on, by role:
    ``detector:<name>`` for each of the detector's ONNX models, and with ``regresses``
    ``checkpoint`` (the weights ``opts.aligner.weights`` names:
    :func:`facealign_cli.models.weights.resolve_weights`) and ``onnx`` (its export, where there
    is one). A weights file that cannot be found is left out (the run fails on it before any
    item)."""
    from facealign_cli.models.blazeface import MODEL_SPECS, model_file

    files: dict[str, Path] = {}
    for name in sorted(MODEL_SPECS):
        with _missing_ok():
            p = model_file(name)
            if p.is_file():
                files[f"detector:{name}"] = p
    if regresses:
        from facealign_cli.models.regressor_onnx import onnx_path_for
        from facealign_cli.models.weights import resolve_weights

        with _missing_ok():
            w = resolve_weights(opts.aligner.weights)
            files["checkpoint"] = w
            export = onnx_path_for(w)
            if export != w and export.is_file():
                files["onnx"] = export
    return files


def weights_digests(opts, regresses: bool, db=None) -> dict[str, str]:
    """``{role: sha256}`` of :func:`model_files` (hashes cached in ``db``)."""
    out = {}
    for role, path in model_files(opts, regresses).items():
        with _missing_ok():
            out[role] = file_sha256(path, db)
    return out


def fingerprint_doc(cmd, opts, *, video: bool, weights: dict[str, str]) -> dict[str, Any]:
    """The fingerprint document of an item: the command's settings (``video``: those of a
    video), ``weights`` in place of the weights' name, and ``schema``."""
    settings = dict(cmd.video_fingerprint(opts) if video else cmd.fingerprint(opts))
    settings.pop("weights", None)
    return {"schema": OUTPUT_SCHEMA, "settings": settings, "models": dict(weights)}


def legacy_digest(fingerprint: Any) -> str:
    """The digest given to an imported done record whose settings are not this run's
    (``legacy:`` + :func:`digest_of`): it never equals a current digest, so such an item is
    redone when asked for."""
    return "legacy:" + digest_of({"legacy": fingerprint})
