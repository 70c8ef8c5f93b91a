"""A video as one batch item: its frames streamed through the tracker, its outputs spooled to
local temporary files (never the whole video, or all its outputs, in memory).

Per command (``<key>`` is the video's output key, :mod:`facealign_cli.io.inputs`):

* ``detect``, ``landmarks``: ``<key>.jsonl``, one line per processed frame,
  ``{"frame", "time", "faces"}`` (``frame``: 0-based index in the source stream, ``time``:
  seconds; ``faces`` as in the photo JSON, each with its ``track`` id); a frame whose
  processing raised has ``"faces": []`` and an ``"error"`` (counted in ``frames_failed``).
  ``detect`` runs the detector on every processed frame (``--detect-every`` is for the
  regressing commands); ``landmarks`` uses :class:`~facealign_cli.core.tracking.VideoAligner`.
* ``pose``: rows of the run's ``pose.csv`` with the ``frame``, ``time`` and ``track`` columns
  filled (``face`` = the face's rank in its frame).
* ``mesh``: ``<key>/frame<NNNNNN>_track<k>.<fmt>`` (``NNNNNN`` = the source frame index) for
  every ``opts.mesh_every``-th processed frame (0, N, 2N, ... of the frames kept by
  ``--frame-step`` / ``--max-fps``); only those frames get the dense fit.
* ``render``: ``<key>.mp4``, the annotated video (:class:`facealign_cli.render.video.
  VideoRenderer`: the ``--draw`` layers and each face's ``#<track>`` on every processed frame,
  MPEG-4 in MP4 at the processed frames' rate, :func:`facealign_cli.io.video.processed_fps`;
  a frame whose processing raised is written as it is); with ``opts.sheet`` also
  ``.thumbs/<key>.jpg``, the thumbnail of its first annotated frame, and the done record keeps
  that frame's faces for the contact sheet.

The item's ``n_faces`` is the number of distinct face tracks of the video. Its result carries
``video`` (manifest line and done record): ``frames`` (processed), ``frames_failed``,
``frames_decoded``, ``frames_declared``, ``complete``, ``fps``, ``width``, ``height``.

A video that cannot be opened fails with ``VideoOpenError`` (0 frames), one whose frames are
larger than ``--max-megapixels`` (``opts.max_pixels``) with ``VideoTooLargeError`` (decided
from the container's declared frame size: no frame is decoded); one whose stream ends
before its declared frame count (truncated, corrupt) fails with ``TruncatedVideoError`` and the
frame counts it reached: **its partial outputs are removed** (nothing is written for it, and a
re-run retries it, as for a failed photo).

Outputs are written to spool files in the system's temporary folder (outside ``--out``;
workers never write there) and handed to the runner as
:class:`~facealign_cli.batch.result.SpoolFile` s, which it copies atomically to their output
names; with the Dask backend (workers on other machines) they travel as bytes instead.
A spool's name holds the pid of its *owner*, the process that commits or discards it
(``facealign-video-<pid>-<random>.spool[.mp4]``, :func:`spool_owner`); the first video a
process handles first removes the spools of owners that are gone
(:func:`remove_stale_spools`), so a run killed with SIGKILL leaks them only until the next run
that handles a video.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import tempfile
import time
import traceback
from typing import Any

from facealign_cli.batch.commands import (
    face_summary,
    get_command,
    json_file_bytes,
    keep_faces,
    pose_rows,
    video_fingerprint,
)
from facealign_cli.batch.options import ModelLoadError, RunOptions
from facealign_cli.batch.result import ImageResult, SpoolFile, discard_spools, one_line
from facealign_cli.io.inputs import InputItem

#: The commands that take video files.
VIDEO_COMMANDS = ("detect", "landmarks", "pose", "mesh", "render")


class TruncatedVideoError(ValueError):
    """The stream ended before the frames its container declares (truncated or corrupt)."""


class VideoNotSupportedError(ValueError):
    """The command does not take video files."""


class NotAVideoError(ValueError):
    """A file named like a video (``.mp4`` ...) whose content is an image (a JPEG, PNG ...):
    it fails instead of being read as a one-frame video."""


def _refuse_images(path: str) -> None:
    """Raise :class:`NotAVideoError` when the file at ``path`` starts like an image
    (:func:`facealign_cli.io.image_headers.sniff_format`); a file that cannot be read is left
    to the video reader to report.

    Raises:
        NotAVideoError: the file is an image.
    """
    from facealign_cli.io.image_headers import sniff_format

    try:
        with open(path, "rb") as f:
            fmt = sniff_format(f.read(12))
    except OSError:
        return
    if fmt is not None:
        raise NotAVideoError(f"a {fmt.upper()} image named like a video "
                             f"({os.path.splitext(path)[1]}): not processed; give it an image "
                             "extension to process it as a photo")


class _ScoreFiltered:
    """An aligner whose detections below ``min_score`` are dropped (as :func:`align` does for
    photos), for :class:`~facealign_cli.core.tracking.VideoAligner`."""

    def __init__(self, aligner, min_score: float):
        self._a = aligner
        self._min = float(min_score)

    def detect(self, image):
        return [f for f in self._a.detect(image) if float(f.score) >= self._min]

    def fit(self, image, faces, *, dense: bool = False):
        return self._a.fit(image, faces, dense=dense)

    def __getattr__(self, name):
        return getattr(self._a, name)


#: Name prefix of the spool files; a spool is ``SPOOL_PREFIX + "<owner pid>-" + <mkstemp's
#: random part> + ".spool"`` (``.spool.mp4`` for ``render``'s video).
SPOOL_PREFIX = "facealign-video-"
#: Seconds of slack when comparing a process's start with a spool's modification time (the
#: boot time Linux reports is whole seconds and follows clock steps).
_START_SLACK = 60.0
_SWEPT: set[str] = set()  # the temporary folders this process has removed stale spools from


def spool_owner(backend: str = "local") -> int:
    """The pid of the process that commits (or discards) the spools this process writes: the
    runner, i.e. the parent of a local worker process, else this process (in-process runs,
    and Dask workers, which read their spools back into bytes themselves)."""
    parent = multiprocessing.parent_process()
    if backend != "dask" and parent is not None and parent.pid == os.getppid():
        return int(parent.pid)
    return os.getpid()


def _process_start(pid: int) -> float | None:
    """Start time of process ``pid`` (seconds since the epoch) from Linux's ``/proc``, or
    ``None`` where that cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            ticks = int(f.read().rsplit(b")", 1)[1].split()[19])  # field 22, starttime
        with open("/proc/stat", "rb") as f:
            btime = next(int(ln.split()[1]) for ln in f if ln.startswith(b"btime "))
        return btime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _owner_gone(pid: int, mtime: float) -> bool:
    """Whether no live process can own a spool named with ``pid`` and last written at
    ``mtime`` (epoch seconds): ``pid`` is not running, or the process running under it
    started after the spool was last written (the pid was reused)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OverflowError:  # not a pid of this system: not a spool of ours
        return False
    except OSError:  # exists (another user's: not ours to judge by signals)
        pass
    start = _process_start(pid)
    return start is not None and start > mtime + _START_SLACK


def remove_stale_spools(folder: str | None = None) -> list[str]:
    """Delete the spool files left in ``folder`` (default: the temporary folder,
    :func:`tempfile.gettempdir`) by owners that are gone (killed with SIGKILL, the OOM killer).

    Only names of the tool's own pattern (``facealign-video-<pid>-<random>.spool`` and
    ``.spool.mp4``) are looked at, and only regular files of this user; a spool is stale when
    its owner pid is not running, or runs a process started after the spool was last written
    (pid reuse; Linux only, elsewhere a running pid keeps its spools). Errors (a file removed
    meanwhile, one that cannot be removed) are ignored.

    Returns:
        The paths removed.
    """
    from facealign_cli.io.video import WRITE_SUFFIX

    name = re.compile(re.escape(SPOOL_PREFIX) + r"([1-9][0-9]{0,9})-[a-z0-9_]+\.spool(?:"
                      + re.escape(WRITE_SUFFIX) + ")?")
    folder = folder or tempfile.gettempdir()
    uid = os.getuid() if hasattr(os, "getuid") else None
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        m = name.fullmatch(e.name)
        if m is None:
            continue
        with contextlib.suppress(OSError):
            st = e.stat(follow_symlinks=False)
            mine = st.st_uid == uid if uid is not None else True
            if mine and e.is_file(follow_symlinks=False) and _owner_gone(int(m.group(1)),
                                                                           st.st_mtime):
                os.unlink(e.path)
                removed.append(e.path)
    return removed


def _sweep_once() -> None:
    """:func:`remove_stale_spools` the first time this process handles a video (per temporary
    folder)."""
    folder = tempfile.gettempdir()
    if folder not in _SWEPT:
        _SWEPT.add(folder)
        remove_stale_spools(folder)


def _spool(opts: RunOptions, suffix: str = "") -> tuple[SpoolFile, Any]:
    """A new spool file (``suffix`` after ``.spool``) in the temporary folder, named with its
    owner's pid (:func:`spool_owner`), open for writing."""
    owner = spool_owner(opts.backend)
    fd, path = tempfile.mkstemp(prefix=f"{SPOOL_PREFIX}{owner}-", suffix=".spool" + suffix)
    return SpoolFile(path), os.fdopen(fd, "wb")


def _spool_bytes(opts: RunOptions, data: bytes) -> SpoolFile:
    sp, f = _spool(opts)
    with f:
        f.write(data)
    return sp


def _mesh_files(base: str, face, colour, aligner, opts: RunOptions, height: int):
    from facealign_cli.io.meshes import mesh_bytes, textured_mesh_files

    tris = aligner.topology.triangles
    frame = {"frame": opts.mesh_frame, "image_height": height}
    if opts.texture:
        from facealign_cli.core.morphable_model import load_face_uv

        folder, _, name = base.rpartition("/")
        prefix = folder + "/" if folder else ""
        return [(prefix + n, data) for n, data in textured_mesh_files(
            name, face.vertices, tris, load_face_uv().uv, colour, opts.mesh_format, **frame)]
    return [(f"{base}.{opts.mesh_format}",
             mesh_bytes(face.vertices, tris, colour, opts.mesh_format, **frame))]


def _colours(aligner, img, faces, opts: RunOptions) -> list:
    if opts.texture:
        from facealign_cli.core.morphable_model import load_face_uv
        from facealign_cli.io.texture import bake_texture, texture_size

        uv = load_face_uv()
        size = texture_size(uv.aspect)
        tris = aligner.topology.triangles
        return [bake_texture(img, f.vertices, tris, uv.uv, uv.mirror, size) for f in faces]
    from facealign_cli.io.meshes import sample_vertex_colors

    return [sample_vertex_colors(img, f.vertices) for f in faces]


def _renderer(cmd, opts: RunOptions, item: InputItem, info, aligner, files: list):
    """The :class:`~facealign_cli.render.video.VideoRenderer` of ``render`` on a video, its
    output (``<key>.mp4``, spooled; the container follows the spool's suffix) added to
    ``files``."""
    from facealign_cli.io.video import WRITE_SUFFIX, processed_fps
    from facealign_cli.render.video import VideoRenderer

    sp, f = _spool(opts, WRITE_SUFFIX)
    f.close()
    files.append((item.key + WRITE_SUFFIX, sp))
    tris = aligner.topology.triangles if cmd.needs_dense(opts) else None
    return VideoRenderer(sp.path, processed_fps(info.fps, opts.frame_step, opts.max_fps),
                         opts.draw, triangles=tris, keep_first=opts.sheet)


def _render_files(renderer, opts: RunOptions, key: str, files: list) -> None:
    """After the last frame: finish the video (dropped when no frame was written) and add the
    sheet's thumbnail of its first frame to ``files``."""
    renderer.close()
    if not renderer.frames:
        discard_spools(files)
        files.clear()
        return
    if opts.sheet and renderer.first is not None:
        from facealign_cli.batch.commands import THUMBS_DIR, jpeg_bytes
        from facealign_cli.render.sheet import THUMB_QUALITY, thumbnail

        data = jpeg_bytes(thumbnail(renderer.first), THUMB_QUALITY)
        files.append((f"{THUMBS_DIR}/{key}.jpg", _spool_bytes(opts, data)))
        renderer.first = None


def _close_quietly(*writers) -> None:
    for w in writers:
        if w is not None:
            with contextlib.suppress(Exception):
                w.close()


def process_video(opts: RunOptions, item: InputItem, get_aligner, stop) -> ImageResult:
    """Run one video through the model and spool its outputs (nothing is written under
    ``--out``). Never raises for a problem of this video (returns a ``failed`` result); a
    stop request (``stop.is_set()``: :data:`facealign_cli.batch.worker.STOP`, which local
    worker processes see too) is checked before each frame and returns a not-run result
    (``Interrupted``; its partial outputs are discarded, no done record).

    Raises:
        ModelLoadError: the model cannot be built.
    """
    from facealign_cli.core.tracking import FaceTracker, VideoAligner, track_of
    from facealign_cli.io.video import VideoError, VideoReader

    t0 = time.perf_counter()
    cmd = get_command(opts.command)
    files: list[tuple[str, Any]] = []
    video: dict[str, Any] | None = None
    jsonl = renderer = reader = None
    try:
        if cmd.name not in VIDEO_COMMANDS:
            raise VideoNotSupportedError(f"{cmd.name} does not take video files (only "
                                         f"{', '.join(VIDEO_COMMANDS)})")
        _refuse_images(item.path)
        _sweep_once()
        reader = VideoReader(item.path, frame_step=opts.frame_step, max_fps=opts.max_fps,
                             max_pixels=opts.max_pixels)
        aligner = get_aligner(opts)
        filtered = _ScoreFiltered(aligner, opts.min_score)
        if cmd.name == "detect":
            tracker, va = FaceTracker(), None
        else:
            smoother = None
            if opts.smooth:
                from facealign_cli.core.smoothing import FaceSmoother

                smoother = FaceSmoother()
            tracker, va = None, VideoAligner(filtered, detect_every=opts.detect_every,
                                            smoother=smoother, dense=False)
        if cmd.name in ("detect", "landmarks"):
            sp, jsonl = _spool(opts)
            files.append((item.key + ".jsonl", sp))
        render_dense = False
        if cmd.name == "render":
            renderer = _renderer(cmd, opts, item, reader.info, aligner, files)
            render_dense = renderer.triangles is not None
        first_faces = None
        rows: list[tuple] = []
        tracks: set[int] = set()
        n = failed = 0
        width, height = reader.info.width, reader.info.height
        with reader:
            for fr in reader:
                if stop.is_set():
                    _close_quietly(jsonl, renderer)
                    discard_spools(files)
                    return ImageResult.not_run(item)
                height, width = fr.image.shape[:2]
                mesh_frame = cmd.name == "mesh" and n % max(1, opts.mesh_every) == 0
                err = pic = None
                try:
                    if va is None:
                        faces = tracker.update(filtered.detect(fr.image))
                    else:
                        va.dense = mesh_frame or render_dense
                        faces = keep_faces(va.process(fr.image, fr.time), opts)
                    if renderer is not None:
                        pic = renderer.draw(fr.image, faces)
                    if mesh_frame:
                        cols = _colours(aligner, fr.image, faces, opts)
                        for f, col in zip(faces, cols):
                            base = f"{item.key}/frame{fr.index:06d}_track{track_of(f)}"
                            for rel, data in _mesh_files(base, f, col, aligner, opts, height):
                                files.append((rel, _spool_bytes(opts, data)))
                except ModelLoadError:
                    raise
                except Exception as exc:  # one bad frame never stops the video
                    faces, err = [], f"{type(exc).__name__}: {one_line(exc)}"
                    failed += 1
                if renderer is not None:
                    renderer.write(fr.image if pic is None else pic)
                    if first_faces is None:
                        first_faces = face_summary(faces)
                n += 1
                tracks.update(t for t in (track_of(f) for f in faces) if t is not None)
                t = round(float(fr.time), 6)
                if jsonl is not None:
                    doc: dict[str, Any] = {"frame": fr.index, "time": t, "faces": [
                        {**d, "track": track_of(f)}
                        for f, d in zip(faces, cmd.faces_json(faces))]}
                    if err is not None:
                        doc["error"] = err
                    jsonl.write(json_file_bytes(doc))
                if cmd.table:
                    rows += [tuple(r[:14]) + (fr.index, t, track_of(f), r[17])
                             for r, f in zip(pose_rows(item.path, faces), faces)]
                del fr, faces, pic
        if jsonl is not None:
            jsonl.close()
        if renderer is not None:
            _render_files(renderer, opts, item.key, files)
        st = reader.status
        video = {"frames": st.frames_delivered, "frames_failed": failed,
                 "frames_decoded": st.frames_decoded, "frames_declared": st.frames_declared,
                 "complete": st.complete, "fps": round(reader.info.fps, 3),
                 "width": width, "height": height}
        if not st.complete:
            raise TruncatedVideoError(st.error or "the stream ended early")
        outputs = tuple(rel for rel, _ in files)
        if cmd.table and rows:
            from facealign_cli.batch.options import POSE_CSV_NAME

            outputs = (POSE_CSV_NAME,)
        if opts.backend == "dask":  # the runner is on another machine: bytes, not spools
            loaded = []
            for rel, sp in files:
                with open(sp.path, "rb") as f:
                    loaded.append((rel, f.read()))
                sp.discard()
            files = loaded
        done = {"fingerprint": video_fingerprint(cmd, opts), "path": item.path,
                "n_faces": len(tracks), "outputs": list(outputs), "width": width,
                "height": height, "video": video}
        if cmd.table:
            done["rows"] = [list(r) for r in rows]
        if renderer is not None:
            done["faces"] = first_faces or []
        message = f"{failed} of {n} frames failed" if failed else None
        if renderer is not None and not n:
            message = "no frame in the video: nothing rendered"
        return ImageResult(item.path, item.key, "ok", n_faces=len(tracks), outputs=outputs,
                           message=message, seconds=round(time.perf_counter() - t0, 3),
                           width=width, height=height, rows=tuple(rows) if cmd.table else None,
                           files=tuple(files), done=done, video=video)
    except ModelLoadError:
        _close_quietly(jsonl, renderer)
        discard_spools(files)
        raise
    except Exception as exc:  # one bad video never stops the batch
        _close_quietly(jsonl, renderer)
        discard_spools(files)
        tb = traceback.format_exc() if opts.verbose >= 2 else None
        res = ImageResult.failure(item, exc, round(time.perf_counter() - t0, 3), tb)
        if video is None and isinstance(exc, VideoError):  # cannot open, too large
            st = reader.status if reader is not None else None
            video = {"frames": st.frames_delivered if st else 0, "frames_failed": 0,
                     "frames_decoded": st.frames_decoded if st else 0,
                     "frames_declared": st.frames_declared if st else 0, "complete": False}
        if video is not None:
            from dataclasses import replace

            res = replace(res, video=video)
        return res
