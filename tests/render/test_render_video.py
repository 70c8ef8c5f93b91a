"""Writing annotated videos (facealign_cli.io.video_writer.VideoWriter, processed_fps;
facealign_cli.render.video.VideoRenderer): frames encoded one at a time (H.264 through PyAV, and
the mp4v fallback through OpenCV) round-trip through cv2.VideoCapture with their count, size
and rate; the default is H.264 yuv420p with the index first (PyAV's probe, the MP4 boxes), and
without PyAV it is mp4v with a warning; a file cut short on disk is an error for both; the rate
of the processed frames matches what VideoReader delivers; track ids are drawn at their box
(also without the box layer) and nowhere else. Synthetic frames only (no model, no data
folder); the end-to-end ``facealign render`` on a real clip is in
tests/batch/test_video_items.py."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from videotools import (  # noqa: E402
    cut_written_videos_short,
    hide_pyav,
    mp4_boxes,
    video_codec,
)

from facealign_cli.core.face import Face  # noqa: E402
from facealign_cli.io import video_writer  # noqa: E402
from facealign_cli.io.video import VideoReader, count_frames, read_video_info  # noqa: E402
from facealign_cli.io.video_writer import (  # noqa: E402
    VideoWriteError,
    VideoWriter,
    processed_fps,
)
from facealign_cli.render.video import VideoRenderer, track_labels  # noqa: E402

#: H.264 needs PyAV with libx264 (the [video] extra, in [test]); without it these skip.
needs_h264 = pytest.mark.skipif(video_writer.h264_unavailable() is not None,
                                reason=f"no H.264 encoder: {video_writer.h264_unavailable()}")


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


@pytest.mark.parametrize("codec", [pytest.param("h264", marks=needs_h264), "mp4v"])
def test_writer_round_trips_frames_size_and_rate(tmp_path, codec):
    path = tmp_path / "out.mp4"
    with VideoWriter(path, 12.5, codec=codec) as vw:
        for i in range(6):
            vw.write(_frame(i, 61, 83))  # odd sizes: rounded down to even
        vw.write(cv2.resize(_frame(6), (40, 30)))  # another size: resized to the first
    assert vw.frames == 7 and vw.size == (82, 60) and vw.codec == codec
    info = read_video_info(path)
    assert (info.width, info.height, info.frame_count) == (82, 60, 7)
    assert info.fps == pytest.approx(12.5)
    frames = _read_all(path)
    assert len(frames) == 7
    for i, img in enumerate(frames[:6]):
        assert img.shape == (60, 82, 3)
        # both codecs are lossy, but each frame is the one written (its bar where it was)
        assert np.abs(img.astype(int) - _frame(i, 61, 83)[:60, :82]).mean() < 6
        assert int(np.argmax(img[30, :, :].mean(axis=-1))) in range(4 * i, 4 * i + 4)


@needs_h264
def test_the_default_is_h264_yuv420p_with_its_index_first(tmp_path):
    """What browsers play: H.264 in 4:2:0, the ``moov`` index before the frames (faststart),
    tagged BT.601 limited range as converted; no warning."""
    import av

    path = tmp_path / "web.mp4"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with VideoWriter(path, 25.0) as vw:
            for i in range(30):
                vw.write(_frame(i, 48, 64))
    assert vw.codec == "h264" and vw.fallback is None
    assert video_codec(path) == ("h264", "yuv420p")
    boxes = mp4_boxes(path)
    assert boxes[0] == "ftyp" and boxes.index("moov") < boxes.index("mdat")
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        assert (s.codec_context.colorspace, s.codec_context.color_range) == (6, 1)
        assert s.average_rate == 25 and s.frames == 30
        y = next(c.decode(video=0)).to_ndarray(format="yuv420p")[:48]
    # the bar (grey 230) and the background (60) at 16 + 219 v / 255: limited range
    assert abs(int(y[10, 1]) - 213.5) < 5 and abs(int(y[10, 30]) - 67.5) < 3
    assert count_frames(path) == 30  # and OpenCV decodes it


def test_without_pyav_the_writer_falls_back_to_mp4v_and_says_so(tmp_path, monkeypatch):
    """PyAV missing: the default is MPEG-4 Part 2 through OpenCV, with a warning naming what
    to install; asking for H.264 explicitly is an error, not a silent fallback."""
    hide_pyav(monkeypatch)
    assert video_writer.default_codec() == "mp4v"
    path = tmp_path / "old.mp4"
    with pytest.warns(RuntimeWarning, match=r"PyAV .* not installed: .*MPEG-4 Part 2 "
                                            r"\('mp4v'\), which web browsers do not play; "
                                            r"for H.264: pip install av"):
        vw = VideoWriter(path, 25.0)
    assert vw.codec == "mp4v" and "not installed" in vw.fallback
    for i in range(5):
        vw.write(_frame(i))
    vw.close()
    # OpenCV's FFmpeg names MPEG-4 Part 2 "FMP4"
    assert read_video_info(path).fourcc == "FMP4" and count_frames(path) == 5
    with pytest.raises(VideoWriteError, match="cannot write H.264: PyAV .* not installed"):
        VideoWriter(tmp_path / "h.mp4", 25.0, codec="h264")
    monkeypatch.undo()
    if video_writer.h264_unavailable() is None:  # PyAV is back: it reads MPEG-4 Part 2
        assert video_codec(path) == ("mpeg4", "yuv420p")


def test_a_pyav_without_libx264_is_no_h264_encoder(monkeypatch):
    av = pytest.importorskip("av")

    def no_codec(name, mode="r"):
        raise av.codec.codec.UnknownCodecError(name)

    monkeypatch.setattr(av.codec, "Codec", no_codec)
    hide = video_writer.h264_unavailable.__wrapped__
    assert "has no libx264 encoder" in hide()


@needs_h264
def test_an_encoder_error_is_a_video_write_error(tmp_path):
    vw = VideoWriter(tmp_path / "no" / "such" / "folder.mp4", 25.0, codec="h264")
    with pytest.raises(VideoWriteError, match="the h264 encoder failed to open"):
        vw.write(_frame(0))


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


@pytest.mark.parametrize(("suffix", "codec", "keep"), [
    pytest.param(".mp4", "h264", 0.6, marks=needs_h264), (".mp4", "mp4v", 0.6),
    (".avi", "MJPG", 0.8)])
def test_a_video_cut_short_on_disk_is_an_error(tmp_path, monkeypatch, suffix, codec, keep):
    """A full disk that the encoder does not report: the file holds fewer frames than were
    written (an MP4 cut at 60 %: none, its index is lost; with faststart, which puts the index
    first, the frames after the cut); closing reads it back and says so."""
    path = tmp_path / f"v{suffix}"
    with VideoWriter(tmp_path / f"whole{suffix}", 25.0, codec=codec) as vw:
        for i in range(12):
            vw.write(_frame(i))
    assert count_frames(tmp_path / f"whole{suffix}") == 12  # intact, no error

    cut_written_videos_short(monkeypatch, keep)
    vw = VideoWriter(path, 25.0, codec=codec)
    for i in range(12):
        vw.write(_frame(i))
    with pytest.raises(VideoWriteError, match=r"12 frames were written but (\d+) can be read "
                                              r"back \(a short write") as err:
        vw.close()
    found = count_frames(path)
    assert f"but {found} can be read back" in str(err.value)
    assert found == 0 if codec == "mp4v" else found < 12
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
