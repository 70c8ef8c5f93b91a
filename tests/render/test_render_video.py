"""Writing annotated videos (facealign_cli.io.video.VideoWriter, processed_fps;
facealign_cli.render.video.VideoRenderer): frames encoded one at a time round-trip through
cv2.VideoCapture with their count, size and rate; the rate of the processed frames matches what
VideoReader delivers; track ids are drawn at their box (also without the box layer) and
nowhere else. Synthetic frames only (no model, no data folder); the end-to-end ``facealign
render`` on a real clip is in tests/batch/test_video_items.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from videotools import cut_written_videos_short  # noqa: E402

from facealign_cli.core.face import Face  # noqa: E402
from facealign_cli.io.video import (  # noqa: E402
    VideoReader,
    VideoWriteError,
    VideoWriter,
    count_frames,
    processed_fps,
    read_video_info,
)
from facealign_cli.render.video import VideoRenderer, track_labels  # noqa: E402


def _frame(i: int, h: int = 60, w: int = 80) -> np.ndarray:
    img = np.full((h, w, 3), 60, np.uint8)
    img[:, 4 * i:4 * i + 4] = 230  # a bar that moves: frame identity
    return img


def _read_all(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    cap.release()
    return frames


def test_writer_round_trips_frames_size_and_rate(tmp_path):
    path = tmp_path / "out.mp4"
    with VideoWriter(path, 12.5) as vw:
        for i in range(6):
            vw.write(_frame(i, 61, 83))  # odd sizes: rounded down to even
        vw.write(cv2.resize(_frame(6), (40, 30)))  # another size: resized to the first
    assert vw.frames == 7 and vw.size == (82, 60)
    info = read_video_info(path)
    assert (info.width, info.height, info.frame_count) == (82, 60, 7)
    assert info.fps == pytest.approx(12.5)
    frames = _read_all(path)
    assert len(frames) == 7
    for i, img in enumerate(frames[:6]):
        assert img.shape == (60, 82, 3)
        # MPEG-4 is lossy, but each frame is the one written (its bar where it was)
        assert np.abs(img.astype(int) - _frame(i, 61, 83)[:60, :82]).mean() < 6
        assert int(np.argmax(img[30, :, :].mean(axis=-1))) in range(4 * i, 4 * i + 4)


def test_writer_refuses_what_it_cannot_encode(tmp_path):
    with pytest.raises(ValueError, match="fps"):
        VideoWriter(tmp_path / "a.mp4", 0.0)
    vw = VideoWriter(tmp_path / "b.mp4", 25.0)
    with pytest.raises(VideoWriteError, match="too small"):
        vw.write(np.zeros((1, 1, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8 BGR"):
        vw.write(np.zeros((8, 8), np.uint8))
    vw.close()
    assert not (tmp_path / "b.mp4").exists()


@pytest.mark.parametrize(("suffix", "fourcc", "keep"), [(".mp4", "mp4v", 0.6),
                                                         (".avi", "MJPG", 0.8)])
def test_a_video_cut_short_on_disk_is_an_error(tmp_path, monkeypatch, suffix, fourcc, keep):
    """A full disk: OpenCV's encoder reports nothing, the file holds fewer frames (an MP4
    without its index: none) than were written; closing reads it back and says so."""
    path = tmp_path / f"v{suffix}"
    with VideoWriter(tmp_path / f"whole{suffix}", 25.0, fourcc=fourcc) as vw:
        for i in range(12):
            vw.write(_frame(i))
    assert count_frames(tmp_path / f"whole{suffix}") == 12  # intact, no error

    cut_written_videos_short(monkeypatch, keep)
    vw = VideoWriter(path, 25.0, fourcc=fourcc)
    for i in range(12):
        vw.write(_frame(i))
    with pytest.raises(VideoWriteError, match=r"12 frames were written but (\d+) can be read "
                                              r"back \(a short write") as err:
        vw.close()
    found = count_frames(path)
    assert f"but {found} can be read back" in str(err.value)
    assert found == 0 if suffix == ".mp4" else 0 < found < 12
    assert path.stat().st_size > 0  # the file is there, and not whole


@pytest.mark.parametrize(("step", "max_fps"), [(1, None), (3, None), (1, 12.5), (1, 10.0),
                                               (2, 5.0), (1, 100.0)])
def test_processed_fps_is_the_rate_of_the_delivered_frames(tmp_path_factory, step, max_fps):
    src = tmp_path_factory.getbasetemp() / "src25.avi"
    if not src.exists():
        vw = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (80, 60))
        for i in range(20):
            vw.write(_frame(i))
        vw.release()
    with VideoReader(src, frame_step=step, max_fps=max_fps) as r:
        times = [f.time for f in r]
    assert len(times) > 2
    assert processed_fps(25.0, step, max_fps) == pytest.approx(1 / np.diff(times).mean(),
                                                               rel=1e-3)


def test_processed_fps_of_an_unknown_source_rate():
    assert processed_fps(0.0) == 25.0
    assert processed_fps(0.0, 5) == 5.0
    assert processed_fps(float("nan"), 1, 2.0) == 2.0


def _face(box, track=None) -> Face:
    return Face(box=np.array(box, np.float32), score=0.87, track=track)


def test_track_ids_are_drawn_at_their_box_and_nowhere_else(tmp_path):
    img = np.full((120, 200, 3), 90, np.uint8)
    faces = [_face([20, 40, 70, 100], track=3), _face([120, 40, 170, 100])]
    assert track_labels(faces) == ["#3", None]
    for draw in (("box",), ("landmarks",)):
        vr = VideoRenderer(tmp_path / f"{draw[0]}.mp4", 25.0, draw)
        pic = vr.draw(img, faces)
        vr.close()
        changed = np.abs(pic.astype(int) - img).sum(axis=-1) > 0
        ys, xs = np.nonzero(changed)
        assert changed.any() and (pic.shape == img.shape)
        if draw == ("landmarks",):
            # no face was regressed: only the track id, just above the first box
            assert xs.min() >= 20 and xs.max() < 70 and ys.max() < 40 and ys.min() > 15
        else:
            assert changed[:, 110:].any()  # the untracked face still gets its box and score
            assert not changed[:, 75:115].any() and not changed[105:].any()
    # the label of a tracked face ("#3 0.87") is wider than the score alone ("0.87")
    vr = VideoRenderer(tmp_path / "z.mp4", 25.0, ("box",))
    tracked = vr.draw(img, faces[:1])[:38] != 90
    untracked = vr.draw(img, [_face([20, 40, 70, 100])])[:38] != 90
    assert np.nonzero(tracked.any(axis=(0, 2)))[0].max() > \
        np.nonzero(untracked.any(axis=(0, 2)))[0].max() + 5
    vr.close()


def test_renderer_writes_every_frame_and_keeps_the_first(tmp_path):
    path = tmp_path / "r.mp4"
    with VideoRenderer(path, 10.0, ("box",), keep_first=True) as vr:
        for i in range(5):
            img = _frame(i, 64, 96)
            faces = [_face([30, 10, 70, 50], track=0)] if i % 2 == 0 else []
            vr.write(vr.draw(img, faces))
    assert vr.frames == 5 and vr.size == (96, 64)
    assert vr.first is not None and vr.first.shape == (64, 96, 3)
    assert not np.array_equal(vr.first, _frame(0, 64, 96))  # annotated
    frames = _read_all(path)
    assert len(frames) == 5
    # frames without faces are written as they are; annotated ones differ at the box only
    for i, img in enumerate(frames):
        diff = np.abs(img.astype(int) - _frame(i, 64, 96)).max(axis=-1)
        if i % 2:
            assert diff.mean() < 6
        else:
            assert diff[10:51, 30:71].max() > 100 and np.median(diff[:, 75:]) < 10
