"""The image commands, one object each: what a command runs on an image and how it encodes
the result into output files, ``pose.csv`` rows and NDJSON records.

Every coordinate is in the full-resolution, upright image's pixels (frame of
:mod:`facealign_cli.core.face`); ``<key>`` is the image's output key
(:mod:`facealign_cli.io.inputs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from facealign_cli.batch.options import POSE_CSV_NAME, SHEET_STEM, THUMBS_DIR, RunOptions
from facealign_cli.defaults import DEFAULT_MIN_QUALITY, DEFAULT_MIN_SCORE
from facealign_cli.io import records

#: Columns of ``pose.csv``. ``frame`` (source frame index), ``time`` (seconds) and ``track``
#: (face track id) are filled for the rows of a video and empty for photos; the header is the
#: same for every run. ``quality``: :func:`facealign_cli.core.quality.face_quality`.
POSE_COLUMNS = ("path", "face", "yaw", "pitch", "roll", "x1", "y1", "x2", "y2", "score",
                "qw", "qx", "qy", "qz", "frame", "time", "track", "quality")
#: The video columns of :data:`POSE_COLUMNS` (empty for a photo).
POSE_VIDEO_COLUMNS = ("frame", "time", "track")


def pad_pose_row(row) -> tuple:
    """A ``pose.csv`` row with every column of :data:`POSE_COLUMNS` (rows recorded before
    the video columns existed get them empty)."""
    row = tuple(row)
    return row + (None,) * (len(POSE_COLUMNS) - len(row))
#: JPEG quality of the overlays of ``render``.
OVERLAY_QUALITY = 90


@dataclass(frozen=True)
class Encoded:
    """What one image produces: files to write (``(relative path, bytes)``), the output list
    of its manifest line, ``pose.csv`` rows, and the NDJSON record (streaming)."""

    files: tuple[tuple[str, bytes], ...] = ()
    outputs: tuple[str, ...] = ()
    rows: tuple[tuple[Any, ...], ...] | None = None
    record: dict[str, Any] | None = None
    done_extra: dict[str, Any] | None = None


def _num(v, nd: int = 2):
    return round(float(v), nd)


def quaternion(R) -> list[float]:
    """``[qw, qx, qy, qz]`` of a rotation matrix (scipy's ``Rotation``), ``qw >= 0``."""
    from scipy.spatial.transform import Rotation

    q = Rotation.from_matrix(R).as_quat(scalar_first=True)
    if q[0] < 0:
        q = -q
    return [round(float(v), 6) for v in q]


def pose_rows(path: str, faces) -> list[list[Any]]:
    """Rows of ``pose.csv`` (:data:`POSE_COLUMNS`) for one image's faces (``pose`` filled)."""
    from facealign_cli.core.face import face_rotation

    rows = []
    for k, f in enumerate(faces):
        yaw, pitch, roll = (_num(v) for v in f.pose)
        x1, y1, x2, y2 = (_num(v) for v in f.box[:4])
        q = None if f.quality is None else _num(f.quality, 4)
        rows.append([path, k, yaw, pitch, roll, x1, y1, x2, y2, _num(f.score, 4),
                     *quaternion(face_rotation(f)), None, None, None, q])
    return rows


def keep_faces(faces, opts: RunOptions) -> list:
    """The faces whose detector score is at least ``opts.min_score`` and whose quality (when
    set: regressed faces) is at least ``opts.min_quality``."""
    return [f for f in faces if float(f.score) >= opts.min_score
            and (f.quality is None or f.quality >= opts.min_quality)]


def align(aligner, img, dense: bool, opts: RunOptions) -> list:
    """The faces of ``img`` (regressed, vertices with ``dense``) kept by :func:`keep_faces`."""
    return keep_faces(aligner(img, dense=dense), opts)


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
        if opts.min_score != DEFAULT_MIN_SCORE:  # (key absent = the detector's default)
            fp["min_score"] = opts.min_score
        if self.uses_regressor:
            if opts.min_quality != DEFAULT_MIN_QUALITY:  # (key absent = the default)
                fp["min_quality"] = opts.min_quality
            fp["weights"] = str(opts.weights or "default")
            if not opts.flip:  # (key absent = flip averaging on, the default)
                fp["flip"] = False
            # always spelled out: outputs of runs before these steps existed are redone
            fp["roi_crop_scale"] = opts.roi_crop_scale
            fp["second_pass"] = opts.second_pass
        return fp

    def video_fingerprint(self, opts: RunOptions) -> dict[str, Any]:
        """The settings a video's outputs depend on: :meth:`fingerprint` plus the frame
        subsampling (and, for the regressing commands, ``detect_every`` and ``smooth``;
        ``mesh``: ``mesh_every``)."""
        v: dict[str, Any] = {"frame_step": opts.frame_step, "max_fps": opts.max_fps}
        if self.uses_regressor:
            v.update(detect_every=opts.detect_every, smooth=opts.smooth)
        if self.dense:
            v["mesh_every"] = opts.mesh_every
        return {**self.fingerprint(opts), "video": v}

    def infer(self, aligner, img, opts: RunOptions) -> tuple[list, Any]:
        """The faces of ``img`` and any per-face data taken from the decoded image."""
        return align(aligner, img, self.dense, opts), None

    def encode(self, path: str, key: str, width: int, height: int, faces, extra, aligner,
               opts: RunOptions) -> Encoded:
        raise NotImplementedError

    def outputs_present(self, out, outputs) -> bool:
        """Whether an earlier run's outputs are all still there (resume)."""
        return all(out.joinpath(*o.split("/")).is_file() for o in outputs)

    def finish(self, out, opts: RunOptions, lines) -> list:
        """Run-level outputs written after the manifest (``render --sheet``'s contact sheet);
        ``lines``: ``[(key, manifest line)]`` of the run, in input order (collected only
        when :meth:`wants_lines`)."""
        return []

    def wants_lines(self, opts: RunOptions) -> bool:
        """Whether :meth:`finish` needs the run's manifest lines."""
        return False


class _JsonCommand(Command):
    def faces_json(self, faces) -> list[dict[str, Any]]:
        return [f.to_dict() for f in faces]

    def header(self) -> dict[str, Any]:
        """Keys of a document that describe all its faces (once per document)."""
        return {}

    def encode(self, path, key, width, height, faces, extra, aligner, opts):
        doc = {"path": path, "width": width, "height": height, **self.header(),
               "faces": self.faces_json(faces)}
        if opts.streaming:
            return Encoded(record=doc)
        rel = key + ".json"
        return Encoded(files=((rel, json_file_bytes(doc)),), outputs=(rel,))


class Detect(_JsonCommand):
    """``<out>/<key>.json`` = ``{path, width, height, faces: [{box, score, keypoints}]}``."""

    name = "detect"
    uses_regressor = False

    def infer(self, aligner, img, opts):
        return [f for f in aligner.detect(img) if float(f.score) >= opts.min_score], None

    def faces_json(self, faces):
        return [{k: v for k, v in f.to_dict(with_landmarks=False).items()
                 if k in ("box", "score", "keypoints")} for f in faces]


class Landmarks(_JsonCommand):
    """``<out>/<key>.json`` = ``{path, width, height, params_info, faces: [Face.to_dict()]}``
    (per face: box, score, keypoints, roi_box, landmarks_2d (68x2), landmarks_3d (68x3), pose,
    rotation (3x3), camera scale and translation, the 62 params and their crop;
    ``params_info``, once per document: what the params refer to,
    :data:`facealign_cli.core.face.PARAMS_INFO`)."""

    name = "landmarks"

    def header(self):
        from facealign_cli.core.face import PARAMS_INFO

        return {"params_info": PARAMS_INFO}


class Pose(Command):
    """Rows of the run's single table ``<out>/pose.csv`` (:data:`POSE_COLUMNS`, angles in
    degrees, box in pixels), one row per face, faces by descending score."""

    name = "pose"
    table = True

    def encode(self, path, key, width, height, faces, extra, aligner, opts):
        rows = tuple(pad_pose_row(r) for r in pose_rows(path, faces))
        if opts.streaming:
            rec = {"path": path, "width": width, "height": height,
                   "faces": [dict(zip(POSE_COLUMNS[1:], r[1:])) for r in rows]}
            return Encoded(rows=rows, record=rec)
        return Encoded(rows=rows, outputs=(POSE_CSV_NAME,) if rows else ())

    def outputs_present(self, out, outputs) -> bool:
        return True  # the rows live in the done record; pose.csv is rebuilt from them


class Mesh(Command):
    """``<out>/<key>_face<k>.<obj|ply|glb>`` per face ``k`` (0 = highest score): the dense
    face-region vertices (pixels; ``opts.mesh_frame``: ``viewer`` = ``(x, H - y, -z)``, y up
    and z towards the viewer, or ``image`` = the image frame, y down, z away from the camera),
    the topology's triangles and per-vertex RGB colours sampled from the photo. With
    ``opts.texture``: a UV texture instead of vertex colours, ``<key>_face<k>.obj`` +
    ``.mtl`` + ``.png`` (:func:`facealign_cli.io.meshes.textured_mesh_files`) or one ``.glb``
    with the texture embedded."""

    name = "mesh"
    streamable = False
    dense = True

    def fingerprint(self, opts):
        fp = {**super().fingerprint(opts), "format": opts.mesh_format,
              "frame": opts.mesh_frame}
        if opts.texture:
            fp["texture"] = True
        return fp

    def infer(self, aligner, img, opts):
        faces = align(aligner, img, True, opts)
        if opts.texture:
            from facealign_cli.core.morphable_model import load_face_uv
            from facealign_cli.io.texture import bake_texture, texture_size

            uv = load_face_uv()
            size = texture_size(uv.aspect)
            tris = aligner.topology.triangles
            return faces, [bake_texture(img, f.vertices, tris, uv.uv, uv.mirror, size)
                           for f in faces]
        from facealign_cli.io.meshes import sample_vertex_colors

        return faces, [sample_vertex_colors(img, f.vertices) for f in faces]

    def encode(self, path, key, width, height, faces, extra, aligner, opts):
        from facealign_cli.io.meshes import mesh_bytes, textured_mesh_files

        tris = aligner.topology.triangles
        frame = {"frame": opts.mesh_frame, "image_height": height}
        files: list[tuple[str, bytes]] = []
        for k, (f, col) in enumerate(zip(faces, extra)):
            if opts.texture:
                from facealign_cli.core.morphable_model import load_face_uv

                folder, _, base = key.rpartition("/")
                prefix = folder + "/" if folder else ""
                files += [(prefix + name, data) for name, data in textured_mesh_files(
                    f"{base}_face{k}", f.vertices, tris, load_face_uv().uv, col,
                    opts.mesh_format, **frame)]
            else:
                files.append((f"{key}_face{k}.{opts.mesh_format}",
                              mesh_bytes(f.vertices, tris, col, opts.mesh_format, **frame)))
        return Encoded(files=tuple(files), outputs=tuple(rel for rel, _ in files))


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


class Render(Command):
    """``<out>/<key>.jpg`` per photo: the photo with the ``opts.draw`` layers of its faces
    (:func:`facealign_cli.render.draw_faces`). With ``opts.sheet`` also
    ``<out>/.thumbs/<key>.jpg`` (a thumbnail) and, after the run, ``<out>/index.html`` (a
    contact sheet of the run's photos, :func:`facealign_cli.render.write_sheet`, built from the
    manifest and the done records: :meth:`finish`). A video gets ``<out>/<key>.mp4`` instead
    (:mod:`facealign_cli.batch.video_items`), its thumbnail from its first frame."""

    name = "render"
    streamable = False
    dense = True  # the topology is loaded; vertices are computed only for mesh / depth

    def fingerprint(self, opts):
        return {**super().fingerprint(opts), "draw": list(opts.draw), "sheet": opts.sheet}

    def video_fingerprint(self, opts):
        fp = super().video_fingerprint(opts)
        fp["video"].pop("mesh_every", None)  # (render has no --mesh-every)
        return fp

    @staticmethod
    def needs_dense(opts: RunOptions) -> bool:
        return any(d in ("mesh", "depth") for d in opts.draw)

    def infer(self, aligner, img, opts):
        from facealign_cli.render import draw_faces

        dense = self.needs_dense(opts)
        faces = align(aligner, img, dense, opts)
        pic = draw_faces(img, faces, opts.draw,
                         triangles=aligner.topology.triangles if dense else None)
        thumb = None
        if opts.sheet:
            from facealign_cli.render.sheet import THUMB_QUALITY, thumbnail

            thumb = jpeg_bytes(thumbnail(pic), THUMB_QUALITY)
        return faces, (jpeg_bytes(pic, OVERLAY_QUALITY), thumb)

    def encode(self, path, key, width, height, faces, extra, aligner, opts):
        overlay, thumb = extra
        files = [(key + ".jpg", overlay)]
        if thumb is not None:
            files.append((f"{THUMBS_DIR}/{key}.jpg", thumb))
        return Encoded(files=tuple(files), outputs=tuple(rel for rel, _ in files),
                       done_extra={"faces": face_summary(faces)})

    def finish(self, out, opts: RunOptions, lines) -> list:
        """After a run with ``opts.sheet``: write ``<out>/index.html`` (and further pages) from
        the run's manifest lines, ``[(key, manifest line)]`` in input order, and the done
        records of the photos rendered (this run's or an earlier one's).

        Returns:
            The pages written (none without ``opts.sheet``).

        Raises:
            OSError: a page cannot be written.
        """
        if not opts.sheet:
            return []
        from facealign_cli.batch.result import printable
        from facealign_cli.batch.state import done_path
        from facealign_cli.render import write_sheet

        entries = []
        for key, line in lines:
            e = {"name": printable(str(line.get("path", ""))), "status": line.get("status"),
                 "error": line.get("error"), "message": line.get("message")}
            if line.get("status") == "ok" or (line.get("status") == "skipped"
                                               and line.get("error") is None):
                try:
                    rec = records.read_json(done_path(out, self.name, key))
                except (OSError, ValueError):
                    rec = None
                if isinstance(rec, dict):
                    outs = [o for o in rec.get("outputs") or [] if isinstance(o, str)]
                    thumb = f"{THUMBS_DIR}/{key}.jpg"
                    # a photo's overlay <key>.jpg, a video's <key>.mp4 (none: no frame)
                    e["overlay"] = next((o for o in outs if o != thumb), None)
                    e["thumbnail"] = thumb if thumb in outs else None
                    video = rec.get("video")
                    if isinstance(video, dict):
                        e["note"] = (f"video: {video.get('frames')} frames, "
                                     f"{rec.get('n_faces')} face track(s); the first frame's "
                                     "faces")
                    e["faces"] = [{"score": f.get("score"), "pose": f.get("pose")}
                                  for f in rec.get("faces") or [] if isinstance(f, dict)]
            entries.append(e)
        return write_sheet(out, entries, stem=SHEET_STEM)

    def wants_lines(self, opts):
        return opts.sheet


_ALL: dict[str, Command] = {c.name: c() for c in (Detect, Landmarks, Pose, Mesh, Render)}
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


def video_fingerprint(cmd: Command, opts: RunOptions) -> dict[str, Any]:
    """:meth:`Command.video_fingerprint` of ``cmd``."""
    return cmd.video_fingerprint(opts)
