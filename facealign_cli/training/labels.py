"""Refitted training labels (v2 recipe): the cached teacher training set of
:func:`facealign_cli.training.data.prepare_training_set`, its labels refitted to the real
landmarks (:mod:`facealign_cli.training.refit`), and the held-out validation split.

Labels come from the teacher, or (``labeller``) from the project's own student for a round of
self-training; either way they are flip-averaged and then refitted.

Split: the 337 300-W **AFW** faces are the validation set (manual 68-point annotations, not
AFLW2000-3D); they are never trained on. Training: the 19,080 AFLW faces and the 870 300-W
HELEN faces.

Written to ``<cache>/trainset_k<K>_refit_p<prior>.npz`` with the keys of the teacher set plus
``split`` (N,) ``"train"`` / ``"val"``, ``teacher_params`` (N, 62) and ``offsets`` (the AFLW
definition offsets, bins x 19 x 2); ``params``/``targets``/``real_pts`` hold the refitted labels.
Also ``label_quality.json`` beside it: NME (%) of the labels against the validation faces' 68
manual points, before and after refitting (to 19 AFLW-like points and to all 68).
"""

from __future__ import annotations

import json
import pickle
import time
from pathlib import Path

import numpy as np

from facealign_cli.core import geometry as G
from facealign_cli.core.morphable_model import load_morphable_model
from facealign_cli.evaluation.metrics import nme_box
from facealign_cli.models.weights import sha256_of
from facealign_cli.training import refit as R
from facealign_cli.training.data import prepare_training_set


def _teacher_std(teacher_weights: Path) -> np.ndarray:
    with open(Path(teacher_weights).with_name("param_mean_std_62d_120x120.pkl"), "rb") as f:
        return np.asarray(pickle.load(f)["std"], dtype=np.float64)


def _obs_from_68(pts68: np.ndarray, combo: np.ndarray) -> np.ndarray:
    """(N, 68, 2) points to (N, M, 2) observations through a (M, 68) combination."""
    return np.einsum("mj,njc->nmc", combo, pts68)


def prepare_refitted_set(shared: Path, teacher_weights: Path, cache: Path, n_dense: int = 1000,
                         prior: float = 100.0, log=print, labeller: Path | None = None) -> Path:
    """Build (or reuse) the refitted training set; see the module docstring.

    Raises:
        FileNotFoundError: a data folder or the teacher weights are missing.
    """
    tag = f"_self{sha256_of(labeller)[:12]}" if labeller else ""
    out = cache / f"trainset_k{n_dense}{tag}_refit_p{prior:g}.npz"
    if out.is_file():
        log(f"using cached refitted training set {out}")
        return out
    base = np.load(prepare_training_set(shared, teacher_weights, cache, n_dense, log=log,
                                        labeller=labeller))
    t0 = time.time()
    names = base["names"]
    params0, targets0, tidx = base["params"], base["targets"], base["target_index"]
    real0 = base["real_pts"]
    model = load_morphable_model()
    std = _teacher_std(teacher_weights)
    # prior centre: the teacher's parameters pulled onto its flip-averaged vertices
    p_fa = R.fit_to_vertices(params0, targets0, tidx, model, std)
    kp = model.keypoint_vertices
    lm_t = G.params_to_crop_vertices(p_fa, model, kp)[:, :2].transpose(0, 2, 1)  # (N, 68, 2)
    yaw = np.array([G.pose_from_camera(p)[0] for p in p_fa])
    is_aflw = np.char.startswith(names.astype(str), "aflw/")
    is_val = np.char.startswith(names.astype(str), "300w/afw/")
    is_w = ~is_aflw
    log(f"prior centres fitted in {time.time() - t0:.0f} s; {is_aflw.sum()} AFLW, "
        f"{(is_w & ~is_val).sum()} 300-W train, {is_val.sum()} validation faces")

    combo = R.aflw_obs_matrix()
    # the teacher's bias against iBUG on the 300-W training faces, for the AFLW combinations
    w_train = is_w & ~is_val
    bias = np.median(_obs_from_68(real0[w_train], combo) - _obs_from_68(lm_t[w_train], combo),
                     axis=0)
    lab = np.load(shared / "data" / "aflw-train" / "labels.npz")
    pos = {f"aflw/{n}": i for i, n in enumerate(lab["names"])}
    obs_a = R.aflw_observations(lab["pts21"][[pos[n] for n in names[is_aflw]]])
    teach_a = _obs_from_68(lm_t[is_aflw], combo)
    offsets = R.definition_offsets(obs_a, teach_a, yaw[is_aflw], bias)
    target_a = obs_a - offsets[R._yaw_bin(yaw[is_aflw])]
    weight_a = np.ones(len(combo), dtype=np.float32)

    params = p_fa.copy()
    params[is_aflw] = R.refit(p_fa[is_aflw], R.FitProblem(combo, target_a, weight_a), model,
                              std, prior=prior)
    w68 = np.ones(68, dtype=np.float32)
    w68[:17] = R.JAW_WEIGHT
    eye = np.eye(68, dtype=np.float32)
    params[is_w] = R.refit(p_fa[is_w], R.FitProblem(eye, real0[is_w], w68), model, std,
                           prior=prior)
    log(f"refitted in {time.time() - t0:.0f} s")

    # label quality on the validation faces (their refit is never trained on)
    gt = real0[is_val]
    quality = {"prior": prior, "faces": int(is_val.sum()),
               "teacher_flip_averaged": float(100 * nme_box(lm_t[is_val], gt).mean())}
    p19 = R.refit(p_fa[is_val], R.FitProblem(combo, _obs_from_68(gt, combo), weight_a), model,
                  std, prior=prior)
    for key, p in (("refit_19_aflw_like_points", p19), ("refit_68_points", params[is_val])):
        lm = G.params_to_crop_vertices(p, model, kp)[:, :2].transpose(0, 2, 1)
        quality[key] = float(100 * nme_box(lm, gt).mean())
    quality["aflw_definition_offsets_px_median_abs"] = {
        str(a): float(np.median(np.abs(offsets[:, i]))) for i, (a, _) in enumerate(R.AFLW_OBS)}
    log(f"label quality (NME % on {quality['faces']} validation faces): {quality}")

    targets = G.params_to_crop_vertices(params, model, tidx)
    real = real0.copy()
    # AFLW real points for the landmark loss: the definition-corrected observations that stand
    # for a single iBUG point
    ra = np.full((is_aflw.sum(), 68, 2), np.nan, dtype=np.float32)
    for i, (_, pts) in enumerate(R.AFLW_OBS):
        if len(pts) == 1:
            ra[:, pts[0]] = target_a[:, i]
    real[is_aflw] = ra
    split = np.where(is_val, "val", "train")
    tmp = out.with_suffix(".tmp.npz")
    np.savez(tmp, names=names, crops=base["crops"], real_pts=real, params=params,
             targets=targets.astype(np.float32), target_index=tidx, split=split,
             teacher_params=params0, offsets=offsets)
    tmp.replace(out)
    out.with_name(out.stem + "_label_quality.json").write_text(json.dumps(quality, indent=2))
    return out
