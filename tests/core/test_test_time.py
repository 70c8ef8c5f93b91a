"""The pipeline's test-time crop (issue 18): the roi crop scale and the second pass of
:meth:`facealign_cli.core.pipeline.FaceAligner.fit`, on real annotated AFW photos with the
shipped weights (skipped without ``../shared``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from facealign_cli.core import geometry as G
from facealign_cli.core.face import Face
from facealign_cli.core.pipeline import FaceAligner
from facealign_cli.evaluation.metrics import landmark_box, match_detection


@pytest.fixture(scope="module")
def parts(real_weights):
    """(detector, regressor) loaded once for the module."""
    from facealign_cli.models.detector import BlazeFaceDetector
    from facealign_cli.models.regressor_onnx import make_regressor

    return BlazeFaceDetector(num_threads=1), make_regressor(real_weights, num_threads=1)


@pytest.fixture(scope="module")
def annotated_faces(afw_annotated_dir, parts):
    """(image, detected Face, (68, 2) annotation) of the annotated faces of 20 AFW photos that
    the detector finds (IoU >= 0.3 with the annotation's box)."""
    from facealign_cli.io.images import read_image

    det = parts[0]
    ann = json.loads((afw_annotated_dir / "annotations.json").read_text())["photos"]
    out = []
    for stem in sorted(ann)[:20]:
        img = read_image(afw_annotated_dir / f"{stem}.jpg").image
        faces = det.detect(img)
        for gt in ann[stem]:
            gt = np.asarray(gt, np.float64)
            k, _ = match_detection(landmark_box(gt), np.array([f.box[:4] for f in faces]).reshape(
                -1, 4), 0.3)
            if k >= 0:
                out.append((img, faces[k], gt))
    assert len(out) >= 8
    return out


def _fresh(face: Face, **kw) -> Face:
    return Face(box=face.box.copy(), score=face.score, box_unclipped=face.box_unclipped,
                detector_pass=face.detector_pass, **kw)


def _aligner(parts, **kw) -> FaceAligner:
    return FaceAligner(detector=parts[0], regressor=parts[1], num_threads=1, **kw)


def test_second_pass_moves_the_roi_box_to_the_landmark_roi(parts, annotated_faces):
    """The second pass's crop is nearer the annotated face's landmark roi box (3DDFA's rule,
    times the crop scale) than the detector-derived crop, and its landmarks nearer the
    annotation."""
    al = _aligner(parts)
    s = al.roi_crop_scale
    err_det, err_2nd, nme_1, nme_2 = [], [], [], []
    for img, face, gt in annotated_faces:
        want = G.roi_box_from_landmarks(gt, s)
        det_roi = G.scale_roi_box(G.roi_box_from_detector_box(
            face.full_box), s)
        f = _fresh(face)
        al.fit(img, [f])
        one = _fresh(face)
        _aligner(parts, second_pass=False).fit(img, [one])
        np.testing.assert_allclose(one.roi_box, det_roi, atol=1e-4)  # the first pass's crop
        side = want[2] - want[0]
        err_det.append(np.abs(det_roi - want).mean() / side)
        err_2nd.append(np.abs(f.roi_box - want).mean() / side)
        norm = np.sqrt(np.prod(gt.max(0) - gt.min(0)))
        nme_1.append(np.linalg.norm(one.landmarks_3d[:, :2] - gt, axis=1).mean() / norm)
        nme_2.append(np.linalg.norm(f.landmarks_3d[:, :2] - gt, axis=1).mean() / norm)
    assert np.mean(err_2nd) < 0.7 * np.mean(err_det)
    assert np.mean(nme_2) < np.mean(nme_1)


def test_second_pass_is_one_pass_at_the_landmark_roi(parts, annotated_faces):
    """The ``accurate`` preset's fit equals a one-pass fit at the roi box of a flip-averaged
    first pass's landmarks (the composition, not another rule); ``Face.roi_box`` is that
    second box."""
    from facealign_cli.defaults import PRESETS

    img, face, _ = annotated_faces[0]
    first = _fresh(face)
    _aligner(parts, second_pass=False).fit(img, [first], dense=True)
    roi2 = G.roi_box_from_landmarks(first.landmarks_3d, G.ROI_CROP_SCALE)
    again = _fresh(face, roi_box=roi2)
    _aligner(parts, second_pass=False).fit(img, [again], dense=True)
    both = _fresh(face)
    _aligner(parts, **PRESETS["accurate"]).fit(img, [both], dense=True)
    np.testing.assert_array_equal(both.roi_box, roi2)
    np.testing.assert_allclose(both.landmarks_3d, again.landmarks_3d, atol=1e-4)
    np.testing.assert_allclose(both.vertices, again.vertices, atol=1e-3)
    np.testing.assert_array_equal(both.params, again.params)
    assert not np.allclose(both.landmarks_3d, first.landmarks_3d, atol=0.5)


def test_options_turn_each_step_off(parts, annotated_faces):
    """roi_crop_scale=1 with second_pass=False is the standard one-pass crop (the detector roi
    rule as is); each option alone changes the result."""
    img, face, _ = annotated_faces[1]
    std = _fresh(face)
    _aligner(parts, roi_crop_scale=1.0, second_pass=False).fit(img, [std])
    np.testing.assert_allclose(std.roi_box, G.roi_box_from_detector_box(
        face.full_box), atol=1e-5)
    from facealign_cli.core.morphable_model import load_morphable_model
    from facealign_cli.evaluation.protocols import predict_on_crops

    lms, _, params = predict_on_crops(parts[1], [img], std.roi_box[None], load_morphable_model(),
                                      flip=True)
    np.testing.assert_allclose(std.landmarks_3d[:, :2], lms[0][:, :2], atol=1e-3)
    np.testing.assert_array_equal(std.params, params[0])
    results = {}
    for kw in ({}, {"roi_crop_scale": 1.0}, {"second_pass": False}):
        f = _fresh(face)
        _aligner(parts, **kw).fit(img, [f])
        results[tuple(kw)] = f.landmarks_3d
    for r in results.values():
        assert np.abs(r - std.landmarks_3d).max() > 0.1


def test_bad_crop_scale_is_refused_at_construction(parts):
    for bad in (0.0, float("nan"), 100.0):
        with pytest.raises(ValueError, match="^roi_crop_scale: must lie in"):
            _aligner(parts, roi_crop_scale=bad)


class _Counting:
    """The regressor, counting the crops it regresses and the calls it gets."""

    def __init__(self, reg):
        self.reg, self.input_size, self.crops, self.calls = reg, reg.input_size, 0, 0

    def predict(self, crops):
        self.crops += len(crops)
        self.calls += 1
        return self.reg.predict(crops)


def test_the_balanced_preset_skips_unmoved_faces_and_reuses_the_first_prediction(
        parts, annotated_faces):
    """``second_pass_min_change``: a face whose landmark roi box moved less than the threshold
    keeps its first crop, and the final pass regresses only its mirror image; a face that moved
    is cropped again. A threshold of 0 gives today's two passes. One runtime call per pass."""
    from facealign_cli.core.pipeline import second_pass_roi_boxes

    img, face, _ = annotated_faces[0]
    always = _aligner(parts, first_pass_flip=False, second_pass_min_change=0.0).fit(
        img, [_fresh(face)])[0]
    counting = _Counting(parts[1])
    skip_all = FaceAligner(detector=parts[0], regressor=counting, first_pass_flip=False,
                           second_pass_min_change=1.0)
    f = skip_all.fit(img, [_fresh(face)])[0]
    # skipped: 1 direct crop in pass 1, then only its mirror, in two calls
    assert (counting.crops, counting.calls) == (2, 2)
    one_pass = _aligner(parts, second_pass=False).fit(img, [_fresh(face)])[0]
    np.testing.assert_allclose(f.landmarks_3d, one_pass.landmarks_3d, atol=1e-3)
    assert not np.allclose(f.landmarks_3d, always.landmarks_3d, atol=1e-2)
    counting.crops = counting.calls = 0
    redo_all = FaceAligner(detector=parts[0], regressor=counting, first_pass_flip=False,
                           second_pass_min_change=1e-9)
    g = redo_all.fit(img, [_fresh(face)])[0]
    assert (counting.crops, counting.calls) == (3, 2)
    np.testing.assert_allclose(g.landmarks_3d, always.landmarks_3d, atol=1e-3)
    # the rule itself: a box that moves by 5 % of its side is redone at 0.04, kept at 0.06
    lm = always.landmarks_3d[None]
    target = G.roi_box_from_landmarks(lm[0], G.ROI_CROP_SCALE)
    side = target[2] - target[0]
    moved = target + np.float32(0.05 * side) * np.array([1, 0, 1, 0], np.float32)
    for thr, want in ((0.04, True), (0.06, False)):
        boxes, redo = second_pass_roi_boxes(moved[None], lm, G.ROI_CROP_SCALE, thr)
        assert redo.tolist() == [want]
        np.testing.assert_allclose(boxes[0], target if want else moved, atol=1e-3)
