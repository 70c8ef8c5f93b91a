"""The image commands, one object each: what a command runs on an image and how it encodes
the result into output files, ``pose.csv`` rows and NDJSON records.

Every coordinate is in the full-resolution, upright image's pixels (frame of
:mod:`facealign_cli.core.face`); ``<key>`` is the image's output key
(:mod:`facealign_cli.io.inputs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from facealign_cli.batch.options import POSE_CSV_NAME, RunOptions
from facealign_cli.io import records

POSE_COLUMNS = ("path", "face", "yaw", "pitch", "roll", "x1", "y1", "x2", "y2", "score")


@dataclass(frozen=True)
class Encoded:
    """What one image produces: files to write (``(relative path, bytes)``), the output list
    of its manifest line, ``pose.csv`` rows, and the NDJSON record (streaming)."""

    files: tuple[tuple[str, bytes], ...] = ()
    outputs: tuple[str, ...] = ()
    rows: tuple[tuple[Any, ...], ...] | None = None
    record: dict[str, Any] | None = None


def _num(v, nd: int = 2):
    return round(float(v), nd)


def pose_rows(path: str, faces) -> list[list[Any]]:
    """Rows of ``pose.csv`` (:data:`POSE_COLUMNS`) for one image's faces (``pose`` filled)."""
    rows = []
    for k, f in enumerate(faces):
        yaw, pitch, roll = (_num(v) for v in f.pose)
        x1, y1, x2, y2 = (_num(v) for v in f.box[:4])
        rows.append([path, k, yaw, pitch, roll, x1, y1, x2, y2, _num(f.score, 4)])
    return rows


def json_file_bytes(doc: Any) -> bytes:
    """The bytes of a one-line JSON output file (UTF-8, trailing newline)."""
    return (records.dumps(doc) + "\n").encode(records.ENCODING, records.ERRORS)


class Command:
    """One image command. Subclasses set the class attributes and :meth:`encode`.

    Attributes:
        name: the command's name on the command line.
        streamable: can write NDJSON to stdout (``--out -``).
        uses_regressor: needs the regressor (``detect`` never loads weights or torch).
        dense: runs the dense (mesh) reconstruction.
        table: its rows go to the run's ``pose.csv``.
    """

    name: ClassVar[str]
    streamable: ClassVar[bool] = True
    uses_regressor: ClassVar[bool] = True
    dense: ClassVar[bool] = False
    table: ClassVar[bool] = False

    def fingerprint(self, opts: RunOptions) -> dict[str, Any]:
        """Settings an earlier run must have used for its outputs to be reused."""
        fp: dict[str, Any] = {"command": self.name, "max_faces": opts.max_faces}
        if self.uses_regressor:
            fp["weights"] = str(opts.weights or "default")
            if not opts.flip:  # (key absent = flip averaging on, the default)
                fp["flip"] = False
        return fp

    def infer(self, aligner, img) -> tuple[list, Any]:
        """The faces of ``img`` and any per-face data taken from the decoded image."""
        return aligner(img, dense=self.dense), None

    def encode(self, path: str, key: str, width: int, height: int, faces, extra, aligner,
               opts: RunOptions) -> Encoded:
        raise NotImplementedError

    def outputs_present(self, out, outputs) -> bool:
        """Whether an earlier run's outputs are all still there (resume)."""
        return all(out.joinpath(*o.split("/")).is_file() for o in outputs)


class _JsonCommand(Command):
    def faces_json(self, faces) -> list[dict[str, Any]]:
        return [f.to_dict() for f in faces]

    def encode(self, path, key, width, height, faces, extra, aligner, opts):
        doc = {"path": path, "width": width, "height": height, "faces": self.faces_json(faces)}
        if opts.streaming:
            return Encoded(record=doc)
        rel = key + ".json"
        return Encoded(files=((rel, json_file_bytes(doc)),), outputs=(rel,))


class Detect(_JsonCommand):
    """``<out>/<key>.json`` = ``{path, width, height, faces: [{box, score, keypoints}]}``."""

    name = "detect"
    uses_regressor = False

    def infer(self, aligner, img):
        return aligner.detect(img), None

    def faces_json(self, faces):
        return [{k: v for k, v in f.to_dict(with_landmarks=False).items()
                 if k in ("box", "score", "keypoints")} for f in faces]


class Landmarks(_JsonCommand):
    """``<out>/<key>.json`` = ``{path, width, height, faces: [Face.to_dict()]}`` (box, score,
    keypoints, roi_box, landmarks_2d (68x2), landmarks_3d (68x3), pose)."""

    name = "landmarks"


class Pose(Command):
    """Rows of the run's single table ``<out>/pose.csv`` (:data:`POSE_COLUMNS`, angles in
    degrees, box in pixels), one row per face, faces by descending score."""

    name = "pose"
    table = True

    def encode(self, path, key, width, height, faces, extra, aligner, opts):
        rows = tuple(tuple(r) for r in pose_rows(path, faces))
        if opts.streaming:
            rec = {"path": path, "width": width, "height": height,
                   "faces": [dict(zip(POSE_COLUMNS[1:], r[1:])) for r in rows]}
            return Encoded(rows=rows, record=rec)
        return Encoded(rows=rows, outputs=(POSE_CSV_NAME,) if rows else ())

    def outputs_present(self, out, outputs) -> bool:
        return True  # the rows live in the done record; pose.csv is rebuilt from them


class Mesh(Command):
    """``<out>/<key>_face<k>.<obj|ply>`` per face ``k`` (0 = highest score): the dense
    face-region vertices (pixels, z away from the camera), the topology's triangles and
    per-vertex RGB colours sampled from the photo."""

    name = "mesh"
    streamable = False
    dense = True

    def fingerprint(self, opts):
        return {**super().fingerprint(opts), "format": opts.mesh_format}

    def infer(self, aligner, img):
        from facealign_cli.io.meshes import sample_vertex_colors

        faces = aligner(img, dense=True)
        return faces, [sample_vertex_colors(img, f.vertices) for f in faces]

    def encode(self, path, key, width, height, faces, extra, aligner, opts):
        from facealign_cli.io.meshes import mesh_bytes

        tris = aligner.topology.triangles
        files = tuple((f"{key}_face{k}.{opts.mesh_format}",
                       mesh_bytes(f.vertices, tris, col, opts.mesh_format))
                      for k, (f, col) in enumerate(zip(faces, extra)))
        return Encoded(files=files, outputs=tuple(rel for rel, _ in files))


_ALL: dict[str, Command] = {c.name: c() for c in (Detect, Landmarks, Pose, Mesh)}
COMMANDS = tuple(_ALL)
STREAMABLE = tuple(n for n, c in _ALL.items() if c.streamable)


def get_command(name: str) -> Command:
    """The command object for ``name``.

    Raises:
        ValueError: unknown command.
    """
    try:
        return _ALL[name]
    except KeyError:
        raise ValueError(f"unknown command {name!r}") from None
