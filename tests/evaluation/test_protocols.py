"""facealign_cli.evaluation.protocols: the AFLW2000-3D and landmarks68 runs on real data with
the teacher as the evaluated method and a stand-in detector (skipped without ``../shared``)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facealign_cli.evaluation import datasets as D
from facealign_cli.evaluation import protocols as P
from facealign_cli.evaluation import reports as R


def test_run_argument_errors(teacher_method):
    data = D.AFLW2000Set(Path("."), "official", [], np.zeros(0, np.int64), 0, np.zeros((0, 4)),
                         np.zeros((0, 68, 3)), {"fit": np.zeros(0)}, np.zeros((0, 3)))
    with pytest.raises(ValueError, match="unknown protocol"):
        P.run_aflw2000(data, [teacher_method], ("nope",))
    with pytest.raises(ValueError, match="no method"):
        P.run_aflw2000(data, [], ("gt-crops",))
    with pytest.raises(ValueError, match="needs a detector"):
        P.run_aflw2000(data, [teacher_method], ("detector",))


def test_gt_crops_and_occlusion_run(aflw2000_dir, teacher_method):
    data = D.open_aflw2000(aflw2000_dir, limit=12)  # 9 / 1 / 2 faces per fit-yaw bin
    run = P.run_aflw2000(data, [teacher_method], ("occlusion",), batch=5)
    assert run.protocols == ("gt-crops", "occlusion")  # occlusion brings its clean reference
    figs, per = P.summarise_aflw2000(run)
    g = figs["gt-crops"]["3ddfa-v2"]
    assert 1.0 < g["nme_2d"]["all"] < 8.0 and g["nme_2d"]["n"] == 12
    assert g["nme_2d"]["splits"]["fit"]["counts"] == [9, 1, 2]
    assert per["gt-crops"]["3ddfa-v2"].shape == (12,)
    o = figs["occlusion"]["3ddfa-v2"]
    assert o["clean"]["mean"] == g["nme_2d"]["splits"]["fit"]["mean"]
    assert set(o) == {"clean", "square", "double-square", "column"}
    assert o["column"]["increase"] == pytest.approx(
        o["column"]["nme_2d"]["splits"]["fit"]["mean"] - o["clean"]["mean"])
    # the same crops through predict_on_crops directly give the same landmarks
    from facealign_cli.core.morphable_model import load_morphable_model

    images = [data.read_image(i) for i in range(len(data))]
    lms, pose, params = P.predict_on_crops(teacher_method.regressor, images, data.roi_boxes,
                                           load_morphable_model(), batch=5)
    np.testing.assert_allclose(lms, run.gt_crops["3ddfa-v2"]["lms"], atol=1e-4)
    assert pose.shape == (12, 3) and params.shape == (12, 62)


def test_predict_on_crops_flip_and_bare_callable(aflw2000_dir, teacher_method):
    from facealign_cli.core.morphable_model import load_morphable_model

    data = D.open_aflw2000(aflw2000_dir, limit=4)
    images = [data.read_image(i) for i in range(len(data))]
    model = load_morphable_model()
    reg = teacher_method.regressor
    plain = P.predict_on_crops(reg.predict, images, data.roi_boxes, model)  # a bare callable
    same = P.predict_on_crops(reg, images, data.roi_boxes, model, flip=False)
    np.testing.assert_array_equal(plain[0], same[0])
    flipped = P.predict_on_crops(reg, images, data.roi_boxes, model, flip=True)
    np.testing.assert_array_equal(flipped[2], same[2])  # the unflipped crops' parameters
    assert not np.array_equal(flipped[0], same[0])
    assert np.abs(flipped[0] - same[0]).max() < 10.0  # the two passes agree within pixels


def test_detector_protocol_counts_misses(aflw2000_dir, teacher_method, box_detector):
    data = D.open_aflw2000(aflw2000_dir, limit=6)
    imgs = [data.read_image(i) for i in range(len(data))]
    det = box_detector({box_detector.key(im): [p] for im, p in zip(imgs, data.pts68)},
                       miss={box_detector.key(imgs[2])})
    run = P.run_aflw2000(data, [teacher_method], ("detector",), detector=det,
                         iou_threshold=0.1)
    assert run.gt_crops == {} and run.detector["matched"].tolist() == [1, 1, 0, 1, 1, 1]
    # the 8 px distractor is below the pipeline's minimum face size
    assert run.detector["n_detections"].tolist() == [1, 1, 0, 1, 1, 1]
    figs, per = P.summarise_aflw2000(run)
    d = figs["detector"]["detection"]
    assert d["detected"] == 5 and d["misses"] == 1 and d["images_with_extra_detections"] == 0
    assert sum(d["misses_by_bin"]["fit"]) == 1
    assert np.isnan(per["detector"]["3ddfa-v2"][2])
    assert figs["detector"]["3ddfa-v2"]["nme_2d"]["all"] < 8.0


def test_landmarks68_run_counts_misses(tmp_path, w300_afw_dir, teacher_method, box_detector):
    z = np.load(w300_afw_dir / "labels.npz")
    names, pts = list(z["names"][:3]), z["pts68"][:3].astype(np.float64)
    for n, p in zip(names, pts):
        (tmp_path / n).symlink_to(w300_afw_dir / "images" / n)
        D.write_pts(tmp_path / (Path(n).stem + ".pts"), p + 1.0)
    items = D.open_landmarks68(tmp_path)
    keys = [box_detector.key(cv2.imread(str(it.path))) for it in items]
    det = box_detector({k: it.faces for k, it in zip(keys, items)}, miss={keys[2]})
    run = P.run_landmarks68(items, [teacher_method], det, iou_threshold=0.1)
    figs, per = P.summarise_landmarks68(run)
    assert figs["detection"] == {"images": 3, "faces": 3, "detected": 2, "misses": 1,
                                 "degenerate": 0, "degenerate_faces": [], "iou_threshold": 0.1}
    f = figs["3ddfa-v2"]
    assert f["nme_box"]["n"] == 2 and f["nme_box"]["misses"] == 1
    assert 0.5 < f["nme_box"]["mean"] < 8 and f["nme_io"]["mean"] > f["nme_box"]["mean"]
    assert np.isnan(per["3ddfa-v2"]["nme_box"][2])
    tables = R.landmarks68_tables({"methods": {"3ddfa-v2": {"label": "T"}}, "results": figs})
    assert tables[0].rows[0][-1] == "1"


def test_gt_crops_apply_the_pipelines_crop_rule(aflw2000_dir, real_weights):
    """gt-crops of a method with a crop scale and a second pass equal the pipeline's fit of a
    face given the scaled ground-truth roi box (the same rule, not a copy of it)."""
    from facealign_cli.core import geometry as G
    from facealign_cli.core.face import Face
    from facealign_cli.core.settings import STANDARD_CROP, AlignerSettings
    from facealign_cli.models.regressor_onnx import make_regressor

    data = D.open_aflw2000(aflw2000_dir, limit=4)
    m = P.Method("facealign", "facealign", make_regressor(real_weights, num_threads=1), {},
                 settings=AlignerSettings(flip=True, roi_crop_scale=0.88, second_pass=True))
    std = P.Method("std", "std", m.regressor, {},
                   settings=AlignerSettings(flip=True, **STANDARD_CROP))
    run = P.run_aflw2000(data, [m, std], ("gt-crops",))
    aligner = m.aligner(detector=object())  # (no detection here)
    for i in range(len(data)):
        f = Face(box=np.zeros(4, np.float32), score=1.0,
                 roi_box=G.scale_roi_box(data.roi_boxes[i], 0.88))
        aligner.fit(data.read_image(i), [f])
        np.testing.assert_allclose(run.gt_crops["facealign"]["lms"][i][:, :2],
                                   f.landmarks_3d[:, :2], atol=1e-3)
    assert np.abs(run.gt_crops["facealign"]["lms"] - run.gt_crops["std"]["lms"]).max() > 0.1


def test_pose_figures_use_aflw2000_convention(aflw2000_dir, teacher_method, box_detector):
    """``evaluate`` compares the benchmark's ``Pose_Para`` with angles in the same convention
    (AFLW2000-3D's), not the outputs' default yaw-first one: its pose MAE is that of the
    AFLW2000-3D angles, which on profile images differ from the yaw-first ones (issue 24)."""
    from facealign_cli.core.morphable_model import load_morphable_model
    from facealign_cli.core.regression import CropFitter
    from facealign_cli.evaluation.metrics import pose_mae

    data = D.open_aflw2000(aflw2000_dir, limit=40)  # 7 images with |yaw| > 60
    run = P.run_aflw2000(data, [teacher_method], ("gt-crops",), batch=20)
    figs, _ = P.summarise_aflw2000(run)
    images = [data.read_image(i) for i in range(len(data))]
    model = load_morphable_model()
    angles = {c: P.predict_on_crops(teacher_method.regressor, images, data.roi_boxes, model,
                                    fitter=CropFitter(model, flip=False, pose_convention=c))[1]
              for c in ("aflw2000", "yaw-first")}
    np.testing.assert_allclose(run.gt_crops["3ddfa-v2"]["pose"], angles["aflw2000"], atol=1e-6)
    mae, n = pose_mae(angles["aflw2000"], data.pose)
    g = figs["gt-crops"]["3ddfa-v2"]["pose"]
    assert n == g["count"] == 40
    assert [g["yaw"], g["pitch"], g["roll"]] == pytest.approx(mae.tolist())
    profile = np.abs(data.pose[:, 0]) > 60
    assert profile.sum() >= 5
    yf_mae, _ = pose_mae(angles["yaw-first"][profile], data.pose[profile])
    af_mae, _ = pose_mae(angles["aflw2000"][profile], data.pose[profile])
    assert yf_mae.mean() > af_mae.mean() + 1.0  # the convention matters on profiles
    # the detector protocol's aligners too, whatever the settings given
    assert teacher_method.aligner(box_detector({})).pose_convention == "aflw2000"
    from facealign_cli.core.settings import AlignerSettings

    m = P.Method("m", "m", teacher_method.regressor, {}, settings=AlignerSettings(flip=True))
    assert m.settings == AlignerSettings(flip=True, pose_convention="aflw2000")
