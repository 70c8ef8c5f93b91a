"""Video files as batch items (``facealign_cli.batch.sources``): one ``.jsonl`` line per
frame with stable track ids, ``pose.csv`` rows with frame / time / track, meshes of every N-th
frame, ``render``'s annotated ``.mp4`` (frames, size, rate, overlays at the faces only, the
sheet's first-frame thumbnail), ``detect --detect-every`` refused, a truncated video recorded
as a failure with its frame count while the rest of the batch is done (also for ``render``),
resume of a finished video, and ``--out -`` refused for videos.

The clips are built here with ``cv2.VideoWriter`` (MJPG in .avi, mp4v in .mp4) from an AFW
photo with three clear faces (``../shared/data/photos/afw``; skipped without it), shifted by
(2, 1) px a frame, with the real model (shipped weights)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from facealign_cli.batch.manifest import read_manifest
from facealign_cli.batch.run_db import RunDB

cv2 = pytest.importorskip("cv2")

from facealign_cli.cli.main import main  # noqa: E402

PHOTO = "406798473"  # three faces, detector scores 0.8-0.95 at half size, nothing else above 0.45
N = 8
MIN_SCORE = "0.6"


def invoke(args, **kw):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, **kw)


def make_clip(photo: Path, path: Path, n: int = N, scale: float = 0.5,
              fourcc: str = "MJPG") -> Path:
    img = cv2.imread(str(photo))
    img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    h, w = img.shape[:2]
    w, h = w // 2 * 2, h // 2 * 2
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25.0, (w, h))
    assert vw.isOpened()
    for i in range(n):
        m = np.float32([[1, 0, 2.0 * i], [0, 1, 1.0 * i]])
        vw.write(cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT))
    vw.release()
    return path


@pytest.fixture(scope="module")
def clips(afw_annotated_dir, tmp_path_factory) -> Path:
    photo = afw_annotated_dir / f"{PHOTO}.jpg"
    if not photo.is_file():
        pytest.skip(f"{photo} not found")
    d = tmp_path_factory.mktemp("clips")
    make_clip(photo, d / "clip.avi")
    make_clip(photo, d / "clip.mp4", fourcc="mp4v")
    return d


@pytest.fixture()
def env(real_weights):
    return {"FACEALIGN_WEIGHTS": str(real_weights)}


def _done_keys(out: Path, command: str) -> list[str]:
    """The items the run state of ``out`` records as done by ``command``."""
    db = RunDB(out, readonly=True)
    try:
        return [r.key for r in db.iter_items(command, status="ok")]
    finally:
        db.close()


def _manifest(out: Path) -> list[dict]:
    return read_manifest(out / "manifest.jsonl")


def _lines(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text().splitlines()]


def test_landmarks_on_a_video_one_line_per_frame_with_stable_tracks(clips, env, tmp_path):
    out = tmp_path / "lm"
    r = invoke(["landmarks", clips / "clip.avi", "--out", out, "--min-score", MIN_SCORE],
               env=env)
    assert r.exit_code == 0, r.output
    lines = _lines(out / "clip.jsonl")
    assert [d["frame"] for d in lines] == list(range(N))
    assert {d["pose_convention"] for d in lines} == {"yaw-first"}  # on every line (issue 24)
    np.testing.assert_allclose([d["time"] for d in lines], np.arange(N) / 25.0, atol=1e-3)
    first = {f["track"]: np.array(f["box"]) for f in lines[0]["faces"]}
    assert sorted(first) == [0, 1, 2]
    for i, d in enumerate(lines):
        tracks = {f["track"]: f for f in d["faces"]}
        assert sorted(tracks) == [0, 1, 2], i  # the same three ids on every frame
        for t, f in tracks.items():
            assert np.array(f["landmarks_2d"]).shape == (68, 2)
            # each track follows its face: the box moved by about (2, 1) px a frame
            moved = np.array(f["box"]) - first[t]
            assert np.abs(moved - [2 * i, i, 2 * i, i]).max() < 12, (i, t)
    (line,) = _manifest(out)
    assert line["status"] == "ok" and line["outputs"] == ["clip.jsonl"]
    assert line["n_faces"] == 3  # distinct tracks
    assert line["video"]["frames"] == N and line["video"]["frames_failed"] == 0
    assert line["video"]["complete"] is True
    assert not list(out.rglob("*.facealign-tmp"))

    # resume skips the finished video; other video settings redo it
    r = invoke(["landmarks", clips / "clip.avi", "--out", out, "--min-score", MIN_SCORE],
               env=env)
    assert r.exit_code == 0
    (line,) = _manifest(out)
    assert line["status"] == "skipped" and line["error"] is None
    assert line["video"]["frames"] == N
    r = invoke(["landmarks", clips / "clip.avi", "--out", out, "--min-score", MIN_SCORE,
                "--frame-step", "2", "--smooth"], env=env)
    assert r.exit_code == 0
    (line,) = _manifest(out)
    assert line["status"] == "ok" and line["video"]["frames"] == N // 2
    assert [d["frame"] for d in _lines(out / "clip.jsonl")] == list(range(0, N, 2))


def test_detect_on_a_folder_of_videos_and_photos_with_jobs(clips, env, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.avi").write_bytes((clips / "clip.avi").read_bytes())
    cv2.imwrite(str(src / "b.jpg"), np.full((64, 64, 3), 128, np.uint8))
    out = tmp_path / "det"
    r = invoke(["detect", src, "--out", out, "--min-score", MIN_SCORE, "--max-fps", "12.5",
                "--jobs", "2"], env=env)
    assert r.exit_code == 0, r.output
    lines = _lines(out / "a.jsonl")
    assert [d["frame"] for d in lines] == list(range(0, N, 2))
    assert all(sorted(f["track"] for f in d["faces"]) == [0, 1, 2] for d in lines)
    assert set(lines[0]["faces"][0]) == {"box", "score", "keypoints", "track"}
    assert [m["status"] for m in _manifest(out)] == ["ok", "ok"]
    assert (out / "b.json").is_file()


def test_videos_cannot_stream_to_stdout(clips, env):
    r = invoke(["landmarks", clips / "clip.avi", "--out", "-"], env=env)
    assert r.exit_code == 2 and "give a folder to --out" in r.output


def test_pose_and_mesh_on_a_video(clips, env, tmp_path):
    from facealign_cli.batch.commands import POSE_COLUMNS

    out = tmp_path / "pose"
    photo = tmp_path / "photo.jpg"
    cv2.imwrite(str(photo), next(_frames(clips / "clip.avi")))
    r = invoke(["pose", clips / "clip.avi", photo, "--out", out, "--min-score", MIN_SCORE,
                "--detect-every", "2"], env=env)
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO((out / "pose.csv").read_text("utf-8"))))
    assert list(rows[0]) == list(POSE_COLUMNS)
    video = [r for r in rows if r["path"].endswith("clip.avi")]
    assert len(video) == 3 * N
    assert sorted({int(r["frame"]) for r in video}) == list(range(N))
    assert {int(r["track"]) for r in video} == {0, 1, 2}
    assert all(float(r["time"]) == pytest.approx(int(r["frame"]) / 25.0, abs=1e-3)
               for r in video)
    still = [r for r in rows if r["path"].endswith("photo.jpg")]
    assert len(still) == 3 and all(r["frame"] == r["time"] == r["track"] == "" for r in still)
    assert {r["pose_convention"] for r in rows} == {"yaw-first"}

    out = tmp_path / "mesh"
    r = invoke(["mesh", clips / "clip.avi", "--out", out, "--min-score", MIN_SCORE,
                "--mesh-every", "5"], env=env)
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in (out / "clip").iterdir())
    assert names == [f"frame{f:06d}_track{t}.obj" for f in (0, 5) for t in range(3)]
    (line,) = _manifest(out)
    assert sorted(line["outputs"]) == sorted(f"clip/{n}" for n in names)
    text = (out / "clip" / names[0]).read_text()
    assert text.count("\nv ") > 1000 and "\nf " in text


def _frames(path: Path):
    cap = cv2.VideoCapture(str(path))
    while True:
        ok, img = cap.read()
        if not ok:
            break
        yield img
    cap.release()


def test_a_truncated_video_fails_with_its_frame_count_and_the_rest_is_done(clips, env,
                                                                          tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    data = (clips / "clip.avi").read_bytes()
    (src / "a_cut.avi").write_bytes(data[:int(len(data) * 0.6)])
    (src / "b_whole.avi").write_bytes(data)
    (src / "c_junk.mp4").write_bytes(b"not a video at all")
    out = tmp_path / "lm"
    r = invoke(["landmarks", src, "--out", out, "--min-score", MIN_SCORE], env=env)
    assert r.exit_code == 1
    cut, whole, junk = _manifest(out)
    assert cut["status"] == "failed" and cut["error"] == "TruncatedVideoError"
    assert 0 < cut["video"]["frames"] < N and cut["video"]["frames_declared"] == N
    assert f"{cut['video']['frames']} frames delivered" in cut["message"]
    assert cut["outputs"] == [] and not (out / "a_cut.jsonl").exists()  # partial: removed
    assert whole["status"] == "ok" and len(_lines(out / "b_whole.jsonl")) == N
    assert junk["status"] == "failed" and junk["error"] == "VideoOpenError"
    assert junk["video"]["frames"] == 0
    # a re-run retries the failures and skips the finished video
    r = invoke(["landmarks", src, "--out", out, "--min-score", MIN_SCORE], env=env)
    assert [m["status"] for m in _manifest(out)] == ["failed", "skipped", "failed"]


def test_run_batch_refuses_to_stream_a_video(tmp_path):
    from facealign_cli.batch.options import RunOptions
    from facealign_cli.batch.runner import run_batch
    from facealign_cli.io.inputs import collect_inputs

    (tmp_path / "v.mp4").write_bytes(b"x")
    cv2.imwrite(str(tmp_path / "p.jpg"), np.zeros((8, 8, 3), np.uint8))
    items = collect_inputs([tmp_path], videos=True)
    assert [Path(it.path).name for it in items] == ["p.jpg", "v.mp4"]
    assert [Path(it.path).name for it in collect_inputs([tmp_path])] == ["p.jpg"]
    with pytest.raises(ValueError, match="videos are written as files"):
        run_batch(items, RunOptions.make(command="landmarks", out="-"))


def _boxes(jsonl: Path) -> list[list[np.ndarray]]:
    return [[np.array(f["box"]) for f in d["faces"]] for d in _lines(jsonl)]


def test_render_a_video_writes_an_annotated_mp4(clips, env, tmp_path):
    src = clips / "clip.mp4"
    out = tmp_path / "look"
    r = invoke(["render", src, "--out", out, "--min-score", MIN_SCORE, "--sheet"], env=env)
    assert r.exit_code == 0, r.output
    (line,) = _manifest(out)
    assert line["status"] == "ok" and line["n_faces"] == 3
    assert line["outputs"] == ["clip.mp4", ".thumbs/clip.jpg"]
    assert line["video"]["frames"] == N and line["video"]["complete"] is True
    assert not list(out.rglob("*.facealign-tmp"))

    cap = cv2.VideoCapture(str(out / "clip.mp4"))
    assert cap.isOpened()
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(25.0)
    cap.release()
    rendered, source = list(_frames(out / "clip.mp4")), list(_frames(src))
    assert len(rendered) == N and size == (line["video"]["width"], line["video"]["height"])
    assert rendered[0].shape == source[0].shape

    # the overlays are at the faces (boxes of a landmarks run with the same settings), and
    # away from them the frames are the source's (up to lossy re-encoding)
    lm = tmp_path / "lm"
    assert invoke(["landmarks", src, "--out", lm, "--min-score", MIN_SCORE],
                  env=env).exit_code == 0
    for pic, orig, boxes in zip(rendered, source, _boxes(lm / "clip.jsonl")):
        diff = np.abs(pic.astype(int) - orig).max(axis=-1)
        near = np.zeros(diff.shape, bool)
        for x1, y1, x2, y2 in boxes:
            near[max(0, int(y1) - 25):int(y2) + 25, max(0, int(x1) - 25):int(x2) + 25] = True
        assert len(boxes) == 3
        assert (diff[near] > 80).mean() > 0.03  # drawn over each face
        assert (diff[~near] > 80).mean() < 0.002 and np.median(diff[~near]) < 8
        assert near.mean() < 0.5

    # H.264 where PyAV's encoder is (the [video] extra; else the mp4v fallback), said in the
    # manifest line
    from facealign_cli.io.video_writer import default_codec

    assert line["video"]["codec"] == default_codec()
    if line["video"]["codec"] == "h264":
        from videotools import video_codec

        assert video_codec(out / "clip.mp4") == ("h264", "yuv420p")

    # the sheet embeds the video, its first annotated frame as the poster, and links to it
    thumb = cv2.imread(str(out / ".thumbs" / "clip.jpg"))
    assert thumb is not None and max(thumb.shape[:2]) <= 320
    page = (out / "index.html").read_text("utf-8")
    assert '<video src="clip.mp4" poster=".thumbs/clip.jpg"' in page
    assert 'href="clip.mp4"' in page
    assert f"video: {N} frames, 3 face track(s)" in page

    # resume skips it; --frame-step redoes it at the processed frames' rate (--smooth and
    # --detect-every apply as for landmarks: the same three tracks)
    r = invoke(["render", src, "--out", out, "--min-score", MIN_SCORE, "--sheet"], env=env)
    assert r.exit_code == 0 and _manifest(out)[0]["status"] == "skipped"
    r = invoke(["render", src, "--out", out, "--min-score", MIN_SCORE, "--frame-step", "2",
                "--draw", "mesh", "--smooth", "--detect-every", "2"], env=env)
    assert r.exit_code == 0, r.output
    (line,) = _manifest(out)
    assert line["status"] == "ok" and line["outputs"] == ["clip.mp4"] and line["n_faces"] == 3
    assert line["video"]["frames_failed"] == 0
    assert not (out / ".thumbs" / "clip.jpg").exists()  # not an output of this run
    cap = cv2.VideoCapture(str(out / "clip.mp4"))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(12.5)
    cap.release()
    assert len(list(_frames(out / "clip.mp4"))) == N // 2


def test_render_a_truncated_video_fails_and_the_photo_is_still_rendered(clips, env, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    data = (clips / "clip.avi").read_bytes()
    (src / "a_cut.avi").write_bytes(data[:int(len(data) * 0.6)])
    cv2.imwrite(str(src / "b_photo.jpg"), next(_frames(clips / "clip.avi")))
    out = tmp_path / "look"
    r = invoke(["render", src, "--out", out, "--min-score", MIN_SCORE, "--sheet"], env=env)
    assert r.exit_code == 1
    cut, photo = _manifest(out)
    assert cut["status"] == "failed" and cut["error"] == "TruncatedVideoError"
    assert 0 < cut["video"]["frames"] < N and cut["video"]["frames_declared"] == N
    assert f"{cut['video']['frames']} frames delivered" in cut["message"]
    assert cut["outputs"] == [] and not (out / "a_cut.mp4").exists()
    assert not (out / ".thumbs" / "a_cut.jpg").exists()
    assert photo["status"] == "ok" and photo["n_faces"] == 3
    assert cv2.imread(str(out / "b_photo.jpg")) is not None
    assert not list(out.rglob("*.facealign-tmp"))
    page = (out / "index.html").read_text("utf-8")
    assert "TruncatedVideoError" in page and 'href="b_photo.jpg"' in page


def test_render_refuses_to_stream_videos(clips, env):
    r = invoke(["render", clips / "clip.mp4", "--out", "-"], env=env)
    assert r.exit_code == 2 and "give a folder to --out" in r.output


def test_detect_refuses_detect_every(clips, env, tmp_path):
    out = tmp_path / "det"
    r = invoke(["detect", clips / "clip.mp4", "--out", out, "--detect-every", "3"], env=env)
    assert r.exit_code == 2
    assert "--detect-every 3" in r.output and "--frame-step 3" in r.output
    assert not (out / "manifest.jsonl").exists() and not list(out.glob("*.jsonl"))
    # the hint works: one frame in 3, every one detected
    r = invoke(["detect", clips / "clip.mp4", "--out", out, "--frame-step", "3",
                "--min-score", MIN_SCORE], env=env)
    assert r.exit_code == 0, r.output
    lines = _lines(out / "clip.jsonl")
    assert [d["frame"] for d in lines] == list(range(0, N, 3))
    assert all(len(d["faces"]) == 3 for d in lines)


def _temp_folder(tmp_path, monkeypatch) -> Path:
    """A temporary folder of the test's own as ``tempfile.gettempdir()`` and ``$TMPDIR``
    (where the spools go)."""
    import tempfile

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


def test_render_a_video_cut_short_on_disk_fails_and_is_retried(clips, env, tmp_path,
                                                                monkeypatch):
    """$TMPDIR fills up while the annotated video is encoded: OpenCV reports nothing and
    leaves an MP4 without its index. The video is read back before it is committed: a
    failure naming the frame counts, no output, no done record, so a re-run redoes it."""
    from videotools import cut_written_videos_short

    tmp = _temp_folder(tmp_path, monkeypatch)
    out = tmp_path / "look"
    args = ["render", clips / "clip.mp4", "--out", out, "--min-score", MIN_SCORE, "--sheet"]
    with monkeypatch.context() as m:
        cut_written_videos_short(m)
        r = invoke(args, env=env)
    assert r.exit_code == 1, r.output
    (line,) = _manifest(out)
    assert line["status"] == "failed" and line["error"] == "VideoWriteError"
    assert f"{N} frames were written but 0 can be read back" in line["message"]
    assert line["outputs"] == [] and not (out / "clip.mp4").exists()
    assert not (out / ".thumbs" / "clip.jpg").exists()
    assert _done_keys(out, "render") == []
    assert list(tmp.glob("facealign-video-*")) == []  # the spools are gone too
    r = invoke(args, env=env)  # the disk has room again: done now, not skipped
    assert r.exit_code == 0, r.output
    (line,) = _manifest(out)
    assert line["status"] == "ok" and len(list(_frames(out / "clip.mp4"))) == N


def test_a_video_over_the_pixel_limit_fails_before_any_frame(clips, env, tmp_path,
                                                           monkeypatch):
    from videotools import count_decoded_frames

    width, height = next(_frames(clips / "clip.avi")).shape[1::-1]
    assert width * height > 10_000
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.avi").write_bytes((clips / "clip.avi").read_bytes())
    photo = np.full((200, 300, 3), 128, np.uint8)  # 0.06 MP: decoded at 1/4 (75 x 50)
    cv2.imwrite(str(src / "b.jpg"), photo)
    out = tmp_path / "lm"
    decoded = count_decoded_frames(monkeypatch)
    r = invoke(["landmarks", src, "--out", out, "--max-megapixels", "0.01"], env=env)
    assert r.exit_code == 1, r.output
    video, still = _manifest(out)
    assert video["status"] == "failed" and video["error"] == "VideoTooLargeError"
    assert (f"{width} x {height} = {width * height / 1e6:.3g} megapixels, over the 0.01 "
            "megapixel limit") in video["message"]
    assert video["video"]["frames"] == 0 and video["outputs"] == []
    assert decoded.grabs == 0  # refused from the container's declared size
    assert still["status"] == "ok" and "decoded at 1/4" in still["message"]


_STOP_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from facealign_cli.batch.options import RunOptions
from facealign_cli.batch.runner import run_batch
from facealign_cli.io.inputs import collect_inputs
from fakes import FakeFactory
items = collect_inputs([{src!r}], videos=True)
s = run_batch(items, RunOptions.make("detect", {out!r}, jobs={jobs}, progress="never",
                                aligner_factory=FakeFactory(delay=0.05, trace={trace!r})))
sys.exit(s.exit_code)
"""


@pytest.mark.parametrize("jobs", [1, 2])
def test_sigterm_stops_a_video_between_frames(tmp_path, jobs):
    """SIGTERM to the runner while a long video is processed (in this process, or in a worker
    process, which ignores the signal itself): the video stops at the next frame and is
    recorded as interrupted, its partial outputs dropped, exit 143."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from videotools import write_bar_clip

    frames = 300  # 15 s of fake model time in all
    src = tmp_path / "in"
    src.mkdir()
    write_bar_clip(src / "long.avi", frames)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out, trace = tmp_path / "out", tmp_path / "trace.txt"
    script = _STOP_SCRIPT.format(tests=str(Path(__file__).parents[1]), src=str(src),
                                 out=str(out), jobs=jobs, trace=str(trace))
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ,
                            "TMPDIR": str(tmp)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (trace.is_file() and trace.read_text().count("\n") >= 3):
        if time.time() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail("the video was not started: " + proc.communicate()[1].decode())
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # to the runner only, as a supervisor does
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err.decode()
    processed = trace.read_text().count("\n")
    assert processed < frames // 4, processed  # stopped soon after the signal, not at the end
    (line,) = _manifest(out)
    assert line["status"] == "skipped" and line["error"] == "Interrupted"
    assert not (out / "long.jsonl").exists() and _done_keys(out, "detect") == []
    assert list(tmp.glob("facealign-video-*")) == []  # the spool is discarded


# --- spool files left by a killed run (facealign-video-<owner pid>-<random>.spool[.mp4]) ---


def _dead_pid() -> int:
    """The pid of a child process that has exited (and been reaped)."""
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", ""])
    p.wait()
    return p.pid


def _spool_folder(tmp_path, monkeypatch) -> Path:
    """A temporary folder of the test's own, as ``tempfile.gettempdir()`` (and ``$TMPDIR``),
    with a stale spool of each kind, a live one, and files the sweep must leave alone."""
    import os

    tmp = _temp_folder(tmp_path, monkeypatch)
    dead, me = _dead_pid(), os.getpid()
    for name in (f"facealign-video-{dead}-ab12_xyz.spool", f"facealign-video-{dead}-q9.spool.mp4",
                 f"facealign-video-{me}-live1234.spool",  # this process's: in use
                 f"facealign-video-{dead}-x.spool.bak", f"facealign-video-{dead}.spool",
                 "facealign-video-abcd1234.spool",  # older name, no pid: not judged
                 f"other-{dead}-ab.spool", "notes.txt"):
        (tmp / name).write_bytes(b"x")
    (tmp / f"facealign-video-{dead}-dir.spool").mkdir()  # a folder: never removed
    return tmp


STALE = ("-ab12_xyz.spool", "-q9.spool.mp4")


def test_remove_stale_spools_only_removes_dead_owners_spools(tmp_path, monkeypatch):
    from facealign_cli.batch.spools import remove_stale_spools

    tmp = _spool_folder(tmp_path, monkeypatch)
    before = sorted(p.name for p in tmp.iterdir())
    removed = sorted(Path(p).name for p in remove_stale_spools())
    assert len(removed) == 2 and all(n.endswith(STALE) for n in removed)
    assert sorted(p.name for p in tmp.iterdir()) == sorted(set(before) - set(removed))
    assert remove_stale_spools(str(tmp)) == []


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs Linux /proc")
def test_a_reused_pid_does_not_keep_an_older_spool(tmp_path):
    """A spool named with a running pid but last written before that process started (the
    pid was reused) is stale; written after its start, it is kept."""
    import os

    from facealign_cli.batch.spools import remove_stale_spools

    old = tmp_path / f"facealign-video-{os.getpid()}-old.spool.mp4"
    new = tmp_path / f"facealign-video-{os.getpid()}-new.spool"
    old.write_bytes(b"x")
    new.write_bytes(b"x")
    os.utime(old, (1e9, 1e9))  # 2001, before this process started
    assert remove_stale_spools(str(tmp_path)) == [str(old)]
    assert new.is_file()


def test_spools_are_named_with_their_owner(tmp_path, monkeypatch):
    import os
    import tempfile

    from facealign_cli.batch.spools import new_spool, spool_owner

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    sp, f = new_spool("local", ".mp4")
    f.close()
    name = Path(sp.path).name
    assert Path(sp.path).parent == tmp_path
    assert name.startswith(f"facealign-video-{os.getpid()}-") and name.endswith(".spool.mp4")
    sp.discard()
    try:  # a local worker's spools belong to the runner, its parent; a Dask worker's to itself
        from loky import get_reusable_executor
    except ImportError:
        from joblib.externals.loky import get_reusable_executor
    ex = get_reusable_executor(max_workers=1)
    assert ex.submit(spool_owner, "local").result() == os.getpid()
    assert ex.submit(spool_owner, "dask").result() != os.getpid()


def test_a_video_run_removes_stale_spools_and_leaves_none(clips, env, tmp_path, monkeypatch):
    tmp = _spool_folder(tmp_path, monkeypatch)  # (each run sweeps once: no state to reset)
    kept = sorted(p.name for p in tmp.iterdir() if not p.name.endswith(STALE))
    out = tmp_path / "det"
    r = invoke(["detect", clips / "clip.avi", "--out", out, "--min-score", MIN_SCORE], env=env)
    assert r.exit_code == 0, r.output
    assert (out / "clip.jsonl").is_file()
    assert sorted(p.name for p in tmp.iterdir()) == kept  # the run's own spools are gone too
