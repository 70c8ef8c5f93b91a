#!/usr/bin/env python3
"""Grid search of the landmark One-Euro defaults (``core.smoothing.LANDMARK_DEFAULTS``) on
training photos only: the 300-W HELEN training crops.

Tuning set (never AFLW2000-3D, the test set; never the AFW photos, the reporting set): 96 of
the 870 crops of ``$FACEALIGN_SHARED/data/300w-train/helen`` (else ``../shared/...`` beside the
repository), drawn with ``numpy.random.default_rng(0).permutation``: the first 48 as they are
("large", faces about 120 px), the next 48 downscaled x0.5 with ``cv2.INTER_AREA`` ("small",
faces about 60 px). They are written under ``--work`` (outside the repository) with an
annotations file per condition (the crop's labelled face, so that only that detection counts,
as ``facealign evaluate stability --annotations``; the annotations are never compared with).

Objective: ``facealign evaluate stability``'s synthesis and metrics
(:func:`facealign_cli.evaluation.stability.evaluate_photo`, 30 jitter / 45 moving frames,
30 fps, seed 0, flip averaging, one thread). The pipeline (detect, track, fit) runs once per
photo and video; its raw faces per frame are recorded and replayed through a
:class:`~facealign_cli.core.smoothing.FaceSmoother` per grid point. The smoother never feeds
back into detection, tracking or fitting, so each grid point's figures are those of::

    facealign evaluate stability WORK/helen_large --annotations WORK/helen_large.json \\
        --smooth-min-cutoff M --smooth-beta B --smooth-d-cutoff 0.25

Rule: jitter ratio <= 0.5 and moving-face error ratio <= 1.10 in both conditions; among those,
the lowest mean jitter ratio. Usage::

    nice -n 10 python scripts/tune_smoothing.py --work /tmp/smooth_tune --json grid.json
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MIN_CUTOFFS = (0.3, 0.5, 1.0)
BETAS = (32.0, 64.0, 128.0, 256.0)
D_CUTOFF = 0.25
CONDITIONS = (("large", 1.0), ("small", 0.5))
PER_CONDITION = 48
SEED = 0


def _shared() -> Path:
    env = os.environ.get("FACEALIGN_SHARED")
    return Path(env) if env else REPO.parent / "shared"


def prepare(work: Path) -> dict[str, Path]:
    """Write the two tuning folders (and their annotation files) under ``work``."""
    import cv2

    src = _shared() / "data" / "300w-train" / "helen"
    lab = np.load(src / "labels.npz")
    row = {Path(str(n)).stem: i for i, n in enumerate(lab["names"])}
    files = sorted((src / "images").glob("*.jpg"))
    perm = np.random.default_rng(SEED).permutation(len(files))
    out = {}
    for c, (cond, scale) in enumerate(CONDITIONS):
        d = work / f"helen_{cond}"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        ann = {}
        for k in perm[c * PER_CONDITION:(c + 1) * PER_CONDITION]:
            f = files[k]
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if scale != 1.0:
                img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(d / f.name), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
            pts = (lab["pts68"][row[f.stem]].astype(np.float64) + 0.5) * scale - 0.5
            ann[f.stem] = [pts.tolist()]
        d.with_suffix(".json").write_text(json.dumps(
            {"format": "68 iBUG landmarks (x, y), 0-based pixels", "photos": ann}))
        out[cond] = d
    return out


class _Recorder:
    """A VideoAligner stand-in that records the raw faces of every frame."""

    def __init__(self, va):
        self.va, self.smoother, self.videos = va, None, []

    @property
    def detector_frames(self):
        return self.va.detector_frames

    def reset(self):
        self.va.reset()
        self.videos.append([])

    def process(self, frame, t):
        faces = self.va.process(frame, t)
        self.videos[-1].append((copy.deepcopy(faces), list(self.va.tracker.tracks)))
        return faces


class _Replay:
    """Replays recorded raw faces through a FaceSmoother (as VideoAligner.process does)."""

    def __init__(self, videos, params):
        from facealign_cli.core.smoothing import POSE_DEFAULTS, FaceSmoother

        self.videos, self.k, self.i = videos, -1, 0
        self.smoother = FaceSmoother(params, POSE_DEFAULTS)
        self.detector_frames = 0

    def reset(self):
        self.smoother.reset()
        self.k, self.i = self.k + 1, 0

    def process(self, frame, t):
        faces, live = self.videos[self.k][self.i]
        self.i += 1
        faces = copy.deepcopy(faces)
        self.smoother.keep_only(live)
        self.smoother.apply(faces, t)
        return faces


def run_condition(folder: Path, grid) -> list[dict]:
    from facealign_cli.cli.evaluate import _load_detector, _load_methods
    from facealign_cli.core.pipeline import FaceAligner
    from facealign_cli.core.smoothing import LANDMARK_DEFAULTS
    from facealign_cli.core.tracking import VideoAligner
    from facealign_cli.evaluation import datasets as D
    from facealign_cli.evaluation import stability as S

    photos = sorted(p for p in folder.iterdir() if p.suffix == ".jpg")
    ann = {it.path.stem: it.faces
           for it in D.open_landmarks68(folder, folder.with_suffix(".json"))}
    method = _load_methods(None, None, None, 1, None, True)[0]
    detector, _ = _load_detector(1)
    aligner = FaceAligner(detector=detector, regressor=method.regressor, flip=method.flip)
    results: list[list] = [[] for _ in grid]
    for k, p in enumerate(photos):
        img = D.read_dataset_image(p)
        cached = (lambda faces: lambda im, dense=False: faces)(aligner(img))
        kw = dict(frames=S.DEFAULT_FRAMES, moving_frames=S.DEFAULT_MOVING_FRAMES,
                  fps=S.DEFAULT_FPS, seed=S.DEFAULT_SEED + k, annotated=ann.get(p.stem, []),
                  iou_threshold=0.3)
        rec = _Recorder(VideoAligner(aligner, detect_every=1, smoother=None))
        S.evaluate_photo(cached, rec, img, p.stem,
                         smooth=LANDMARK_DEFAULTS, **kw)
        for i, prm in enumerate(grid):
            results[i].append(S.evaluate_photo(cached, _Replay(rec.videos, prm), img, p.stem,
                                               smooth=prm, **kw))
        print(f"{folder.name}: {k + 1}/{len(photos)}", file=sys.stderr, flush=True)
    out = []
    for prm, res in zip(grid, results):
        figs, _ = S.summarise_stability(S.StabilityRun(res, {}))
        out.append({"min_cutoff": prm.min_cutoff, "beta": prm.beta, "d_cutoff": prm.d_cutoff,
                    "faces": figs["faces"], "faces_tracked": figs["faces_tracked"],
                    "jitter": figs["jitter"], "moving_error": figs["moving_error"]})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, required=True,
                    help="folder for the tuning photos (outside the repository)")
    ap.add_argument("--json", type=Path, default=None, help="write every figure here")
    a = ap.parse_args(argv)
    from facealign_cli.core.smoothing import LANDMARK_DEFAULTS

    grid = [dataclasses.replace(LANDMARK_DEFAULTS, min_cutoff=m, beta=b, d_cutoff=D_CUTOFF)
            for m in MIN_CUTOFFS for b in BETAS]
    folders = prepare(a.work)
    figs = {cond: run_condition(d, grid) for cond, d in folders.items()}
    best, rows = None, []
    for i, prm in enumerate(grid):
        jr = [figs[c][i]["jitter"]["ratio"] for c in figs]
        mr = [figs[c][i]["moving_error"]["ratio"] for c in figs]
        ok = max(jr) <= 0.5 and max(mr) <= 1.10
        score = float(np.mean(jr))
        rows.append((prm, jr, mr, ok))
        if ok and (best is None or score < best[0]):
            best = (score, prm)
    for prm, jr, mr, ok in rows:
        print(f"min_cutoff {prm.min_cutoff:<4g} beta {prm.beta:<4g} " + "  ".join(
            f"{c}: jitter x{j:.2f} moving {100 * (m - 1):+.1f}%" for c, j, m in zip(figs, jr, mr))
            + ("  ok" if ok else ""))
    print("chosen:", best[1] if best else "none meets the rule")
    if a.json:
        a.json.write_text(json.dumps({"grid": figs, "chosen": dataclasses.asdict(best[1])
                                      if best else None}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
