"""Streaming video frames (facealign_cli.io.video): indices, time stamps, subsampling, and the
record of a truncated or unreadable video. The test videos are written here with
cv2.VideoWriter (MJPG in .avi, mp4v in .mp4); frame i carries a white bar at x = 8 i so that
every delivered frame can be identified."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from videotools import corrupt_mjpg_frame, count_decoded_frames, drop_mjpg_chunk

from facealign_cli.io.video import (
    VIDEO_EXTENSIONS,
    VideoOpenError,
    VideoReader,
    VideoTooLargeError,
    is_video_path,
    read_video_info,
)

W, H, N, FPS = 320, 240, 20, 25.0


def bar_x(img: np.ndarray) -> int:
    """Column of the white bar (frame identity)."""
    return int(np.argmax(img[H // 2, :, :].mean(axis=-1)))


def write_video(path: Path, fourcc: str, n: int = N, fps: float = FPS) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (W, H))
    assert w.isOpened(), f"no {fourcc} encoder"
    for i in range(n):
        img = np.full((H, W, 3), 40, np.uint8)
        img[:, 8 * i + 2:8 * i + 6] = 255
        w.write(img)
    w.release()
    return path


@pytest.fixture(scope="module")
def avi(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("v") / "clip.avi", "MJPG")


@pytest.fixture(scope="module")
def mp4(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("v") / "clip.mp4", "mp4v")


def test_extensions():
    assert VIDEO_EXTENSIONS == {".mp4", ".avi", ".mov", ".mkv", ".webm"}
    assert is_video_path("a/B.MP4") and is_video_path("x.webm") and not is_video_path("x.jpg")


@pytest.mark.parametrize("which", ["avi", "mp4"])
def test_every_frame_with_index_and_time(which, request):
    path = request.getfixturevalue(which)
    info = read_video_info(path)
    assert (info.width, info.height, info.fps, info.frame_count) == (W, H, FPS, N)
    r = VideoReader(path)
    frames = list(r)
    assert [f.index for f in frames] == list(range(N))
    np.testing.assert_allclose([f.time for f in frames], np.arange(N) / FPS, atol=1e-6)
    assert all(f.image.shape == (H, W, 3) and f.image.dtype == np.uint8 for f in frames)
    assert [bar_x(f.image) for f in frames] == pytest.approx([8 * i + 3.5 for i in range(N)],
                                                             abs=2)
    st = r.status
    assert st.complete and st.finished and st.error is None
    assert (st.frames_decoded, st.frames_delivered, st.frames_declared, st.last_index) == (
        N, N, N, N - 1)


def test_frame_step_and_max_fps(avi):
    assert [f.index for f in VideoReader(avi, frame_step=3)] == list(range(0, N, 3))
    # 25 fps source, at most 12.5 fps: every second frame
    assert [f.index for f in VideoReader(avi, max_fps=12.5)] == list(range(0, N, 2))
    assert [f.index for f in VideoReader(avi, max_fps=5)] == list(range(0, N, 5))
    # both: every 2nd frame, then at most 5 per second -> 0, 6, 12, 18 (>= 0.2 s apart)
    r = VideoReader(avi, frame_step=2, max_fps=5)
    got = list(r)
    assert [f.index for f in got] == [0, 6, 12, 18]
    assert [bar_x(f.image) // 8 for f in got] == [0, 6, 12, 18]
    assert r.status.frames_decoded == N and r.status.frames_delivered == 4
    with pytest.raises(ValueError):
        VideoReader(avi, frame_step=0)
    with pytest.raises(ValueError):
        VideoReader(avi, max_fps=0)


def test_streams_lazily_and_restarts(avi):
    r = VideoReader(avi)
    it = iter(r)
    first = next(it)
    second = next(it)
    assert (first.index, second.index) == (0, 1)
    assert r.status.frames_delivered == 2 and not r.status.finished
    it.close()
    # a new iteration starts at the beginning again
    assert [f.index for f in r][:3] == [0, 1, 2]
    with VideoReader(avi, max_frames=4) as r2:
        assert len(list(r2)) == 4


def test_truncated_avi_is_recorded_with_its_frame_count(avi, tmp_path):
    data = avi.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[:int(len(data) * 0.6)])
    r = VideoReader(cut)
    frames = list(r)
    st = r.status
    assert 0 < len(frames) < N
    assert not st.complete and st.finished
    assert st.frames_delivered == len(frames) and st.frames_declared == N
    assert f"{st.frames_decoded} of {N} declared frames" in st.error
    assert f"{len(frames)} frames delivered" in st.error
    rec = st.as_record()
    assert rec["complete"] is False and rec["frames_delivered"] == len(frames)
    # frames delivered before the cut are intact
    assert [bar_x(f.image) // 8 for f in frames[:-1]] == list(range(len(frames) - 1))


def test_truncated_mp4_and_non_videos_cannot_be_opened(mp4, tmp_path):
    data = mp4.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[:len(data) // 2])  # OpenCV's mp4 writer puts the index at the end
    with pytest.raises(VideoOpenError, match="0 frames delivered"):
        VideoReader(cut)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    with pytest.raises(VideoOpenError):
        VideoReader(junk)
    with pytest.raises(VideoOpenError, match="no such file"):
        VideoReader(tmp_path / "missing.avi")


def test_frames_over_the_pixel_limit_are_refused_before_any_is_decoded(avi, monkeypatch):
    decoded = count_decoded_frames(monkeypatch)
    with pytest.raises(VideoTooLargeError, match=r"clip.avi: its frames are 320 x 240 = "
                                                 r"0\.0768 megapixels, over the 0\.05 "
                                                 r"megapixel limit \(--max-megapixels\)"):
        VideoReader(avi, max_pixels=50_000)
    assert decoded.grabs == 0
    assert read_video_info(avi).width == W  # the container's info is no decoding
    with VideoReader(avi, max_pixels=W * H) as r:  # at the limit: every frame
        assert len(list(r)) == N
    assert decoded.grabs == N + 1  # N frames and the end of the stream


def test_the_default_pixel_limit_is_the_photos(avi, monkeypatch):
    from facealign_cli.io import images

    monkeypatch.setattr(images, "DEFAULT_MAX_PIXELS", W * H - 1)
    with pytest.raises(VideoTooLargeError, match="0.0768 megapixels"):
        VideoReader(avi)


def test_a_frame_larger_than_declared_is_refused_when_decoded(avi, monkeypatch):
    count_decoded_frames(monkeypatch, declared=(32, 24))  # the container lies
    r = VideoReader(avi, max_pixels=10_000)
    assert (r.info.width, r.info.height) == (32, 24)
    with pytest.raises(VideoTooLargeError, match="frame 0 is 320 x 240"):
        next(iter(r))


def test_mjpg_frames_growing_past_the_declared_size_fail_before_decoding(tmp_path,
                                                                         monkeypatch):
    # an AVI declaring 480 x 360 whose frames 1 and 2 are 2000 x 2000 JPEGs: OpenCV would
    # decode them whole and return them squashed into 480 x 360
    from videotools import flat_gray_jpeg, mjpg_avi_bytes

    small = cv2.imencode(".jpg", np.full((360, 480, 3), 90, np.uint8))[1].tobytes()
    big = flat_gray_jpeg(2000, 2000)
    p = tmp_path / "grow.avi"
    p.write_bytes(mjpg_avi_bytes([small, big, big, small], 480, 360))
    cap = cv2.VideoCapture(str(p), cv2.CAP_FFMPEG)
    shapes = []
    while cap.grab():
        shapes.append(cap.retrieve()[1].shape)
    cap.release()
    assert shapes == [(360, 480, 3)] * 4  # the premise: OpenCV alone sees nothing wrong
    decoded = count_decoded_frames(monkeypatch)
    with pytest.raises(VideoTooLargeError, match=r"grow.avi: frame 1 is 2000 x 2000, larger "
                                                 r"than the 480 x 360 its container declares"):
        list(VideoReader(p))
    assert decoded.grabs == 0  # refused from the packets: no frame decoded
    p.write_bytes(mjpg_avi_bytes([small] * 3, 480, 360))
    with VideoReader(p) as r:  # frames of the declared size: read as before
        assert [f.image.shape for f in r] == [(360, 480, 3)] * 3 and r.status.complete


def test_an_undecodable_frame_in_the_middle_is_skipped_and_counted(tmp_path):
    """Issue 24: a corrupt frame in the middle once ended the stream there (the video then
    failed as truncated, its good later frames lost) or, within the slack, passed unnoticed.
    Now the frame is skipped, its index kept free, and counted as lost."""
    clip = corrupt_mjpg_frame(write_video(tmp_path / "mid.avi", "MJPG"), 10)
    r = VideoReader(clip)
    frames = [(f.index, bar_x(f.image)) for f in r]
    assert [i for i, _ in frames] == [i for i in range(N) if i != 10]
    assert all(abs(x - (8 * i + 2)) <= 4 for i, x in frames)  # each frame is the one named
    st = r.status
    assert st.complete and st.error is None
    assert (st.frames_decoded, st.frames_undecodable, st.frames_lost) == (N - 1, 1, 1)
    good = VideoReader(write_video(tmp_path / "good.avi", "MJPG"))
    assert len(list(good)) == N and good.status.frames_lost == 0


def test_a_frame_missing_from_the_stream_is_counted_as_lost(tmp_path):
    """A chunk the demuxer drops: the stream holds one frame fewer than declared (within the
    slack, so not truncated); the shortfall is the video's lost frame, not silence."""
    clip = drop_mjpg_chunk(write_video(tmp_path / "gap.avi", "MJPG"), 10)
    r = VideoReader(clip)
    assert len(list(r)) == N - 1
    st = r.status
    assert st.complete and (st.frames_declared, st.frames_undecodable, st.frames_lost) == (
        N, 0, 1)
