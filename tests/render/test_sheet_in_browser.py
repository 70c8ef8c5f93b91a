"""The contact sheet's videos in a real browser (headless Chromium, driven by
scripts/check_sheet_browser.py's ``check_page``; skipped where Chromium is not installed): the
H.264 video ``VideoWriter`` writes by default plays (time advances, its picture has the written
size, the screenshot shows the frame reached in the colours written), the mp4v fallback does not
(a media error: what the fallback's warning and the sheet's note say). Synthetic frames and the
real writer and sheet; no model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from facealign_cli.io import video_writer
from facealign_cli.io.video_writer import VideoWriter
from facealign_cli.render.sheet import codec_note, write_sheet

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_sheet_browser.py"


def _script():
    spec = importlib.util.spec_from_file_location("check_sheet_browser", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(video_writer.h264_unavailable() is not None,
                    reason=f"no H.264 encoder: {video_writer.h264_unavailable()}")
def test_h264_videos_play_in_chromium_and_mp4v_ones_do_not(tmp_path):
    check = _script()
    exe = check.find_chromium()
    if exe is None:
        pytest.skip("no Chromium (apt-get install chromium)")
    entries = []
    for codec in ("h264", "mp4v"):
        with VideoWriter(tmp_path / f"{codec}.mp4", 10.0, codec=codec) as vw:
            for i in range(20):  # 2 s: a bar that moves over a gradient
                img = np.tile(np.linspace(30, 200, 160, dtype=np.uint8)[None, :, None],
                              (96, 1, 3))
                img[:, 6 * i:6 * i + 6] = (40, 40, 230)
                vw.write(img)
        entries.append({"path": f"{codec}.mp4", "overlay": f"{codec}.mp4", "video": True,
                        "note": "video" + codec_note(codec)})
    write_sheet(tmp_path, entries)
    shot = tmp_path / "sheet.png"
    h264, mp4v = check.check_page(tmp_path / "index.html", shot, exe)
    assert h264["src"] == "h264.mp4" and h264["plays"], h264
    assert (h264["videoWidth"], h264["videoHeight"]) == (160, 96)
    assert h264["duration"] == pytest.approx(2.0, abs=0.15) and h264["readyState"] >= 2
    assert mp4v["src"] == "mp4v.mp4" and not mp4v["plays"]
    assert mp4v["error"] is not None and mp4v["videoWidth"] == 0, mp4v
    # the screenshot shows the frame reached, in the colours written (BGR -> BT.601 limited
    # range -> the browser's RGB): the grey ramp and the red bar where frame i has it
    import cv2

    x, y, w, h = (round(v) for v in h264["box"])
    assert (w, h) == (160, 96)
    pic = cv2.imread(str(shot))[y:y + h, x:x + w].astype(int)
    ramp = np.linspace(30, 200, 160)
    for col in (5, 60, 100, 150):
        if not 6 * 4 <= col < 6 * 15:  # away from the bar (frames 4-14 are the ones reached)
            assert np.abs(pic[h // 2, col] - ramp[col]).max() < 8, (col, pic[h // 2, col])
    red = (pic[..., 2] > 180) & (pic[..., 1] < 80) & (pic[..., 0] < 80)
    assert 6 * h * 0.8 < red.sum() < 6 * h * 1.5  # one bar, 6 px wide
    assert np.abs(np.median(pic[red], axis=0) - (40, 40, 230)).max() < 10
    bar = int(np.median(np.nonzero(red)[1])) // 6  # the frame shown
    assert 4 <= bar <= 14 and bar == pytest.approx(h264["currentTime"] * 10, abs=2)
