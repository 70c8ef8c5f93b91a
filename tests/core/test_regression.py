"""Test-time flip averaging (facealign_cli.core.regression) on real faces with the shipped
regressor: with flip averaging on, the fit of a mirrored crop is exactly the mirror of the fit
of the crop, and the averaged geometry lies between the two single predictions."""

from __future__ import annotations

import numpy as np
import pytest

from facealign_cli.core import geometry as G
from facealign_cli.core.regression import CropFitter, mean_rotation
from facealign_cli.core.symmetry import ibug68_flip_permutation


def _rot(axis: int, deg: float) -> np.ndarray:
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    i, j = [k for k in range(3) if k != axis]
    R = np.eye(3)
    R[i, i], R[i, j], R[j, i], R[j, j] = c, -s, s, c
    return R


def test_mean_rotation_of_two_rotations_about_one_axis_is_the_half_angle():
    R = mean_rotation(_rot(1, 10.0), _rot(1, 40.0))
    np.testing.assert_allclose(R, _rot(1, 25.0), atol=1e-12)
    assert np.isclose(np.linalg.det(R), 1.0)


@pytest.fixture(scope="module")
def crops(shared):
    from facealign_cli.evaluation.datasets import open_aflw2000

    data = open_aflw2000(shared / "data" / "aflw2000-3d", limit=24)
    return np.stack([G.crop_roi(data.read_image(i), data.roi_boxes[i])
                     for i in range(len(data))])


@pytest.fixture(scope="module")
def fitter_and_regressor(real_weights):
    from facealign_cli.core.morphable_model import load_morphable_model
    from facealign_cli.models.regressor_onnx import make_regressor

    return CropFitter(load_morphable_model(), ("landmarks",), flip=True), make_regressor()


def test_flip_averaged_fit_is_mirror_symmetric(crops, fitter_and_regressor):
    fitter, reg = fitter_and_regressor
    a = fitter(reg, crops)
    b = fitter(reg, np.ascontiguousarray(crops[:, :, ::-1]))
    mirrored = b.vertices[0][:, :, ibug68_flip_permutation()].copy()
    mirrored[:, 0] = (reg.input_size - 1) - mirrored[:, 0]
    np.testing.assert_allclose(a.vertices[0], mirrored, atol=1e-3)
    # yaw and roll change sign in the mirror image, pitch does not
    np.testing.assert_allclose(a.pose * [1, 1, 1], b.pose * [-1, 1, -1], atol=1e-3)


def test_flip_average_lies_between_direct_and_mirrored_predictions(crops, fitter_and_regressor):
    fitter, reg = fitter_and_regressor
    from facealign_cli.core.morphable_model import load_morphable_model

    avg = fitter(reg, crops).vertices[0]
    plain = CropFitter(load_morphable_model(), ("landmarks",), flip=False)
    direct = plain(reg, crops).vertices[0]
    flipped = plain(reg, np.ascontiguousarray(crops[:, :, ::-1])).vertices[0]
    flipped = flipped[:, :, ibug68_flip_permutation()]
    flipped[:, 0] = (reg.input_size - 1) - flipped[:, 0]
    np.testing.assert_allclose(avg, 0.5 * (direct + flipped), atol=1e-3)
    # the two passes disagree by a visible amount: the average is not a no-op
    assert np.abs(direct - flipped)[:, :2].mean() > 0.2
