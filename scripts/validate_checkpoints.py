"""Score regressor checkpoints and test-time settings on validation data (never AFLW2000-3D).

Two protocols, both on faces held out of ``facealign train``'s v4 recipe:

* ``crops``: the training run's own validation (:mod:`facealign_cli.training.validation`): the
  1,000-face AFLW split (visible manual points, % of the roi side, mean of the |yaw| bin means)
  and the 337 AFW faces (68 points, box NME), each crop zoomed to the test-time roi scale, one
  flip-averaged pass.
* ``pipeline``: the whole image path as ``facealign landmarks`` runs it (detector, roi rule,
  first pass, second pass, flip averaging) with each ``--setting``, on (a) the AFLW split's
  faces, each 120-px crop padded by half its side (edge pixels repeated) and upscaled 2x so that
  the detector sees context, scored like ``crops``; (b) the AFW photos
  (``<shared>/data/photos/afw``, 337 annotated faces; the teacher was trained on these photos).
  Detections are made once per image and shared by every setting. It also counts regressor
  evaluations per face (network inputs, mirrors included) and CPU seconds per image.

A checkpoint is a facealign ``.pth`` or ``teacher`` (the 3DDFA-V2 weights converted by
:func:`facealign_cli.training.convert.convert_teacher`). Settings are presets of
:data:`facealign_cli.defaults.PRESETS` or ``key=value,...`` of ``flip``, ``second_pass``,
``first_pass_flip``, ``second_pass_min_change``.

Usage: python scripts/validate_checkpoints.py runs/v4a/epoch_*.pth teacher --protocol crops
       python scripts/validate_checkpoints.py weights/facealign_v4.pth --protocol pipeline \\
           --setting fast --setting balanced --setting accurate
Prints one JSON object per checkpoint and setting.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from facealign_cli.core import geometry as G
from facealign_cli.core.morphable_model import load_morphable_model
from facealign_cli.core.pipeline import FaceAligner
from facealign_cli.core.regression import CropFitter
from facealign_cli.evaluation.metrics import match_detection, nme_box
from facealign_cli.models.detector import BlazeFaceDetector
from facealign_cli.models.regressor import Regressor
from facealign_cli.training.convert import convert_teacher
from facealign_cli.training.data import SIZE, _load_300w, aflw_points_68, detector_view
from facealign_cli.training.validation import (
    aflw_validation_split,
    validate,
    validate_aflw,
    visible_point_nme,
    yaw_bins,
    zoom_crops,
)


class CountingRegressor:
    """Wraps a regressor and counts the crops it regresses."""

    def __init__(self, reg):
        self.reg, self.input_size, self.count = reg, reg.input_size, 0

    def predict(self, crops):
        self.count += len(crops)
        return self.reg.predict(crops)


def load_aflw_val(shared: Path):
    """(crops (N,120,120,3) uint8, real (N,68,2) float32 NaN-filled, bins (N,)) of the split."""
    d = shared / "data" / "aflw-train"
    with np.load(d / "labels.npz") as lab:
        names, yaw, p21 = lab["names"].astype(str), lab["yaw"], lab["pts21"]
    rows = aflw_validation_split(yaw, 1000)
    crops = np.stack([cv2.imread(str(d / "images" / names[r]), cv2.IMREAD_COLOR) for r in rows])
    return crops, aflw_points_68(p21[rows]), yaw_bins(yaw[rows])


def parse_setting(text: str) -> dict:
    from facealign_cli.defaults import PRESETS

    if text in PRESETS:
        return dict(PRESETS[text])
    out = {}
    for kv in text.split(","):
        k, v = kv.split("=")
        out[k] = float(v) if k == "second_pass_min_change" else v.lower() in ("1", "true", "on")
    return out


def crops_protocol(reg, aflw, afw, roi_scale: float) -> dict:
    model = load_morphable_model()
    fitter = CropFitter(model, ("landmarks",), flip=True)
    net = reg.net
    t_mean, t_std = torch.from_numpy(reg.param_mean), torch.from_numpy(reg.param_std)
    zoom = 1.0 / roi_scale
    c, r = zoom_crops(aflw[0], aflw[1], zoom)
    a = validate_aflw(net, c, r, aflw[2], t_mean, t_std, fitter, zoom)
    c, r = zoom_crops(afw[0], afw[1], zoom)
    return {"aflw": a, "afw": round(validate(net, c, r, t_mean, t_std, fitter), 4)}


def pipeline_protocol(reg, dets: dict, aflw_bins: np.ndarray, setting: dict) -> dict:
    """Run the image path with ``setting`` on the cached detections (:func:`build_detections`)
    and score it; see the module docstring."""
    counting = CountingRegressor(reg)
    aligner = FaceAligner(detector=_NoDetector(), regressor=counting, **setting)
    errs = {"aflw": [], "afw": []}
    missed = {"aflw": 0, "afw": 0}
    n_faces, t0 = 0, time.process_time()
    pad = SIZE // 2  # detector_view's padding of a 120-px crop
    for kind, items in dets.items():
        for img, faces, targets in items:
            fitted = aligner.fit(img, copy.deepcopy(faces)) if faces else []
            n_faces += len(fitted)
            lm = np.stack([f.landmarks_3d[:, :2] for f in fitted]) if fitted else None
            for gt in targets:
                if kind == "aflw":  # the face nearest the crop's centre
                    k = -1 if lm is None else int(np.argmin(np.linalg.norm(
                        lm.mean(axis=1) / 2 - pad - (SIZE - 1) / 2, axis=1)))
                else:
                    k = -1 if lm is None else match_detection(
                        np.r_[gt.min(0), gt.max(0)], np.stack([f.box for f in fitted]))[0]
                if k < 0:
                    missed[kind] += 1
                    errs[kind].append(np.nan)
                elif kind == "aflw":
                    errs[kind].append(visible_point_nme(lm[k:k + 1] / 2 - pad, gt[None], SIZE)[0])
                else:
                    errs[kind].append(100 * nme_box(lm[k:k + 1], gt[None])[0])
    n_img = sum(len(v) for v in dets.values())
    e = np.asarray(errs["aflw"])
    means = [float(np.nanmean(e[aflw_bins == b])) for b in range(3)]
    return {"cpu_ms_per_image": round(1000 * (time.process_time() - t0) / n_img, 2),
            "evals_per_face": round(counting.count / max(1, n_faces), 3),
            "aflw": {"bins": [round(m, 4) for m in means],
                     "mean": round(float(np.mean(means)), 4), "missed": missed["aflw"]},
            "afw": {"nme": round(float(np.nanmean(errs["afw"])), 4), "missed": missed["afw"]}}


class _NoDetector:
    """Detections are cached by :func:`build_detections`; ``fit`` is called directly."""

    def detect(self, image):
        return []


def build_detections(shared: Path, aflw) -> dict:
    """Detections made once per image: ``{"aflw": [(image, faces, [real])], "afw": [(photo,
    faces, [68-point annotations])]}``."""
    det = BlazeFaceDetector()
    items = []
    for crop, real in zip(aflw[0], aflw[1]):
        view, _ = detector_view(crop)
        items.append((view, det.detect(view), [real]))
    root = shared / "data" / "photos" / "afw"
    ann = json.loads((root / "annotations.json").read_text())["photos"]
    afw = []
    for stem, faces in sorted(ann.items()):
        img = cv2.imread(str(root / f"{stem}.jpg"), cv2.IMREAD_COLOR)
        afw.append((img, det.detect(img), [np.asarray(p, np.float64) for p in faces]))
    return {"aflw": items, "afw": afw}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--protocol", choices=("crops", "pipeline", "both"), default="crops")
    ap.add_argument("--setting", action="append", default=[])
    ap.add_argument("--roi-scale", type=float, default=G.ROI_CROP_SCALE)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    shared = Path(args.shared)
    aflw = load_aflw_val(shared)
    names, crops, pts = _load_300w(shared)
    is_afw = np.char.startswith(np.array(names), "300w/afw/")
    afw = (crops[is_afw], pts[is_afw])
    dets = None
    tmp = tempfile.TemporaryDirectory()
    for ck in args.checkpoints:
        path = ck
        if ck == "teacher":
            path = Path(tmp.name) / "teacher_mb05.pth"
            convert_teacher(shared / "teacher" / "mb05_120x120.pth", path)
        reg = Regressor(path, num_threads=args.threads)
        if args.protocol in ("crops", "both"):
            print(json.dumps({"checkpoint": ck, "protocol": "crops",
                              **crops_protocol(reg, aflw, afw, args.roi_scale)}), flush=True)
        if args.protocol in ("pipeline", "both"):
            dets = dets or build_detections(shared, aflw)
            for s in args.setting or ["balanced"]:
                setting = parse_setting(s)
                print(json.dumps({"checkpoint": ck, "protocol": "pipeline", "setting": s,
                                  **pipeline_protocol(reg, dets, aflw[2], setting)}),
                      flush=True)


if __name__ == "__main__":
    main()
