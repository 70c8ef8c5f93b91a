"""Label refitting: the teacher's 62 parameters of each training face, refitted to the face's
real annotated landmarks under a Gaussian prior towards the teacher (training code only).

Why: the field's training labels (300W-LP, AFLW2000-3D's ground truth) are 3DMM fits to
annotated landmarks (Zhu et al., "Face Alignment Across Large Poses: A 3D Solution", CVPR 2016);
a student distilled from a teacher alone cannot become better than the teacher's labels.

Observations per face (crop pixels of the 120-px crop, x right, y down):

* **300-W faces**: the 68 iBUG points, each observing its own landmark vertex; the jaw contour
  (0-16) is down-weighted by :data:`JAW_WEIGHT` (on turned faces the annotated silhouette is not
  the 3D contour the model's landmark vertices stand for).
* **AFLW faces**: the visible AFLW 21 points that have an iBUG counterpart (:data:`AFLW_OBS`):
  brows, eye corners, eye centres (mean of the four iBUG lid points), nose wings and tip, mouth
  corners, mouth centre (mean of the inner lip points 62 and 66), chin. The ear lobes (12, 16)
  are not used.

AFLW's points follow AFLW's definitions, not iBUG's (the issue that introduced this module
measured that an uncorrected AFLW refit moves the landmarks towards AFLW's conventions). So each
AFLW observation is **corrected for the definition offset** before fitting: with ``r`` the AFLW
point minus the teacher's flip-averaged iBUG point on the same face, and ``b`` the 300-W point
minus the teacher's point (the teacher's own bias against iBUG, on the 300-W training faces),
the offset of AFLW's definition is ``d(point, yaw bin) = median r - median b``
(:func:`definition_offsets`; signed yaw in 15-degree bins). The target of the refit is
``AFLW point - d``: the refit then takes from AFLW only how each face departs from the typical
AFLW-to-teacher relation, expressed in iBUG's definitions.

Objective (per face, minimised over the 62 parameters ``p`` by batched Adam, fixed number of
steps, deterministic on CPU)::

    sum_i w_i |proj_i(p) - target_i|^2  +  prior * sum_k ((p_k - p0_k) / std_k)^2

``proj_i`` is the 2D crop-frame projection of the observation's landmark-vertex combination;
``p0`` the teacher's label (its prediction of the unflipped crop, first pulled onto the
flip-averaged target vertices, see :func:`fit_to_vertices`); ``std`` the teacher's parameter
std (``param_mean_std_62d_120x120.pkl``). The camera's z translation (index 11) is held fixed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from facealign_cli.training.decoder import VertexDecoder

SIZE = 120  # crop side (px) of the observations
JAW_WEIGHT = 0.5
# observations made from the AFLW 21 points: (AFLW index, iBUG points averaged)
AFLW_OBS: tuple[tuple[int, tuple[int, ...]], ...] = (
    (0, (17,)), (1, (19,)), (2, (21,)), (3, (22,)), (4, (24,)), (5, (26,)),
    (6, (36,)), (7, (37, 38, 40, 41)), (8, (39,)), (9, (42,)), (10, (43, 44, 46, 47)),
    (11, (45,)), (13, (31,)), (14, (30,)), (15, (35,)), (17, (48,)), (18, (62, 66)),
    (19, (54,)), (20, (8,)),
)
YAW_EDGES = np.arange(-90.0, 91.0, 15.0)


def aflw_obs_matrix() -> np.ndarray:
    """(19, 68) float32: row ``i`` averages the iBUG landmarks that AFLW observation ``i``
    stands for (:data:`AFLW_OBS`)."""
    m = np.zeros((len(AFLW_OBS), 68), dtype=np.float32)
    for i, (_, pts) in enumerate(AFLW_OBS):
        m[i, list(pts)] = 1.0 / len(pts)
    return m


def aflw_observations(pts21: np.ndarray) -> np.ndarray:
    """(N, 21, 2) AFLW points (-1 = missing) to (N, 19, 2) float32 observations, NaN where
    missing, in the order of :data:`AFLW_OBS`."""
    idx = [a for a, _ in AFLW_OBS]
    obs = np.asarray(pts21, dtype=np.float32)[:, idx].copy()
    obs[(obs < 0).any(axis=2)] = np.nan
    return obs


def _yaw_bin(yaw: np.ndarray) -> np.ndarray:
    return np.clip(np.digitize(yaw, YAW_EDGES) - 1, 0, len(YAW_EDGES) - 2)


def definition_offsets(obs: np.ndarray, teacher_obs: np.ndarray, yaw: np.ndarray,
                       bias: np.ndarray) -> np.ndarray:
    """Per observation and signed-yaw bin, the offset of AFLW's point definition from iBUG's.

    Args:
        obs: (N, M, 2) AFLW observations (NaN = missing), crop pixels.
        teacher_obs: (N, M, 2) the same observations made from the teacher's landmarks.
        yaw: (N,) signed yaw of the teacher's label, degrees.
        bias: (M, 2) median of (iBUG point - teacher point) over the 300-W training faces for
            the same combinations of iBUG points.

    Returns:
        (n_bins, M, 2) float32 ``median(obs - teacher_obs) - bias`` per bin (the global median
        where a bin has fewer than 30 faces with that point).
    """
    r = obs - teacher_obs
    glob = np.nanmedian(r, axis=0)
    b = _yaw_bin(yaw)
    out = np.empty((len(YAW_EDGES) - 1,) + glob.shape, dtype=np.float32)
    for k in range(out.shape[0]):
        rk = r[b == k]
        n = np.isfinite(rk[..., 0]).sum(axis=0) if len(rk) else np.zeros(r.shape[1])
        with np.errstate(all="ignore"):
            med = np.nanmedian(rk, axis=0) if len(rk) else glob
        out[k] = np.where((n >= 30)[:, None], med, glob) - bias
    return out


@dataclass
class FitProblem:
    """Observations of a set of faces, ready for :func:`refit`.

    Attributes:
        combo: (M, 68) float32 landmark combination of each observation (shared by all faces).
        target: (N, M, 2) float32 target points, crop pixels (NaN = not observed).
        weight: (M,) float32 weight of each observation.
    """

    combo: np.ndarray
    target: np.ndarray
    weight: np.ndarray


def _adam_fit(p0: np.ndarray, std: np.ndarray, data_loss, prior: float, steps: int,
              lr: float, batch: int) -> np.ndarray:
    """Minimise ``data_loss(p, sl) + prior * |(p - p0) / std|^2`` per face, in batches."""
    out = np.empty_like(p0, dtype=np.float32)
    s = torch.from_numpy(std.astype(np.float64))
    for i in range(0, len(p0), batch):
        sl = slice(i, i + batch)
        base = torch.from_numpy(p0[sl].astype(np.float64))
        z = torch.zeros_like(base, requires_grad=True)  # normalised update (p - p0) / std
        opt = torch.optim.Adam([z], lr=lr)
        keep = torch.ones(62, dtype=torch.float64)
        keep[11] = 0.0  # the camera's z translation is invisible in the image: held fixed
        for _ in range(steps):
            p = base + z * s * keep
            loss = data_loss(p, sl) + prior * (z * keep).square().sum(dim=1)
            opt.zero_grad()
            loss.sum().backward()
            opt.step()
        out[sl] = (base + z.detach() * s * keep).numpy().astype(np.float32)
    return out


def fit_to_vertices(params: np.ndarray, targets: np.ndarray, target_index: np.ndarray, model,
                    std: np.ndarray, prior: float = 1.0, steps: int = 200, lr: float = 0.02,
                    batch: int = 2048) -> np.ndarray:
    """Parameters whose vertices best match given (flip-averaged) target vertices.

    Args:
        params: (N, 62) starting parameters (the teacher's prediction of each crop).
        targets: (N, 3, K) float32 target vertices, crop frame (x right, y down).
        target_index: (K,) vertex indices of ``targets``.
        std: (62,) parameter scale for the prior.

    Returns:
        (N, 62) float32; loss = mean squared 3D distance over the K vertices (crop pixels^2)
        plus ``prior`` times the squared normalised change.
    """
    dec = VertexDecoder(model, target_index).double()
    t = torch.from_numpy(targets.astype(np.float64))

    def data_loss(p, sl):
        return (dec(p) - t[sl]).square().sum(dim=1).mean(dim=1)

    return _adam_fit(params, std, data_loss, prior, steps, lr, batch)


def refit(params: np.ndarray, problem: FitProblem, model, std: np.ndarray,
          prior: float = 100.0, steps: int = 400, lr: float = 0.02,
          batch: int = 2048) -> np.ndarray:
    """Refit parameters to observed landmarks under a Gaussian prior (module docstring).

    Args:
        params: (N, 62) prior centres ``p0``.
        problem: the observations of the N faces.
        model: the 3DMM (:class:`~facealign_cli.core.morphable_model.MorphableModel`).
        std: (62,) float parameter std of the prior (the teacher's).
        prior: weight of the prior against the squared crop-pixel error summed over points.
        steps: Adam steps (fixed: the result is deterministic on CPU).

    Returns:
        (N, 62) float32 refitted parameters; faces without any observation keep ``p0``.
    """
    dec = VertexDecoder(model, model.keypoint_vertices).double()
    combo = torch.from_numpy(problem.combo.astype(np.float64))
    tgt = np.nan_to_num(problem.target).astype(np.float64)
    seen = np.isfinite(problem.target[..., 0]).astype(np.float64) * problem.weight[None]
    tgt_t, seen_t = torch.from_numpy(tgt), torch.from_numpy(seen)

    def data_loss(p, sl):
        lm = dec(p)[:, :2]  # (B, 2, 68)
        proj = torch.einsum("mj,bcj->bmc", combo, lm)
        return ((proj - tgt_t[sl]).square().sum(dim=2) * seen_t[sl]).sum(dim=1)

    return _adam_fit(params, std, data_loss, prior, steps, lr, batch)
