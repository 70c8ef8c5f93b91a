"""The typed records a run writes and reads back, each with one way out (``to_json``) and
one validator on the way in (``from_json``): an item's done record (:class:`DoneRecord`), a
video's frame counts (:class:`FrameCounts`) and a ``pose.csv`` row (:class:`PoseRow`).

Records read back (the run state's rows, the done records of earlier versions, hand-edited
or damaged ones) are checked here and nowhere else: what does not validate raises
``ValueError`` and its item is redone.
Records written by earlier versions (rows without the video or quality columns, a video
record without ``frames_lost`` or ``codec``) are read with the missing values empty.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, NamedTuple


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check(ok: bool, what: str, value: Any) -> None:
    if not ok:
        raise ValueError(f"{what}: unexpected value {value!r:.80}")


class PoseRow(NamedTuple):
    """One face's row of ``pose.csv`` (its fields are the columns, in order:
    :data:`facealign_cli.batch.commands.POSE_COLUMNS`).

    Attributes:
        path: the input path.
        face: the face's rank in its image or frame (0 = highest score).
        yaw, pitch, roll: head pose, degrees (:attr:`facealign_cli.core.face.Face.pose`).
        x1, y1, x2, y2: the face box, full-resolution image pixels (x right, y down).
        score: detector score.
        qw, qx, qy, qz: the head rotation as a unit quaternion (``qw >= 0``).
        frame, time, track: a video's frame index, time (seconds) and face track id; None
            for a photo.
        quality: the estimated probability that the face is real
            (:func:`facealign_cli.core.quality.face_quality`), or None.
        pose_convention: the convention of the angles
            (:data:`facealign_cli.defaults.POSE_CONVENTIONS`); None in rows recorded before
            the column existed (:meth:`with_convention` fills it).
    """

    path: str
    face: int
    yaw: float
    pitch: float
    roll: float
    x1: float
    y1: float
    x2: float
    y2: float
    score: float
    qw: float
    qx: float
    qy: float
    qz: float
    frame: int | None = None
    time: float | None = None
    track: int | None = None
    quality: float | None = None
    pose_convention: str | None = None

    #: Values of the oldest rows still read: up to ``qz`` (before the video columns).
    MIN_VALUES = 14

    @classmethod
    def from_json(cls, values: Any) -> PoseRow:
        """A row as a done record stores it (a JSON list of the column values, in order);
        rows written before the video columns or ``quality`` existed get them empty.

        Raises:
            ValueError: not a list of 14 to 19 values, a path that is not a string, or a
                value that is neither a number nor empty (the convention: a name or empty).
        """
        _check(isinstance(values, (list, tuple))
               and cls.MIN_VALUES <= len(values) <= len(cls._fields), "pose row", values)
        _check(isinstance(values[0], str), "pose row path", values[0])
        last = len(cls._fields) - 1  # pose_convention: a name
        for k, v in enumerate(values[1:], start=1):
            _check(v is None or (isinstance(v, str) if k == last else _is_number(v)),
                   "pose row value", v)
        return cls(*values)

    def with_convention(self, pose_convention: str) -> PoseRow:
        """The row with ``pose_convention`` filled where it was recorded without one (a record
        from before the column, reused only by a run of the same convention: see
        :meth:`facealign_cli.core.settings.AlignerSettings.fingerprint`)."""
        return self if self.pose_convention else self._replace(pose_convention=pose_convention)

    def to_json(self) -> list[Any]:
        """The row as a done record stores it (the values in column order; a row without
        a convention, read from an older record, is written back as it was read)."""
        values = list(self)
        return values if self.pose_convention is not None else values[:-1]

    def columns(self) -> dict[str, Any]:
        """``{column: value}`` without ``path`` (a face of an NDJSON record)."""
        d = self._asdict()
        d.pop("path")
        return d


@dataclass(frozen=True)
class FrameCounts:
    """What became of a video's frames (its manifest line's and done record's ``video``).

    Attributes:
        frames: frames processed (delivered by the reader after ``--frame-step`` /
            ``--max-fps``).
        frames_failed: processed frames whose processing raised (recorded as failed).
        frames_decoded: frames the decoder returned.
        frames_declared: the frame count the container declares.
        frames_lost: declared frames that could not be decoded or were missing from the
            stream (:class:`~facealign_cli.io.video.VideoReader`); None for a video that
            failed before its end (not written).
        complete: the stream was read to its declared end.
        fps: the container's frame rate, rounded to 3 places; None for a video that failed
            before its end.
        width, height: the frames' size (pixels); None as ``fps``.
        codec: ``render``: the codec of the annotated video written (``"h264"``, ``"mp4v"``);
            None for the other commands.

    Fields that are None are left out of the JSON object.
    """

    frames: int = 0
    frames_failed: int = 0
    frames_decoded: int = 0
    frames_declared: int = 0
    frames_lost: int | None = None
    complete: bool = False
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    codec: str | None = None

    @classmethod
    def of_reader(cls, status, *, failed: int = 0, info=None, width: int | None = None,
                  height: int | None = None) -> FrameCounts:
        """The counts of a :class:`~facealign_cli.io.video.VideoReader`'s ``status`` (None:
        the video could not be opened: all 0) and ``failed`` frames: with the reader's
        ``info``, those of a video read to its end (``complete`` as the reader says,
        ``frames_lost``, ``fps``, the frame size ``width`` x ``height``); without, those of a
        video that failed before (not complete)."""
        if status is None:
            return cls()
        counts = cls(status.frames_delivered, failed, status.frames_decoded,
                     status.frames_declared)
        if info is None:
            return counts
        return replace(counts, frames_lost=status.frames_lost, complete=bool(status.complete),
                       fps=round(info.fps, 3), width=width, height=height)

    @classmethod
    def from_json(cls, doc: Any) -> FrameCounts:
        """The counts as written by :meth:`to_json` (keys it does not know are ignored).

        Raises:
            ValueError: not an object, or a value of the wrong type.
        """
        _check(isinstance(doc, dict), "video", doc)
        kw = {}
        for f in fields(cls):
            if f.name not in doc:
                continue
            v = doc[f.name]
            if f.name == "complete":
                _check(isinstance(v, bool), f.name, v)
            elif f.name == "codec":
                _check(v is None or isinstance(v, str), f.name, v)
            elif f.name == "fps":
                _check(v is None or _is_number(v), f.name, v)
            else:
                _check((v is None and f.default is None) or _is_int(v), f.name, v)
            kw[f.name] = v
        return cls(**kw)

    def to_json(self) -> dict[str, Any]:
        """The counts as a JSON object (keys in field order; the None ones left out)."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) is not None}


@dataclass(frozen=True)
class DoneRecord:
    """The resume record of an item done: what its row in the run state holds
    (:class:`facealign_cli.batch.run_db.ItemRow`, recorded by
    :meth:`facealign_cli.batch.resume.RunState.record` after its outputs are in place) and
    what earlier versions wrote to ``<out>/.facealign/done/<command>/<key>.json`` (this
    layout, :meth:`to_json`; imported once by
    :func:`facealign_cli.batch.resume.import_done_records`). Read back, either way, with
    :meth:`from_json`.

    Attributes:
        fingerprint: the settings the outputs depend on
            (:meth:`~facealign_cli.batch.commands.Command.fingerprint`, a video's
            :meth:`~facealign_cli.batch.commands.Command.video_fingerprint`).
        path: the input path.
        n_faces: faces found (a video: distinct face tracks).
        outputs: output paths relative to ``out`` (``/``-separated).
        width, height: the full-resolution size (a video: its frames').
        video: a video's frame counts, None for a photo.
        rows: the ``pose.csv`` rows (``pose``; ``pose.csv`` is rebuilt from them).
        faces: ``render``: what the contact sheet shows of each face (a video: its first
            frame's), :func:`facealign_cli.batch.commands.face_summary`.
    """

    fingerprint: dict[str, Any]
    path: str
    n_faces: int | None
    outputs: tuple[str, ...]
    width: int | None
    height: int | None
    video: FrameCounts | None = None
    rows: tuple[PoseRow, ...] | None = None
    faces: list[dict[str, Any]] | None = None

    @classmethod
    def from_json(cls, doc: Any) -> DoneRecord:
        """The record as :meth:`to_json` writes it, checked: ``fingerprint`` an object,
        ``outputs`` a list of strings (both required), the other keys, where present, of their
        type (``rows``: :meth:`PoseRow.from_json`; ``video``: :meth:`FrameCounts.from_json`).

        Raises:
            ValueError: anything else (the item is then redone).
        """
        _check(isinstance(doc, dict), "done record", doc)
        fp, outputs = doc.get("fingerprint"), doc.get("outputs")
        _check(isinstance(fp, dict), "fingerprint", fp)
        _check(isinstance(outputs, list) and all(isinstance(o, str) for o in outputs),
               "outputs", outputs)
        path = doc.get("path", "")
        _check(isinstance(path, str), "path", path)
        for name in ("n_faces", "width", "height"):
            _check(doc.get(name) is None or _is_int(doc[name]), name, doc.get(name))
        video, rows, faces = doc.get("video"), doc.get("rows"), doc.get("faces")
        _check(rows is None or isinstance(rows, list), "rows", rows)
        _check(faces is None or (isinstance(faces, list)
                                 and all(isinstance(f, dict) for f in faces)), "faces", faces)
        return cls(fp, path, doc.get("n_faces"), tuple(outputs), doc.get("width"),
                   doc.get("height"), None if video is None else FrameCounts.from_json(video),
                   None if rows is None else tuple(PoseRow.from_json(r) for r in rows), faces)

    def to_json(self) -> dict[str, Any]:
        """The record as written (keys in this order; the optional ones only when set)."""
        doc: dict[str, Any] = {"fingerprint": self.fingerprint, "path": self.path,
                               "n_faces": self.n_faces, "outputs": list(self.outputs),
                               "width": self.width, "height": self.height}
        if self.video is not None:
            doc["video"] = self.video.to_json()
        if self.rows is not None:
            doc["rows"] = [r.to_json() for r in self.rows]
        if self.faces is not None:
            doc["faces"] = self.faces
        return doc


__all__ = ["DoneRecord", "FrameCounts", "PoseRow"]
