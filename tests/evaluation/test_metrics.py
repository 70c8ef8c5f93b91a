"""facealign_cli.evaluation.metrics: hand-computed cases of every formula."""

from __future__ import annotations

import math

import numpy as np
import pytest

from facealign_cli.evaluation import metrics as M


def _square_face(w: float = 4.0, h: float = 9.0) -> np.ndarray:
    """(68, 3) landmarks whose 2D box is exactly w x h (corners present), z = 0."""
    rng = np.random.default_rng(0)
    p = np.zeros((68, 3))
    p[:, 0] = rng.uniform(0, w, 68)
    p[:, 1] = rng.uniform(0, h, 68)
    p[:4, :2] = [[0, 0], [w, 0], [0, h], [w, h]]
    return p


def test_landmark_box():
    p = _square_face(4, 9)
    np.testing.assert_array_equal(M.landmark_box(p), [0, 0, 4, 9])
    np.testing.assert_array_equal(M.landmark_box(np.stack([p, p + 1])),
                                  [[0, 0, 4, 9], [1, 1, 5, 10]])


def test_nme_box_hand_case():
    gt = _square_face(4, 9)[None]  # sqrt(4 * 9) = 6
    pred = gt.copy()
    pred[..., 0] += 3
    pred[..., 1] += 4  # every point off by 5 px
    assert M.nme_box(pred[..., :2], gt[..., :2]) == pytest.approx([5 / 6])
    # half the points exact, half off by 5 -> 2.5 / 6
    pred2 = gt.copy()
    pred2[:, 34:, 0] += 5
    assert M.nme_box(pred2, gt) == pytest.approx([2.5 / 6])
    # a missed face (NaN prediction) stays NaN
    assert np.isnan(M.nme_box(np.full_like(gt, np.nan), gt)).all()


def test_nme_3d_aligns_z_offsets():
    gt = _square_face(4, 9)[None]
    gt[..., 2] = np.linspace(-3, 3, 68)
    pred = gt.copy()
    pred[..., 2] += 100.0  # a constant depth offset is not an error
    assert M.nme_3d(pred, gt) == pytest.approx([0.0], abs=1e-12)
    pred[..., 0] += 2.0  # x off by 2, z by 2 relative to the mean: sqrt(8) per point
    pred[..., 2] += np.where(np.arange(68) < 34, 2.0, -2.0)
    assert M.nme_3d(pred, gt) == pytest.approx([math.sqrt(8) / 6])


def test_nme_interocular():
    gt = np.zeros((1, 68, 2))
    gt[0, :, 0] = np.linspace(0, 20, 68)
    gt[0, 36] = [0, 0]
    gt[0, 45] = [10, 0]
    pred = gt + [0, 2]  # 2 px error / 10 px inter-ocular
    assert M.nme_interocular(pred, gt) == pytest.approx([0.2])


def test_match_detection():
    gt = np.array([0.0, 0, 10, 10])
    dets = np.array([[5.0, 0, 15, 10], [0, 0, 10, 10], [100, 100, 110, 110]])
    assert M.match_detection(gt, dets) == (1, 1.0)
    assert M.match_detection(gt, dets[[0, 2]], 0.3)[0] == 0  # 0.333 >= 0.3
    assert M.match_detection(gt, dets[[0, 2]], 0.4)[0] == -1  # a miss
    assert M.match_detection(gt, np.zeros((0, 4))) == (-1, 0.0)
    # float32 detector boxes are matched in float64
    k, iou = M.match_detection(gt, dets.astype(np.float32)[[0]])
    assert k == 0 and iou == pytest.approx(1 / 3)


def test_pose_mae_hand_case():
    gt = np.array([[10.0, 0, 0], [-20, 5, 5], [150, 0, 0]])  # third: |yaw| > 99 -> excluded
    pred = np.array([[12.0, -1, 3], [-20, 8, 5], [0, 0, 0]])
    mae, n = M.pose_mae(pred, gt)
    assert n == 2
    np.testing.assert_allclose(mae, [1.0, 2.0, 1.5])
    fig = M.pose_figures(np.vstack([pred, [np.nan] * 3]), np.vstack([gt, [1, 1, 1]]))
    assert fig["count"] == 2 and fig["mean"] == pytest.approx(1.5)
    none = M.pose_figures(np.full((2, 3), np.nan), gt[:2])
    assert none["count"] == 0 and math.isnan(none["mean"])


def test_yaw_bins_and_nme_figures():
    yaw = np.array([-10.0, 30.0, 30.5, -60.0, 61.0, -90.0])
    np.testing.assert_array_equal(M.yaw_bin_index(yaw), [0, 0, 1, 1, 2, 2])
    # above 90 degrees is the last bin; a NaN yaw is in no bin
    np.testing.assert_array_equal(M.yaw_bin_index([0.0, 95.0, -351.0, np.nan]), [0, 2, 2, -1])
    nme = np.array([1.0, 3.0, 4.0, 6.0, 8.0, np.nan])  # the last face was missed
    means, mean, counts = M.yaw_bin_means(nme[:5], yaw[:5])
    assert means == pytest.approx([2.0, 5.0, 8.0]) and mean == pytest.approx(5.0)
    assert counts == [2, 2, 1]
    fig = M.nme_figures(nme, {"fit": yaw})
    s = fig["splits"]["fit"]
    assert s["bins"] == pytest.approx([2.0, 5.0, 8.0]) and s["mean"] == pytest.approx(5.0)
    assert s["counts"] == [2, 2, 1] and s["misses"] == [0, 0, 1]
    assert fig["n"] == 5 and fig["misses"] == 1 and fig["all"] == pytest.approx(22 / 5)
    assert fig["ced"]["fr_7"] == pytest.approx(2 / 6)  # 8 % and the miss
    # an empty bin gives NaN, never a silent 0
    means, mean, counts = M.yaw_bin_means(np.array([1.0]), np.array([10.0]))
    assert counts == [1, 0, 0] and math.isnan(means[1]) and math.isnan(mean)


def test_yaw_bins_are_the_published_edges():
    assert M.YAW_BINS == ((0, 30), (30, 60), (60, 90))
    assert M.BIN_LABELS == ("[0,30]", "(30,60]", "(60,90]")


def test_ced_auc_and_failure_rates():
    assert M.auc_at(np.zeros(10), 7.0) == 1.0
    assert M.auc_at([3.5], 7.0) == pytest.approx(0.5)
    assert M.auc_at([0.0, 7.0, 14.0], 7.0) == pytest.approx(1 / 3)
    assert M.auc_at([1.0, np.nan], 7.0) == pytest.approx((6 / 7) / 2)  # a miss adds 0
    assert math.isnan(M.auc_at([])) and math.isnan(M.failure_rate([], 7.0))
    e = [5.0, 8.0, 12.0, np.nan]
    assert M.failure_rate(e, 7.0) == pytest.approx(0.75)
    assert M.failure_rate(e, 10.0) == pytest.approx(0.5)
    x, y = M.ced_curve([1.0, 2.0, 3.0, 4.0], max_error=4.0, num=5)
    np.testing.assert_allclose(x, [0, 1, 2, 3, 4])
    np.testing.assert_allclose(y, [0, 0.25, 0.5, 0.75, 1.0])
    # the exact AUC equals the integral of the step CED (fine grid)
    errs = np.random.default_rng(1).gamma(3.0, 1.2, 500)
    x, y = M.ced_curve(errs, max_error=7.0, num=70001)
    assert M.auc_at(errs) == pytest.approx(np.trapezoid(y, x) / 7.0, abs=1e-4)
    assert M.ced_summary(np.zeros(3)) == {"auc_7": 1.0, "fr_7": 0.0, "fr_10": 0.0}


def test_finite_stat_and_difference():
    assert M.finite_stat([1.0, np.nan, 3.0, np.inf], np.mean) == 2.0
    assert math.isnan(M.finite_stat([np.nan], np.mean))
    a = {"bins": [1.0, 2.0], "mean": 3.0, "counts": [4, 5], "pose": {"yaw": 2.0, "count": 9}}
    b = {"bins": [0.5, 2.5], "mean": 1.0, "counts": [4, 5], "pose": {"yaw": 1.0, "count": 9}}
    assert M.difference(a, b) == {"bins": [0.5, -0.5], "mean": 2.0, "pose": {"yaw": 1.0}}
