"""What every image command shares: the :class:`Command` plug-in point, the per-item
:class:`ItemWriter`, :class:`Encoded` and the helpers of the output formats.

Every coordinate is in the full-resolution, upright image's pixels (frame of
:mod:`facealign_cli.core.face`); ``<key>`` is the item's output key
(:mod:`facealign_cli.io.inputs`). An item is a photo (one frame) or a video (many frames,
:mod:`facealign_cli.batch.sources`); :func:`facealign_cli.batch.items.process_item` runs both
through the same steps: the command opens a writer for the item (:meth:`Command.open_writer`),
each frame's faces are added to it, and closing it gives the item's :class:`Encoded` outputs.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from facealign_cli.batch.errors import OptionError
from facealign_cli.batch.record_types import PoseRow
from facealign_cli.io import records

if TYPE_CHECKING:  # the commands are below the options: a type only, never imported
    from facealign_cli.batch.options import RunOptions

#: Columns of ``pose.csv`` (the fields of :class:`~facealign_cli.batch.record_types.PoseRow`).
#: ``frame`` (source frame index), ``time`` (seconds) and ``track`` (face track id) are filled
#: for the rows of a video and empty for photos; the header is the same for every run.
#: ``quality``: :func:`facealign_cli.core.quality.face_quality`. ``pose_convention``: the
#: convention of ``yaw``, ``pitch``, ``roll`` (:data:`facealign_cli.defaults.POSE_CONVENTIONS`,
#: ``--pose-convention``), the same in every row of a table (a column, not a comment line, so
#: that every CSV reader takes the file).
POSE_COLUMNS = PoseRow._fields
#: The video columns of :data:`POSE_COLUMNS` (empty for a photo).
POSE_VIDEO_COLUMNS = ("frame", "time", "track")


@dataclass(frozen=True)
class Encoded:
    """What one item produces: files to write (``(relative path, bytes or SpoolFile)``), the
    output list of its manifest line, ``pose.csv`` rows, the NDJSON record (streaming), the
    faces its done record keeps for the contact sheet (``faces``, ``render``:
    :func:`face_summary`), a message that replaces the item's own (``message``: a video
    with no frame to render) and the codec of a video written (``codec``, ``render``: its
    :attr:`~facealign_cli.batch.record_types.FrameCounts.codec`)."""

    files: tuple[tuple[str, Any], ...] = ()
    outputs: tuple[str, ...] = ()
    rows: tuple[PoseRow, ...] | None = None
    record: dict[str, Any] | None = None
    faces: list[dict[str, Any]] | None = None
    message: str | None = None
    codec: str | None = None


def _num(v, nd: int = 2):
    return round(float(v), nd)


def quaternion(R) -> list[float]:
    """``[qw, qx, qy, qz]`` of a rotation matrix (scipy's ``Rotation``), ``qw >= 0``."""
    from scipy.spatial.transform import Rotation

    q = Rotation.from_matrix(R).as_quat(scalar_first=True)
    if q[0] < 0:
        q = -q
    return [round(float(v), 6) for v in q]


def pose_rows(path: str, faces, pose_convention: str) -> list[PoseRow]:
    """Rows of ``pose.csv`` for one image's faces (angles to 2 places, in ``pose_convention``,
    the faces' own; box to 2, score and quality to 4, the quaternion to 6; the video columns
    empty)."""
    from facealign_cli.core.face import face_rotation

    rows = []
    for k, f in enumerate(faces):
        yaw, pitch, roll = (_num(v) for v in f.pose)
        x1, y1, x2, y2 = (_num(v) for v in f.box[:4])
        q = None if f.quality is None else _num(f.quality, 4)
        qw, qx, qy, qz = quaternion(face_rotation(f))
        rows.append(PoseRow(path, k, yaw, pitch, roll, x1, y1, x2, y2, _num(f.score, 4),
                            qw, qx, qy, qz, quality=q, pose_convention=pose_convention))
    return rows


def quality_filter_on(opts: RunOptions) -> bool:
    """Whether ``--min-quality`` drops faces: ``opts.min_quality > 0`` and flip averaging on.
    The quality's evidence is the disagreement of the regressor on the crop and its mirror
    image (:mod:`facealign_cli.core.quality`); with ``--no-flip`` there is no mirrored pass, the
    quality written is the detector score's estimate alone, and the filter is off (said by
    :func:`quality_filter_warning` and the settings file's ``quality_filter``;
    :meth:`facealign_cli.core.settings.AlignerSettings.quality_filter_on`)."""
    return opts.aligner.quality_filter_on


def quality_filter_warning(cmd, opts: RunOptions) -> str | None:
    """The warning of a run whose ``--min-quality`` is switched off by ``--no-flip`` (None
    when the command does not regress, the filter is on, or ``--min-quality`` is 0)."""
    a = opts.aligner
    if not cmd.uses_regressor or a.flip or a.min_quality <= 0:
        return None
    return (f"facealign: warning: --no-flip switches the quality filter off (--min-quality "
            f"{a.min_quality:g} is not applied): the quality is estimated from the "
            "regressor's agreement with the mirrored crop, which --no-flip skips; every face "
            "the detector keeps (--min-score) is written, its 'quality' from the score alone")


def keep_faces(faces, opts: RunOptions) -> list:
    """The faces the run's settings keep (:meth:`facealign_cli.core.settings.AlignerSettings.
    keeps`, the filter of :class:`~facealign_cli.core.pipeline.FaceAligner` too: score >=
    ``min_score``, quality >= ``min_quality`` once regressed); also applied here for the
    aligners of :attr:`RunOptions.aligner_factory <facealign_cli.batch.options.RunOptions.
    aligner_factory>`."""
    return [f for f in faces if opts.aligner.keeps(f)]


def align(aligner, img, dense: bool, opts: RunOptions) -> list:
    """The faces of ``img`` (regressed, vertices with ``dense``) kept by :func:`keep_faces`."""
    return keep_faces(aligner(img, dense=dense), opts)


def json_file_bytes(doc: Any) -> bytes:
    """The bytes of a one-line JSON output file (UTF-8, trailing newline)."""
    return (records.dumps(doc) + "\n").encode(records.ENCODING, records.ERRORS)


def jpeg_bytes(image_bgr, quality: int) -> bytes:
    """JPEG bytes of an (H, W, 3) uint8 BGR image at ``quality`` (1-100).

    Raises:
        ValueError: the image cannot be encoded.
    """
    import cv2

    ok, buf = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("could not encode the picture as JPEG")
    return buf.tobytes()


def face_summary(faces) -> list[dict[str, Any]]:
    """What the contact sheet shows of each face, for a done record: ``{"score", "quality",
    "pose"}`` (score and quality rounded to 4 places, quality None when not set, ``[yaw, pitch,
    roll]`` degrees to 2, or None)."""
    return [{"score": round(float(f.score), 4),
             "quality": None if f.quality is None else round(float(f.quality), 4),
             "pose": None if f.pose is None else [round(float(a), 2) for a in f.pose]}
            for f in faces]


class ItemWriter:
    """The outputs of one item (a photo or a video) while its frames are processed.

    The command's :meth:`Command.open_writer` makes one per item. For each frame (in order)
    :func:`~facealign_cli.batch.items.process_item` asks :meth:`dense` whether the frame's
    faces need their vertices, then calls :meth:`add` with the faces, or, for a video frame
    whose processing raised, :meth:`add_failed`; :meth:`close` after the last frame gives the
    item's :class:`Encoded`; :meth:`discard` drops whatever was written (a failed or
    interrupted item; also after :meth:`close`). Files go to ``sink``
    (:class:`~facealign_cli.batch.spools.MemorySink` for a photo,
    :class:`~facealign_cli.batch.spools.SpoolSink` for a video).

    Faces passed to :meth:`add` are in the pixels of ``frame.image`` (a photo decoded at
    reduced size: reduced pixels); :meth:`~facealign_cli.batch.sources.Frame.full_size` maps
    them to full-resolution pixels, in place, after the writer has used the image.
    """

    def __init__(self, cmd: Command, item, sink, aligner, opts: RunOptions):
        self.cmd, self.item, self.sink, self.aligner, self.opts = cmd, item, sink, aligner, opts

    def dense(self) -> bool:
        """Whether the next frame's faces need their vertices (the dense fit)."""
        return False

    def add(self, frame, faces) -> None:
        """Record one frame's ``faces`` (a list of :class:`~facealign_cli.core.face.Face`)."""
        raise NotImplementedError

    def add_failed(self, frame, error: str) -> None:
        """Record a video frame whose processing raised (``error``: ``"<Type>: <message>"``);
        by default as a frame without faces."""
        self.add(frame, [])

    def encoded(self, **kw) -> Encoded:
        """An :class:`Encoded` of the files in the sink and ``kw`` (``outputs``, by default
        the files' paths)."""
        files = tuple(self.sink.files)
        kw.setdefault("outputs", tuple(rel for rel, _ in files))
        return Encoded(files=files, **kw)

    def close(self) -> Encoded:
        """Finish the item's outputs (after its last frame)."""
        return self.encoded()

    def discard(self) -> None:
        """Drop the item's outputs (never raises); subclasses close their open files in
        :meth:`release`."""
        with contextlib.suppress(Exception):
            self.release()
        with contextlib.suppress(Exception):
            self.sink.discard()

    def release(self) -> None:
        """Close what the writer holds open (before :meth:`discard` drops the files)."""


def require(ok: bool, flag: str, message: str) -> None:
    """Raise :class:`~facealign_cli.batch.errors.OptionError` (``flag``, ``message``) unless
    ``ok``: the checks of the commands' own options."""
    if not ok:
        raise OptionError(flag, message)


@dataclass(frozen=True)
class NoOptions:
    """The options of a command that has none of its own."""


class Command:
    """One image command: a subclass in its own module of :mod:`facealign_cli.batch.commands`
    sets the class attributes and :meth:`open_writer` (its :class:`ItemWriter` owns the
    command's output names, formats and rows), and is listed in the package's registry.

    A command owns its options, as a plug-in does: their values (:attr:`Options`, a frozen
    dataclass that checks itself when made, raising
    :class:`~facealign_cli.batch.errors.OptionError`), their flags (:meth:`cli_options`), the
    checks of the run's settings as a whole (:meth:`check`) and what of them its outputs
    depend on (:meth:`fingerprint`).

    Attributes:
        name: the command's name on the command line.
        streamable: can write NDJSON to stdout (``--out -``).
        uses_regressor: needs the regressor (``detect`` never loads weights or torch).
        dense: runs the dense (mesh) reconstruction.
        table: its rows go to the run's ``pose.csv``.
        Options: the type of ``RunOptions.command_options``; its field names are the
            parameter names of :meth:`cli_options` (:meth:`RunOptions.make
            <facealign_cli.batch.options.RunOptions.make>` routes them by name).
        writes_pose: its outputs hold pose angles (see :meth:`pose_convention`).
    """

    name: ClassVar[str]
    streamable: ClassVar[bool] = True
    uses_regressor: ClassVar[bool] = True
    dense: ClassVar[bool] = False
    table: ClassVar[bool] = False
    writes_pose: ClassVar[bool] = False
    Options: ClassVar[type] = NoOptions

    @classmethod
    def cli_options(cls) -> list:
        """The ``click.option`` decorators of the command's own flags (in help order), each
        named like a field of :attr:`Options`; click is imported only here."""
        return []

    def check(self, opts: RunOptions) -> None:
        """Check the run's settings together for this command, after each group checked its
        own values (:meth:`RunOptions.validate
        <facealign_cli.batch.options.RunOptions.validate>`).

        Raises:
            OptionError: settings that do not go together for this command.
        """

    def pose_convention(self, opts: RunOptions) -> str | None:
        """The convention of the pose angles in the outputs of a run with ``opts``
        (``opts.aligner.pose_convention``), or ``None`` when they hold no angles."""
        return opts.aligner.pose_convention if self.writes_pose else None

    def fingerprint(self, opts: RunOptions) -> dict[str, Any]:
        """Settings an earlier run must have used for its outputs to be reused: the command
        and :meth:`AlignerSettings.fingerprint
        <facealign_cli.core.settings.AlignerSettings.fingerprint>` (``pose_convention``
        only when the outputs hold pose angles, :meth:`pose_convention`)."""
        return {"command": self.name, **opts.aligner.fingerprint(
            self.uses_regressor, pose=self.pose_convention(opts) is not None)}

    def needs_rasterizer(self, opts: RunOptions) -> str | None:
        """What of this run needs the rasteriser (``deodr``, an optional dependency), named as
        the user asked for it (``"render --draw mesh"``); None: nothing."""
        return None

    def video_fingerprint(self, opts: RunOptions) -> dict[str, Any]:
        """The settings a video's outputs depend on: :meth:`fingerprint` plus ``video``,
        :meth:`VideoSettings.fingerprint
        <facealign_cli.core.settings.VideoSettings.fingerprint>` (``mesh`` adds its
        ``mesh_every``)."""
        return {**self.fingerprint(opts),
                "video": opts.video.fingerprint(self.uses_regressor)}

    def open_writer(self, *, item, source, aligner, opts: RunOptions) -> ItemWriter:
        """The :class:`ItemWriter` of one item.

        Args:
            item: the :class:`~facealign_cli.io.inputs.InputItem` (``path``, ``key``).
            source: its frames (:class:`~facealign_cli.batch.sources.PhotoSource` or
                :class:`~facealign_cli.batch.sources.VideoSource`: ``many`` tells which;
                ``sink`` takes the files; a video's ``fps``).
            aligner: the process's :class:`~facealign_cli.core.pipeline.FaceAligner`
                (``topology.triangles`` for meshes).
            opts: the run's settings.
        """
        raise NotImplementedError

    def outputs_present(self, out, outputs) -> bool:
        """Whether an earlier run's outputs are all still there (resume; ``os.path``, not
        :mod:`pathlib`: it runs for every done item of a rerun)."""
        root = os.fspath(out)
        return all(os.path.isfile(os.path.join(root, *o.split("/"))) for o in outputs)

    def finish(self, out, opts: RunOptions, lines) -> list:
        """Run-level outputs written after the manifest (``render --sheet``'s contact sheet);
        ``lines``: ``[(key, manifest line)]`` of the run, in input order (collected only
        when :meth:`wants_lines`)."""
        return []

    def wants_lines(self, opts: RunOptions) -> bool:
        """Whether :meth:`finish` needs the run's manifest lines."""
        return False
