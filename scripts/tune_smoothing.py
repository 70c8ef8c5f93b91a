#!/usr/bin/env python3
"""Grid search of the landmark One-Euro defaults (``core.smoothing.LANDMARK_DEFAULTS``) on
training photos only: the 300-W HELEN training crops.

Tuning set (never AFLW2000-3D, the test set; never the AFW photos, the reporting set): crops
of ``$FACEALIGN_SHARED/data/300w-train/helen`` (else ``../shared/...`` beside the repository),
in three conditions of 48 photos, drawn with ``numpy.random.default_rng(0).permutation``:

* ``large``: the first 48 as they are (faces about 120 px);
* ``small``: the next 48 downscaled x0.5 with ``cv2.INTER_AREA`` (faces about 60 px);
* ``turned``: of the remaining crops, the 48 most turned faces by the annotated landmarks
  (``|x_nose_tip - (x_jaw_left + x_jaw_right) / 2| / (x_jaw_right - x_jaw_left)``, points
  30, 0 and 16), as they are.

They are written under ``--work`` (outside the repository) with an annotations file per
condition (the crop's labelled face, so that only that detection counts, as ``facealign
evaluate stability --annotations``; the annotations are never compared with).

Objective: ``facealign evaluate stability``'s synthesis and metrics
(:func:`facealign_cli.evaluation.stability.evaluate_photo`, 30 jitter / 45 moving frames,
30 fps, seed 0, flip averaging, one thread). The pipeline (detect, track, fit) runs once per
photo and video; its raw faces per frame are recorded (cached in ``--work``) and replayed
through a :class:`~facealign_cli.core.smoothing.FaceSmoother` per grid point. The smoother
never feeds back into detection, tracking or fitting, so each grid point's figures are those
of::

    facealign evaluate stability WORK/helen_large --annotations WORK/helen_large.json \\
        --smooth-min-cutoff M --smooth-beta B --smooth-d-cutoff D --smooth-dead-zone Z

Rule, in every condition: jitter ratio <= 0.5 and moving-face error ratio <= 1.10, and the
largest steady lag on noise-free ramps (:func:`slow_lag`) at most :data:`MAX_SLOW_LAG`. Among
those, the lowest mean jitter ratio; grid points within 0.005 of it are ranked by their
highest moving-face error ratio (lower first).

``--pose`` tunes the head-pose filter (``core.smoothing.POSE_DEFAULTS``) on the same
recordings, the landmarks at ``LANDMARK_DEFAULTS``: the pose figures of the benchmark
(:mod:`facealign_cli.evaluation.stability_pose`: pose jitter, moving-video pose error, degrees)
over the ``POSE_*`` grid (speed and dead zone in degrees per second). Rule
(:func:`main_pose`), in every condition: pose jitter ratio <= 0.5, pose error ratio <= 1.10,
and a lag of at most :data:`MAX_POSE_LAG` degrees on noise-free turns from rest
(:func:`pose_lag`: 1 to 90 degrees per second, 2 s: the moving video turns the head by at
most 10 degrees per second, so it does not check quick turns); then the lowest mean pose
jitter ratio (ties within 0.005: the lowest highest pose error ratio).

Usage::

    nice -n 10 python scripts/tune_smoothing.py --work /tmp/smooth_tune --json grid.json --jobs 2
    nice -n 10 python scripts/tune_smoothing.py --work /tmp/smooth_tune --pose --jobs 2
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
MIN_CUTOFFS = (0.1, 0.3, 0.5, 1.0)
BETAS = (64.0, 128.0, 256.0)
D_CUTOFFS = (0.5, 1.0)
DEAD_ZONES = (0.0, 0.04, 0.08, 0.12, 0.16, 0.24, 0.32)
#: Largest steady lag allowed on a noise-free ramp, in face sizes (1 % of the face, about the
#: raw jitter of the pipeline).
MAX_SLOW_LAG = 0.01
#: Ramp speeds of that check, face sizes per second, at the tuning frame rate.
RAMP_SPEEDS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
#: ``--pose``: grid of the head-pose filter (``core.smoothing.POSE_DEFAULTS``; speed and dead
#: zone in degrees per second).
POSE_MIN_CUTOFFS = (0.05, 0.1, 0.3, 0.5, 1.0, 2.0)
POSE_BETAS = (0.1, 0.3, 0.5, 1.0)
POSE_D_CUTOFFS = (0.25, 0.5, 1.0)
POSE_DEAD_ZONES = (0.0, 2.0, 5.0, 10.0, 20.0)
#: ``--pose``: largest lag (degrees) allowed while a noise-free head turns at any of
#: :data:`POSE_RAMP_SPEEDS` (degrees per second) for :data:`POSE_RAMP_S` seconds from rest
#: (3-5 times the raw pose jitter of the tuning photos, 0.4-0.6 degrees: with 1 degree no
#: setting of a first grid halved the jitter).
MAX_POSE_LAG = 2.0
POSE_RAMP_SPEEDS = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 90.0)
POSE_RAMP_S = 2.0
CONDITIONS = (("large", 1.0), ("small", 0.5), ("turned", 1.0))
PER_CONDITION = 48
SEED = 0


def _shared() -> Path:
    env = os.environ.get("FACEALIGN_SHARED")
    return Path(env) if env else REPO.parent / "shared"


def prepare(work: Path) -> dict[str, Path]:
    """Write the three tuning folders (and their annotation files) under ``work``."""
    import cv2

    src = _shared() / "data" / "300w-train" / "helen"
    lab = np.load(src / "labels.npz")
    row = {Path(str(n)).stem: i for i, n in enumerate(lab["names"])}
    files = sorted((src / "images").glob("*.jpg"))
    perm = np.random.default_rng(SEED).permutation(len(files))
    pts = np.stack([lab["pts68"][row[f.stem]] for f in files]).astype(np.float64)
    turn = np.abs((pts[:, 30, 0] - (pts[:, 0, 0] + pts[:, 16, 0]) / 2)
                  / np.maximum(pts[:, 16, 0] - pts[:, 0, 0], 1e-6))
    rest = perm[2 * PER_CONDITION:]
    chosen = {"large": perm[:PER_CONDITION], "small": perm[PER_CONDITION:2 * PER_CONDITION],
              "turned": rest[np.argsort(-turn[rest], kind="stable")[:PER_CONDITION]]}
    out = {}
    for cond, scale in CONDITIONS:
        d = work / f"helen_{cond}"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        ann = {}
        for k in chosen[cond]:
            f = files[k]
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if scale != 1.0:
                img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(d / f.name), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
            p68 = (lab["pts68"][row[f.stem]].astype(np.float64) + 0.5) * scale - 0.5
            ann[f.stem] = [p68.tolist()]
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

    def __init__(self, videos, params, pose=None):
        from facealign_cli.core.smoothing import POSE_DEFAULTS, FaceSmoother

        self.videos, self.k, self.i = videos, -1, 0
        self.smoother = FaceSmoother(params, pose or POSE_DEFAULTS)
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


def record_condition(folder: Path) -> list:
    """Run the pipeline (no smoothing) on both synthetic videos of every photo of ``folder``;
    returns ``[(photo path, reference faces, recorded videos, evaluate_photo keywords)]``,
    cached in ``folder.with_suffix(".recording.pkl")``."""
    import pickle

    cache = folder.with_suffix(".recording.pkl")
    if cache.exists():
        with cache.open("rb") as fh:
            return pickle.load(fh)
    from facealign_cli.cli.evaluate import _load_detector, _load_methods
    from facealign_cli.core.pipeline import FaceAligner
    from facealign_cli.core.settings import AlignerSettings
    from facealign_cli.core.smoothing import LANDMARK_DEFAULTS
    from facealign_cli.core.tracking import VideoAligner
    from facealign_cli.evaluation import datasets as D
    from facealign_cli.evaluation import stability as S

    photos = sorted(p for p in folder.iterdir() if p.suffix == ".jpg")
    ann = {it.path.stem: it.faces
           for it in D.open_landmarks68(folder, folder.with_suffix(".json"))}
    method = _load_methods(AlignerSettings(min_quality=0.0), None, None, 1)[0]
    detector, _ = _load_detector(1)
    # (the method's settings: AFLW2000-3D's pose convention, as evaluate stability)
    aligner = FaceAligner(detector=detector, regressor=method.regressor,
                          settings=method.settings)
    out = []
    for k, p in enumerate(photos):
        img = D.read_dataset_image(p)
        ref = aligner(img)
        kw = dict(frames=S.DEFAULT_FRAMES, moving_frames=S.DEFAULT_MOVING_FRAMES,
                  fps=S.DEFAULT_FPS, seed=S.DEFAULT_SEED + k, annotated=ann.get(p.stem, []),
                  iou_threshold=0.3)
        rec = _Recorder(VideoAligner(aligner, detect_every=1, smoother=None))
        S.evaluate_photo(_cached(ref), rec, img, p.stem, smooth=LANDMARK_DEFAULTS, **kw)
        out.append((str(p), ref, rec.videos, kw))
        print(f"{folder.name}: {k + 1}/{len(photos)}", file=sys.stderr, flush=True)
    with cache.open("wb") as fh:
        pickle.dump(out, fh)
    return out


def _cached(faces):
    return lambda image, dense=False: faces


def run_condition(folder: Path, grid, pose: bool = False) -> list[dict]:
    """Figures of every grid point on one condition (replays of its recording). ``pose``: the
    grid is of pose settings (the landmarks keep ``LANDMARK_DEFAULTS``)."""
    from facealign_cli.core.smoothing import LANDMARK_DEFAULTS
    from facealign_cli.evaluation import datasets as D
    from facealign_cli.evaluation import stability as S

    recording = record_condition(folder)
    images = {path: D.read_dataset_image(Path(path)) for path, *_ in recording}
    warp, S.warp = S.warp, (lambda photo, m: photo)  # a replay reads no frame: no warps
    out = []
    try:
        for prm in grid:
            lm, ps = (LANDMARK_DEFAULTS, prm) if pose else (prm, None)
            res = [S.evaluate_photo(_cached(ref), _Replay(videos, lm, ps), images[path],
                                    Path(path).stem, smooth=lm, smooth_pose=ps, **kw)
                   for path, ref, videos, kw in recording]
            figs, _ = S.summarise_stability(S.StabilityRun(res, {}))
            keys = ("pose_jitter", "pose_error") if pose else ("jitter", "moving_error")
            out.append({**dataclasses.asdict(prm), "faces": figs["faces"],
                        "faces_tracked": figs["faces_tracked"],
                        **{k: figs[k] for k in keys}})
            print(f"{folder.name}: {prm}", file=sys.stderr, flush=True)
    finally:
        S.warp = warp
    return out


def slow_lag(prm, fps: float = 30.0) -> float:
    """Largest steady lag (face sizes) of the landmark smoother on noise-free ramps: a 68-point
    face of size 100 px translating at each of :data:`RAMP_SPEEDS` face sizes per second for
    10 s at ``fps``; the lag is the distance of the smoothed points to the true ones at the
    end."""
    from facealign_cli.core.smoothing import LandmarkSmoother

    base = np.random.default_rng(0).uniform(0.0, 100.0, (68, 2))
    worst = 0.0
    for v in RAMP_SPEEDS:
        sm = LandmarkSmoother(prm)
        n = int(10 * fps)
        for i in range(n):
            x = base + [100.0 * v * i / fps, 0.0]
            y = sm(x, i / fps, 100.0)
        worst = max(worst, float(np.linalg.norm(y - x, axis=-1).mean()) / 100.0)
    return worst


def _choose(grid, figs, keys, lags, max_lag):
    """The rule: ``rows`` ``(params, jitter ratios, error ratios, passes)`` per grid point and
    the best ``(mean jitter ratio, highest error ratio, params)`` of those that pass (every
    condition: jitter ratio <= 0.5, error ratio <= 1.10; lag <= ``max_lag``), or ``None``."""
    rows = []
    for i, prm in enumerate(grid):
        jr = [figs[c][i][keys[0]]["ratio"] for c in figs]
        mr = [figs[c][i][keys[1]]["ratio"] for c in figs]
        rows.append((prm, jr, mr, max(jr) <= 0.5 and max(mr) <= 1.10 and lags[prm] <= max_lag))
    passing = [(float(np.mean(jr)), max(mr), prm) for prm, jr, mr, ok in rows if ok]
    if not passing:
        return rows, None
    low = min(p[0] for p in passing)
    return rows, min((p for p in passing if p[0] <= low + 0.005), key=lambda p: p[1])


def _print_rows(rows, best, figs, lag_text: dict, error_name: str) -> None:
    for prm, jr, mr, ok in rows:
        print(f"min_cutoff {prm.min_cutoff:<4g} beta {prm.beta:<4g} d_cutoff {prm.d_cutoff:<4g} "
              f"dead_zone {prm.dead_zone:<4g} ramp lag {lag_text[prm]}  " + "  ".join(
                  f"{c}: jitter x{j:.2f} {error_name} {100 * (m - 1):+.1f}%"
                  for c, j, m in zip(figs, jr, mr)) + ("  ok" if ok else ""))
    print("chosen:", best[2] if best else "none meets the rule")


def pose_lag(prm, fps: float = 30.0) -> float:
    """Largest lag (degrees) of the pose filter (as :class:`~facealign_cli.core.smoothing.
    FaceSmoother` runs it) while a noise-free head at rest starts turning (yaw) at each of
    :data:`POSE_RAMP_SPEEDS` degrees per second, over :data:`POSE_RAMP_S` seconds."""
    from facealign_cli.core.smoothing import OneEuroFilter

    worst = 0.0
    for v in POSE_RAMP_SPEEDS:
        f = OneEuroFilter(prm)
        for i in range(int(POSE_RAMP_S * fps) + 1):
            x = np.array([v * i / fps, 10.0, -5.0])
            worst = max(worst, float(np.abs(f(x, i / fps) - x).max()))
    return worst


def main_pose(a, folders) -> int:
    """``--pose``: the grid of the head-pose filter, the landmarks at ``LANDMARK_DEFAULTS``.

    Rule, in every condition: pose jitter ratio <= 0.5 and moving-video pose error ratio <=
    1.10, and :func:`pose_lag` at most :data:`MAX_POSE_LAG`; then the lowest mean pose jitter
    ratio (ties within 0.005: the lowest highest pose error ratio)."""
    from concurrent.futures import ProcessPoolExecutor

    from facealign_cli.core.smoothing import POSE_DEFAULTS

    grid = [dataclasses.replace(POSE_DEFAULTS, min_cutoff=m, beta=b, d_cutoff=d, dead_zone=z)
            for m in POSE_MIN_CUTOFFS for b in POSE_BETAS for d in POSE_D_CUTOFFS
            for z in POSE_DEAD_ZONES]
    with ProcessPoolExecutor(max(1, a.jobs)) as pool:
        figs = dict(zip(folders, pool.map(run_condition, folders.values(),
                                          [grid] * len(folders), [True] * len(folders))))
    lags = {prm: pose_lag(prm) for prm in grid}
    rows, best = _choose(grid, figs, ("pose_jitter", "pose_error"), lags, MAX_POSE_LAG)
    c0 = next(iter(figs))
    print("raw pose jitter / error (deg): " + "  ".join(
        f"{c}: {figs[c][0]['pose_jitter']['raw']:.3f} / {figs[c][0]['pose_error']['raw']:.3f}"
        for c in figs) + f"  (faces tracked {figs[c0][0]['faces_tracked']})")
    _print_rows(rows, best, figs, {p: f"{lags[p]:5.2f} deg" for p in grid}, "error")
    if a.json:
        a.json.write_text(json.dumps({"grid": figs, "ramp_lag_deg": [lags[p] for p in grid],
                                      "chosen": dataclasses.asdict(best[2]) if best else None},
                                     indent=1))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, required=True,
                    help="folder for the tuning photos (outside the repository)")
    ap.add_argument("--json", type=Path, default=None, help="write every figure here")
    ap.add_argument("--jobs", type=int, default=1, help="conditions run in parallel processes")
    ap.add_argument("--pose", action="store_true",
                    help="tune the head-pose filter (POSE_DEFAULTS) instead of the landmarks")
    a = ap.parse_args(argv)
    from facealign_cli.core.smoothing import LANDMARK_DEFAULTS

    folders = prepare(a.work) if not all(
        (a.work / f"helen_{c}.json").exists() for c, _ in CONDITIONS) else {
        c: a.work / f"helen_{c}" for c, _ in CONDITIONS}
    if a.pose:
        return main_pose(a, folders)
    grid = [dataclasses.replace(LANDMARK_DEFAULTS, min_cutoff=m, beta=b, d_cutoff=d,
                                dead_zone=z)
            for m in MIN_CUTOFFS for b in BETAS for d in D_CUTOFFS for z in DEAD_ZONES]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max(1, a.jobs)) as pool:
        figs = dict(zip(folders, pool.map(run_condition, folders.values(),
                                          [grid] * len(folders))))
    lags = {prm: slow_lag(prm) for prm in grid}
    rows, best = _choose(grid, figs, ("jitter", "moving_error"), lags, MAX_SLOW_LAG)
    _print_rows(rows, best, figs, {p: f"{100 * lags[p]:4.2f}%" for p in grid}, "moving")
    if a.json:
        a.json.write_text(json.dumps({"grid": figs, "chosen": dataclasses.asdict(best[2])
                                      if best else None}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
