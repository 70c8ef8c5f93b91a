"""Video options on the command line without the model or the data folder: ``detect
--detect-every K`` (K > 1) is a usage error naming the option and the --frame-step hint,
before anything is read or written (detect has no landmarks to carry faces with); ``render``
takes videos (folders yield them) and refuses ``--out -``; render's video resume fingerprint
has no ``mesh_every`` and holds the codec its videos get."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cli_helpers import invoke

from facealign_cli.batch.manifest import read_manifest

cv2 = pytest.importorskip("cv2")


def _tiny_video(path: Path, n: int = 4) -> Path:
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (64, 48))
    assert vw.isOpened()
    for i in range(n):
        vw.write(np.full((48, 64, 3), 40 * i, np.uint8))
    vw.release()
    return path


def test_detect_every_is_refused_for_detect(tmp_path, fake_model):
    clip = _tiny_video(tmp_path / "clip.mp4")
    out = tmp_path / "out"
    r = invoke(["detect", clip, "--out", out, "--detect-every", "3"])
    assert r.exit_code == 2
    assert "--detect-every 3" in r.output and "--frame-step 3" in r.output
    assert not out.exists()  # refused before the output folder is made
    # on photos too (the option means nothing there for detect either)
    photo = tmp_path / "p.png"
    cv2.imwrite(str(photo), np.full((40, 40, 3), 90, np.uint8))
    assert invoke(["detect", photo, "--out", out, "--detect-every", "2"]).exit_code == 2
    assert invoke(["detect", photo, "--out", out, "--detect-every", "1"]).exit_code == 0


def test_run_batch_raises_an_option_error(tmp_path):
    from facealign_cli.batch.errors import BatchError, OptionError
    from facealign_cli.batch.options import RunOptions
    from facealign_cli.batch.runner import run_batch

    with pytest.raises(OptionError, match="--detect-every 4") as info:
        run_batch([], RunOptions.make(command="detect", out=str(tmp_path / "o"),
                                      detect_every=4))
    assert isinstance(info.value, BatchError) and isinstance(info.value, ValueError)
    assert not (tmp_path / "o").exists()


def test_render_takes_videos_and_refuses_stdout(tmp_path):
    from facealign_cli.batch.sources import VIDEO_COMMANDS
    from facealign_cli.io.inputs import collect_inputs

    assert "render" in VIDEO_COMMANDS
    _tiny_video(tmp_path / "v.mp4")
    names = [Path(it.path).name for it in collect_inputs([tmp_path], videos=True)]
    assert names == ["v.mp4"]
    r = invoke(["render", tmp_path / "v.mp4", "--out", "-"])
    assert r.exit_code == 2 and "give a folder to --out" in r.output


def test_render_video_fingerprint():
    from facealign_cli.batch.commands import get_command
    from facealign_cli.batch.options import RunOptions
    from facealign_cli.io.video_writer import default_codec

    opts = RunOptions.make(command="render", out="o", frame_step=2, smooth=True, detect_every=3)
    fp = get_command("render").video_fingerprint(opts)
    assert fp["video"] == {"frame_step": 2, "max_fps": None, "detect_every": 3, "smooth": True,
                           "codec": default_codec()}
    assert fp["draw"] == list(opts.command_options.draw)


def test_a_video_whose_frames_grow_past_the_declared_size_fails_with_its_record(
        tmp_path, fake_model):

    from cli_helpers import write_image
    from videotools import flat_gray_jpeg, mjpg_avi_bytes

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    small = cv2.imencode(".jpg", np.full((360, 480, 3), 90, np.uint8))[1].tobytes()
    big = flat_gray_jpeg(2000, 2000)
    (src / "a.avi").write_bytes(mjpg_avi_bytes([small, big, big, small], 480, 360))
    write_image(src / "b.jpg")
    r = invoke(["landmarks", src, "--out", out])
    assert r.exit_code == 1, r.output
    video, photo = iter(read_manifest(out / "manifest.jsonl"))
    assert video["status"] == "failed" and video["error"] == "VideoTooLargeError", video
    assert "frame 1 is 2000 x 2000, larger than the 480 x 360" in video["message"]
    assert video["outputs"] == [] and not (out / "a.jsonl").exists()
    assert photo["status"] == "ok"


def test_a_video_that_loses_frames_is_ok_with_the_count_and_a_warning(tmp_path, fake_model):
    """Issue 24: a video whose corrupt middle lost a frame was ``ok`` with no word of it.
    Now every decodable frame is processed, and the manifest line (``video.frames_lost``,
    the message), the done record and a warning say how many frames were lost."""
    import json

    from videotools import corrupt_mjpg_frame, drop_mjpg_chunk, write_bar_clip

    src = tmp_path / "in"
    src.mkdir()
    corrupt_mjpg_frame(write_bar_clip(src / "a_mid.avi", 12), 5)
    drop_mjpg_chunk(write_bar_clip(src / "b_gap.avi", 12), 5)
    write_bar_clip(src / "c_whole.avi", 12)
    out = tmp_path / "out"
    r = invoke(["landmarks", src, "--out", out])
    assert r.exit_code == 0, r.output
    lines = read_manifest(out / "manifest.jsonl")
    mid, gap, whole = lines
    for line in (mid, gap):
        assert line["status"] == "ok" and line["video"]["frames_lost"] == 1
        assert line["video"]["frames"] == 11 and line["video"]["complete"] is True
        assert "1 of 12 declared frames lost" in line["message"]
        assert sum(1 for _ in (out / f"{Path(line['path']).stem}.jsonl").open()) == 11
    frames = [json.loads(s)["frame"] for s in (out / "a_mid.jsonl").read_text().splitlines()]
    assert frames == [i for i in range(12) if i != 5]  # the lost frame keeps its index
    assert whole["video"]["frames_lost"] == 0 and whole["message"] is None
    warnings = [ln for ln in r.stderr.splitlines() if "frames lost" in ln]
    assert len(warnings) == 2 and all(ln.startswith("facealign: warning: ") for ln in warnings)
    assert "a_mid.avi" in warnings[0] and "b_gap.avi" in warnings[1]
    r = invoke(["landmarks", src, "--out", out])  # resumed: done, not warned again
    assert r.exit_code == 0 and "frames lost" not in r.stderr


def _two_shot_video(path, n: int = 5):
    from videotools import shot_frames

    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (320, 240))
    assert vw.isOpened()
    for img in shot_frames((200, 120, 40), n, 0) + shot_frames((40, 90, 210), n, 1):
        vw.write(img)
    vw.release()
    return path


@pytest.mark.parametrize("command", ["detect", "landmarks"])
def test_a_two_shot_video_has_new_track_ids_after_the_cut(fake_model, tmp_path, command):
    """Issue 24: track ids carried across a hard cut to another person (here the fake model's
    faces stand in the same places in both shots)."""
    import json

    clip = _two_shot_video(tmp_path / "clip.avi")
    out = tmp_path / "o"
    r = invoke([command, clip, "--out", out])
    assert r.exit_code == 0, r.output
    lines = [json.loads(s) for s in (out / "clip.jsonl").read_text().splitlines()]
    tracks = [sorted(f["track"] for f in ln["faces"]) for ln in lines]
    assert tracks == [[0, 1]] * 5 + [[2, 3]] * 5  # the fake's two faces, in each shot
    (m,) = read_manifest(out / "manifest.jsonl")
    assert m["n_faces"] == 4
