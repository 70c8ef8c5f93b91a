"""The Python API and the command line share one set of model settings (issue 24, must fix 6):
:class:`AlignerSettings` is checked once, when made (``roi_crop_scale=100`` and
``max_faces=-1`` fail there, not image by image), has the command line's defaults, and
``FaceAligner`` applies the command line's face filter; grey and BGRA arrays are converted
once, for the detector and the regressor alike. Real model, on the AFW photos."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from model_fixtures import real_weights  # noqa: F401 - fixture

from facealign_cli.core.pipeline import FaceAligner
from facealign_cli.core.settings import (
    ROI_CROP_SCALE_RANGE,
    STANDARD_CROP,
    AlignerSettings,
    SettingError,
)

#: An AFW photo with three detections, one of them dropped by the default --min-quality.
LOW_QUALITY_PHOTO = "134212.jpg"


@pytest.fixture(scope="module")
def aligner(real_weights):  # noqa: F811
    return FaceAligner(num_threads=1)


@pytest.fixture(scope="module")
def photo(afw_annotated_dir) -> Path:
    return afw_annotated_dir / LOW_QUALITY_PHOTO


def _boxes(faces) -> np.ndarray:
    return np.array([f.box[:4] for f in faces], np.float64).reshape(-1, 4)


@pytest.mark.parametrize("kw", [dict(roi_crop_scale=100), dict(roi_crop_scale=0.0),
                                dict(roi_crop_scale=float("nan")), dict(max_faces=-1),
                                dict(max_faces=2.5), dict(min_quality=1.5),
                                dict(min_score=-0.1), dict(flip="yes"),
                                dict(runtime="tensorrt"), dict(pose_convention="euler")])
def test_bad_settings_fail_when_the_aligner_is_made(kw):
    """No model is loaded: the check comes first (a detector and regressor are given)."""
    with pytest.raises(SettingError) as info:
        FaceAligner(detector=object(), regressor=object(), **kw)
    (name,) = kw
    assert info.value.name == name and isinstance(info.value, ValueError)
    with pytest.raises(SettingError):
        AlignerSettings(**kw)
    with pytest.raises(TypeError):
        FaceAligner(detector=object(), regressor=object(), roi_scale=1.0)  # not a setting


def test_one_range_for_the_api_and_the_command_line():
    from facealign_cli.cli.crop_options import crop_options

    params = [o(lambda **kw: None).__click_params__[0] for o in crop_options()]
    opt = next(p for p in params if p.name == "roi_crop_scale")
    assert (opt.type.min, opt.type.max) == ROI_CROP_SCALE_RANGE
    for s in ROI_CROP_SCALE_RANGE:
        assert AlignerSettings(roi_crop_scale=s).roi_crop_scale == s


def test_the_command_line_defaults_are_the_settings_defaults():
    from facealign_cli.batch.options import RunOptions
    from facealign_cli.cli import main as cli_main

    assert RunOptions.make("landmarks", "o").aligner == AlignerSettings()
    params = {p.name: p.default for p in cli_main.landmarks.params}
    d = AlignerSettings()
    for name in ("max_faces", "min_score", "min_quality", "weights", "runtime",
                 "pose_convention"):
        assert params[name] == getattr(d, name), name
    # the test-time steps come from --preset (their flags left unset: None)
    from facealign_cli.defaults import preset_fields

    assert params["flip"] is None and params["second_pass"] is None
    steps = preset_fields(params["preset"])
    assert all(getattr(d, k) == v for k, v in steps.items()), steps
    assert params["roi_crop_scale"] is None  # None: the settings' default (0.88)


def test_pose_convention_is_a_setting_in_the_fingerprint_of_angles_only():
    """``--pose-convention`` is routed to the settings by name; the fingerprint names it only
    for outputs with angles and not for ``aflw2000``, the convention of the records written
    before the setting existed (issue 24)."""
    from facealign_cli.batch.options import RunOptions

    o = RunOptions.make("pose", "o", pose_convention="aflw2000")
    assert o.aligner == AlignerSettings(pose_convention="aflw2000")
    assert o.cmd.fingerprint(o) == {k: v for k, v in o.cmd.fingerprint(
        RunOptions.make("pose", "o")).items() if k != "pose_convention"}
    yf = AlignerSettings()
    assert yf.fingerprint(True, pose=True)["pose_convention"] == "yaw-first"
    assert "pose_convention" not in yf.fingerprint(True)  # mesh: no angles written
    assert "pose_convention" not in yf.fingerprint(False, pose=True)  # detect


def test_a_preset_is_a_set_of_field_values():
    s = dataclasses.replace(AlignerSettings(min_quality=0.2), **STANDARD_CROP)
    assert (s.roi_crop_scale, s.second_pass, s.min_quality) == (1.0, False, 0.2)
    assert AlignerSettings(**STANDARD_CROP).fingerprint(True)["roi_crop_scale"] == 1.0


def test_grey_and_bgra_images_are_converted_once(aligner, photo):
    bgr = cv2.imread(str(photo), cv2.IMREAD_COLOR)
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    want = aligner(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR))
    assert len(want) >= 2
    for img in (grey, grey[:, :, None]):
        got = aligner(img)
        np.testing.assert_allclose(_boxes(got), _boxes(want), atol=1e-3)
        np.testing.assert_allclose(got[0].landmarks_3d, want[0].landmarks_3d, atol=1e-3)
        # detect and fit alone take it too (the detector and the regressor)
        faces = aligner.detect(img)
        aligner.fit(img, faces)
        assert faces[0].landmarks_3d is not None
    opaque = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    got = aligner(opaque)
    ref = aligner(bgr)
    np.testing.assert_allclose(_boxes(got), _boxes(ref), atol=1e-3)
    np.testing.assert_allclose(got[0].landmarks_3d, ref[0].landmarks_3d, atol=1e-3)
    with pytest.raises(ValueError, match="not an image"):
        aligner(np.zeros((4, 4, 4, 4), np.uint8))


def test_max_faces_keeps_the_highest_scores(real_weights, photo):  # noqa: F811
    img = cv2.imread(str(photo), cv2.IMREAD_COLOR)
    every = FaceAligner(num_threads=1, min_quality=0.0).detect(img)
    one = FaceAligner(num_threads=1, max_faces=1, min_quality=0.0).detect(img)
    assert len(every) >= 3 and len(one) == 1 and one[0].score == every[0].score


def test_the_api_keeps_the_faces_the_command_line_keeps(aligner, real_weights,  # noqa: F811
                                                        photo, tmp_path):
    """Same defaults, same filter: ``FaceAligner()`` drops the face ``facealign landmarks``
    drops (quality below the default --min-quality), and ``min_quality=0`` keeps it."""
    img = cv2.imread(str(photo), cv2.IMREAD_COLOR)
    kept = aligner(img)
    every = FaceAligner(num_threads=1, min_quality=0.0)(img)
    assert len(every) == len(kept) + 1
    assert all(f.quality >= AlignerSettings().min_quality for f in kept)
    assert min(f.quality for f in every) < AlignerSettings().min_quality
    r = subprocess.run([sys.executable, "-m", "facealign_cli.cli.main", "landmarks", str(photo),
                        "--out", str(tmp_path / "o"), "-q", "--weights", str(real_weights)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "o" / (photo.stem + ".json")).read_text())
    cli = np.array([f["box"] for f in doc["faces"]], np.float64).reshape(-1, 4)
    np.testing.assert_allclose(cli, _boxes(kept), atol=0.01)
