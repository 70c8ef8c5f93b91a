"""The codec of ``render``'s videos on the command line (the fake model, a synthetic clip): H.264
where PyAV's encoder is installed, said in the manifest line (``video.codec``), the settings
file and the contact sheet, whose card embeds the video in a ``<video>`` element; without PyAV
the mp4v fallback with a warning, said the same way, and a later run with PyAV back re-renders
the video in H.264 (the codec is part of a video's resume fingerprint, not of a photo's)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import invoke, write_image

from facealign_cli.batch.manifest import read_manifest

cv2 = pytest.importorskip("cv2")

from videotools import hide_pyav, video_codec, write_bar_clip  # noqa: E402

from facealign_cli.io.video_writer import h264_unavailable  # noqa: E402

N = 6


def _run(src: Path, out: Path) -> tuple[dict, dict, str, str]:
    """``render SRC --out OUT --sheet``: the video's manifest line, the photo's, the settings
    file's ``settings`` and the sheet's HTML."""
    r = invoke(["render", src, "--out", out, "--sheet"])
    assert r.exit_code == 0, r.output
    lines = {Path(d["path"]).name: d
             for d in read_manifest(out / "manifest.jsonl")}
    settings = json.loads((out / ".facealign/settings/render.json").read_text())["settings"]
    return lines["clip.mp4"], lines["photo.jpg"], settings, (out / "index.html").read_text()


@pytest.fixture()
def src(tmp_path) -> Path:
    d = tmp_path / "in"
    d.mkdir()
    write_bar_clip(d / "clip.mp4", N, 80, 60, fourcc="mp4v")
    write_image(d / "photo.jpg")
    return d


def test_without_pyav_mp4v_is_said_and_h264_replaces_it_once_installed(src, tmp_path,
                                                                       fake_model, monkeypatch):
    out = tmp_path / "out"
    with monkeypatch.context() as m:
        hide_pyav(m)
        with pytest.warns(RuntimeWarning, match="which web browsers do not play; for H.264: "
                                                "pip install av"):
            video, photo, settings, page = _run(src, out)
    assert video["status"] == "ok" and video["video"]["codec"] == "mp4v"
    assert video["outputs"] == ["clip.mp4", ".thumbs/clip.jpg"]
    assert settings["video"]["codec"] == "mp4v"
    assert cv2.VideoCapture(str(out / "clip.mp4")).get(cv2.CAP_PROP_FOURCC) == \
        cv2.VideoWriter_fourcc(*"FMP4")  # MPEG-4 Part 2, OpenCV's name
    assert f"video: {N} frames" in page and "MPEG-4 Part 2 (mp4v): browsers do not play it" \
        in page
    assert '<video src="clip.mp4" poster=".thumbs/clip.jpg"' in page

    if h264_unavailable():
        pytest.skip(f"no H.264 encoder here: {h264_unavailable()}")
    video, photo, settings, page = _run(src, out)
    assert photo["status"] == "skipped"  # the photo's outputs do not depend on the codec
    assert video["status"] == "ok" and video["video"]["codec"] == "h264"  # redone
    assert settings["video"]["codec"] == "h264"
    assert video_codec(out / "clip.mp4") == ("h264", "yuv420p")
    assert f"video: {N} frames, {video['n_faces']} face track(s), H.264; the first" in page
    assert "browsers do not play" not in page
    assert page.count("<video ") == 1 and 'href="photo.jpg"' in page
