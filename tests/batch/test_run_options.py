"""``RunOptions`` checks itself when it is made: every invalid value, or combination of
values, raises an ``OptionError`` (a ``ValueError``) naming the command-line flag at fault,
before anything is read or written; the command line shows it as a usage error (exit 2)."""

from __future__ import annotations

import dataclasses

import pytest

from facealign_cli.batch.commands.render import RenderOptions
from facealign_cli.batch.errors import BatchError, OptionError
from facealign_cli.batch.options import RunOptions
from facealign_cli.core.settings import AlignerSettings, SettingError, VideoSettings

nan, inf = float("nan"), float("inf")

# (flag named, RunOptions keywords)
BAD = [
    ("COMMAND", dict(command="nope")),
    ("--out", dict(out="")),
    ("--out", dict(out="  ")),
    ("--out", dict(out="a\0b")),
    ("--out", dict(command="mesh", out="-")),
    ("--out", dict(command="render", out="-")),
    ("--format", dict(command="mesh", format="stl")),
    ("--mesh-frame", dict(command="mesh", frame="sideways")),
    ("--texture", dict(command="mesh", format="ply", texture=True)),
    ("--draw", dict(command="render", draw=())),
    ("--draw", dict(command="render", draw=("box", "halo"))),
    ("--jobs", dict(jobs=-1)),
    ("--threads", dict(threads=-2)),
    ("--max-faces", dict(max_faces=-1)),
    ("--frame-step", dict(frame_step=0)),
    ("--detect-every", dict(detect_every=0)),
    ("--mesh-every", dict(command="mesh", every=0)),
    ("--max-faces", dict(max_faces=1.5)),
    ("--max-faces", dict(max_faces=True)),
    ("--flip", dict(flip="no")),
    ("--weights", dict(weights="")),
    ("--max-megapixels", dict(max_pixels=0)),
    ("--max-megapixels", dict(max_pixels=10**308)),  # issue 24: once an OverflowError
    ("--min-score", dict(min_score=1.5)),
    ("--min-score", dict(min_score=-0.1)),
    ("--min-score", dict(min_score=nan)),
    ("--min-quality", dict(min_quality=nan)),
    ("--min-quality", dict(min_quality=2.0)),
    ("--roi-crop-scale", dict(roi_crop_scale=0.0)),
    ("--roi-crop-scale", dict(roi_crop_scale=inf)),
    ("--roi-crop-scale", dict(roi_crop_scale=100.0)),
    ("--roi-crop-scale", dict(roi_crop_scale=0.49)),
    ("FACEALIGN_DASK_TIMEOUT", dict(dask_timeout=1e308)),
    ("FACEALIGN_DASK_TIMEOUT", dict(dask_timeout=nan)),
    ("FACEALIGN_DASK_TIMEOUT", dict(dask_timeout=0.0)),
    ("--max-fps", dict(max_fps=nan)),
    ("--max-fps", dict(max_fps=0.0)),
    ("--max-fps", dict(max_fps=inf)),
    ("--backend", dict(backend="ray")),
    ("--scheduler", dict(backend="dask")),
    ("--scheduler", dict(scheduler="tcp://h:8786")),
    ("--runtime", dict(runtime="tensorrt")),
    ("progress", dict(progress="sometimes")),
    ("--quiet", dict(quiet=True, verbose=1)),
    ("--detect-every", dict(command="detect", detect_every=3)),
]


@pytest.mark.parametrize("flag,kw", BAD, ids=[f"{f}:{sorted(k.items())}" for f, k in BAD])
def test_each_bad_value_is_an_option_error_naming_its_flag(flag, kw):
    kw = {"command": "landmarks", "out": "o", **kw}
    with pytest.raises(OptionError) as info:
        RunOptions.make(**kw)
    err = info.value
    assert err.flag == flag and str(err).startswith(flag)
    assert isinstance(err, ValueError) and isinstance(err, BatchError)  # old callers
    assert err.exit_code == 2


def test_good_values_pass_and_replace_checks_again():
    good = RunOptions.make(command="mesh", out="o", format="glb", texture=True, jobs=0,
                           min_score=0.0, min_quality=1.0, max_fps=12.5, backend="dask",
                           scheduler="tcp://h:8786", dask_timeout=3600.0, detect_every=4,
                           verbose=2, runtime="torch", progress="never", every=5)
    assert good.cmd.name == "mesh"
    assert (good.aligner.min_score, good.aligner.runtime, good.video.detect_every,
            good.command_options.format, good.command_options.every) == (0.0, "torch", 4,
                                                                         "glb", 5)
    with pytest.raises(OptionError, match="^--jobs"):
        dataclasses.replace(good, jobs=-1)
    with pytest.raises(SettingError, match="^min_score"):
        dataclasses.replace(good.aligner, min_score=nan)
    with pytest.raises(OptionError, match="^command_options"):  # another command's options
        dataclasses.replace(good, command="render")


def test_settings_are_routed_to_their_group_by_name():
    """``make`` sorts flat settings into the groups by field name; a setting of another
    command is no setting of this one."""
    o = RunOptions.make("render", "o", draw=("mesh", "box", "mesh"), sheet=True, flip=False,
                        smooth=True, quiet=True)
    assert o.command_options == RenderOptions(draw=("mesh", "box"), sheet=True)
    assert o.aligner == AlignerSettings(flip=False) and o.video == VideoSettings(smooth=True)
    assert o.quiet and RunOptions("render", "o", aligner=o.aligner).command_options == \
        RenderOptions()
    with pytest.raises(TypeError):
        RunOptions.make("landmarks", "o", texture=True)
    with pytest.raises(OptionError, match="^aligner"):
        RunOptions("landmarks", "o", aligner={"flip": False})


def test_the_message_names_the_flag_once():
    with pytest.raises(OptionError) as info:
        RunOptions.make(command="detect", out="o", detect_every=4)
    assert str(info.value).startswith("--detect-every 4: detect runs the detector")
    with pytest.raises(OptionError) as info:
        RunOptions.make(command="landmarks", out="o", min_score=2.0)
    assert str(info.value) == "--min-score: must lie in [0, 1], got 2.0"


def test_render_layers_are_the_overlays():
    """``render``'s choices (light, for ``--help``) are the layers the overlay draws."""
    from facealign_cli.batch.commands import render
    from facealign_cli.render import overlay

    assert (render.DRAW_CHOICES, render.DEFAULT_DRAW) == (overlay.DRAW_CHOICES,
                                                          overlay.DEFAULT_DRAW)
