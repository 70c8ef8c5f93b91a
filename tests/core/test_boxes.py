"""facealign_cli.core.boxes: box area and IoU, hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from facealign_cli.core.boxes import box_area, box_iou


def test_box_area():
    boxes = np.array([[0.0, 0, 4, 9], [5, 5, 3, 9], [1, 1, 1, 1]])  # the last two degenerate
    np.testing.assert_array_equal(box_area(boxes), [36.0, 0.0, 0.0])
    assert box_area(np.array([0, 0, 2, 3])) == 6.0  # integer input, one box
    assert box_area(boxes.astype(np.float32)).dtype == np.float32


def test_box_iou_hand_cases():
    gt = np.array([0.0, 0, 10, 10])
    dets = np.array([[5.0, 0, 15, 10], [0, 0, 10, 10], [100, 100, 110, 110], [2, 2, 4, 4]])
    np.testing.assert_allclose(box_iou(gt, dets), [50 / 150, 1.0, 0.0, 4 / 100])
    # (N, 4) x (M, 4) -> (N, M), symmetric
    m = box_iou(dets, dets)
    assert m.shape == (4, 4)
    np.testing.assert_allclose(m, m.T)
    np.testing.assert_allclose(np.diag(m), 1.0)
    assert box_iou(gt, np.zeros((0, 4))).shape == (0,)
    assert box_iou(dets, np.zeros((0, 4))).shape == (4, 0)
    # a (4,) second argument is one box
    assert box_iou(gt, dets[0]) == pytest.approx([1 / 3])


def test_box_iou_degenerate_and_dtype():
    point = np.array([3.0, 3, 3, 3])
    assert box_iou(point, point[None]).tolist() == [0.0]  # union 0 -> IoU 0, no NaN
    assert box_iou(np.array([0.0, 0, 10, 10]), point[None]).tolist() == [0.0]
    a32 = np.array([0, 0, 10, 10], np.float32)
    b32 = np.array([[5, 0, 15, 10]], np.float32)
    assert box_iou(a32, b32).dtype == np.float32  # the detector's NMS works in float32
    assert box_iou(a32, b32.astype(np.float64)).dtype == np.float64
    assert box_iou(np.array([0, 0, 10, 10]), np.array([[5, 0, 15, 10]])).dtype == np.float64
