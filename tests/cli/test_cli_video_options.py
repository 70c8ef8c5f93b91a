"""Video options on the command line without the model or the data folder: ``detect
--detect-every K`` (K > 1) is a usage error naming the option and the --frame-step hint,
before anything is read or written (detect has no landmarks to carry faces with); ``render``
takes videos (folders yield them) and refuses ``--out -``; render's video resume fingerprint
has no ``mesh_every``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cli_helpers import invoke

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
    from facealign_cli.batch.options import BatchError, OptionError, RunOptions
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

    opts = RunOptions.make(command="render", out="o", frame_step=2, smooth=True, detect_every=3)
    fp = get_command("render").video_fingerprint(opts)
    assert fp["video"] == {"frame_step": 2, "max_fps": None, "detect_every": 3, "smooth": True}
    assert fp["draw"] == list(opts.command_options.draw)
