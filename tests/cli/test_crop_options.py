"""``--roi-crop-scale`` and ``--second-pass/--no-second-pass`` of the image commands (issue 18):
the help's default is the constant, the options reach the pipeline, change the outputs and the
resume fingerprint, and are recorded with the run's settings."""

from __future__ import annotations

import json

import numpy as np
from cli_helpers import invoke

from facealign_cli.batch import options as batch_options
from facealign_cli.batch.manifest import read_manifest
from facealign_cli.batch.worker import build_aligner
from facealign_cli.core import geometry as G


def _manifest(out):
    return read_manifest(out / "manifest.jsonl")


def test_help_states_the_constant():
    r = invoke(["landmarks", "--help"])
    assert f"[default: {G.ROI_CROP_SCALE:g}," in " ".join(r.output.split())
    assert batch_options.RunOptions.make("landmarks", "o").aligner.roi_crop_scale == \
        G.ROI_CROP_SCALE
    assert batch_options.RunOptions.make("landmarks", "o").aligner.second_pass is True


def test_options_reach_the_aligner(real_weights):
    opts = batch_options.RunOptions.make("landmarks", "o", weights=str(real_weights),
                                         roi_crop_scale=0.9, second_pass=False)
    al = build_aligner(opts, 1)
    assert (al.roi_crop_scale, al.second_pass, al.flip) == (0.9, False, True)
    assert al.settings is opts.aligner  # the run's settings, as they are
    opts = batch_options.RunOptions.make("landmarks", "o", weights=str(real_weights))
    al = build_aligner(opts, 1)
    assert (al.roi_crop_scale, al.second_pass) == (G.ROI_CROP_SCALE, True)


def test_standard_crop_outputs_fingerprint_and_settings(afw_photos, real_weights, tmp_path):
    env = {"FACEALIGN_WEIGHTS": str(real_weights)}
    out = tmp_path / "lm"
    photo = afw_photos[0]
    assert invoke(["landmarks", photo, "--out", out], env=env).exit_code == 0
    default = json.loads((out / f"{photo.stem}.json").read_text())["faces"]
    settings = json.loads((out / ".facealign/settings/landmarks.json").read_text())["settings"]
    assert settings["roi_crop_scale"] == G.ROI_CROP_SCALE and settings["second_pass"] is True
    # other crop settings: redone, not skipped as done
    r = invoke(["landmarks", photo, "--out", out, "--roi-crop-scale", "1", "--no-second-pass"],
               env=env)
    assert r.exit_code == 0 and _manifest(out)[0]["status"] == "ok"
    std = json.loads((out / f"{photo.stem}.json").read_text())["faces"]
    settings = json.loads((out / ".facealign/settings/landmarks.json").read_text())["settings"]
    assert settings["roi_crop_scale"] == 1.0 and settings["second_pass"] is False
    assert len(std) == len(default) >= 1
    for d, s in zip(default, std):
        # the standard crop is the detector roi rule as is (records round to 0.01 px)
        want = G.roi_box_from_detector_box(np.asarray(s["box"]))
        np.testing.assert_allclose(s["roi_box"], want, atol=0.02)
        assert np.abs(np.asarray(d["roi_box"]) - want).max() > 1.0
        assert np.abs(np.asarray(d["landmarks_2d"]) - s["landmarks_2d"]).max() > 0.1
    r = invoke(["landmarks", photo, "--out", out, "--roi-crop-scale", "1", "--no-second-pass"],
               env=env)
    assert _manifest(out)[0]["status"] == "skipped"


def test_bad_crop_scale_is_a_usage_error(afw_photos, tmp_path):
    for bad in ("nan", "0.2", "x"):
        r = invoke(["landmarks", afw_photos[0], "--out", tmp_path / "o", "--roi-crop-scale",
                    bad])
        assert r.exit_code == 2 and "--roi-crop-scale" in r.output
    assert not (tmp_path / "o").exists()


def test_presets_set_the_test_time_steps_and_flags_override_them(afw_photos, real_weights,
                                                                 tmp_path):
    """``--preset fast|balanced|accurate`` (issue 23): each preset's steps reach the settings
    file and the fingerprint (a changed preset redoes the photo); an explicit
    ``--no-second-pass`` / ``--no-flip`` wins over the preset; ``fast`` regresses fewer crops."""
    from facealign_cli.defaults import DEFAULT_PRESET, PRESETS, preset_fields

    env = {"FACEALIGN_WEIGHTS": str(real_weights)}
    photo, out = afw_photos[0], tmp_path / "lm"
    seen = {}
    for preset in PRESETS:
        r = invoke(["landmarks", photo, "--out", out, "--preset", preset], env=env)
        assert r.exit_code == 0 and _manifest(out)[0]["status"] == "ok", (preset, r.output)
        s = json.loads((out / ".facealign/settings/landmarks.json").read_text())["settings"]
        assert s["second_pass"] is PRESETS[preset]["second_pass"]
        seen[preset] = json.loads((out / f"{photo.stem}.json").read_text())["faces"]
    assert seen["fast"][0]["landmarks_2d"] != seen["accurate"][0]["landmarks_2d"]
    # the default is the balanced preset: the same run again is skipped as done
    r = invoke(["landmarks", photo, "--out", out, "--preset", DEFAULT_PRESET], env=env)
    assert _manifest(out)[0]["status"] == "ok"  # (balanced after accurate: redone)
    r = invoke(["landmarks", photo, "--out", out], env=env)
    assert r.exit_code == 0 and _manifest(out)[0]["status"] == "skipped"
    r = invoke(["landmarks", photo, "--out", out, "--preset", "accurate", "--no-second-pass"],
               env=env)
    s = json.loads((out / ".facealign/settings/landmarks.json").read_text())["settings"]
    assert s["second_pass"] is False
    assert preset_fields("accurate", second_pass=False, flip=False) == {
        **PRESETS["accurate"], "second_pass": False, "flip": False}
    assert invoke(["landmarks", photo, "--out", out, "--preset", "slow"]).exit_code == 2


def test_the_api_takes_a_preset(real_weights):
    import pytest

    from facealign_cli.core.pipeline import FaceAligner
    from facealign_cli.defaults import PRESETS

    al = FaceAligner(preset="fast", weights=str(real_weights))
    assert al.second_pass is False and al.flip is True
    al = FaceAligner(preset="accurate", second_pass_min_change=0.1, weights=str(real_weights))
    assert al.first_pass_flip is PRESETS["accurate"]["first_pass_flip"]
    assert al.second_pass_min_change == 0.1
    with pytest.raises(ValueError, match="unknown preset"):
        FaceAligner(preset="slow", weights=str(real_weights))
