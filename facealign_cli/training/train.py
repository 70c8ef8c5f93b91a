"""The training loop of ``facealign train``: distil the teacher's flip-averaged vertices into
the project's regressor, from random initialisation, with a vertex-distance loss.

Loss (per face, crop pixels of the 120-px crop): the mean Euclidean 3D distance between
predicted and target vertices over the dense subset (3DDFA's VDC family: a loss on vertices
rather than on parameters, Zhu et al. 2017 / Guo et al. 2020), plus ``w_landmarks`` times the
mean 2D distance over the 68 landmarks, plus ``w_real`` times the mean 2D distance to the real
annotated landmarks (68 on 300-W, the visible ones of the AFLW 21 points).

Augmentation: random similarity (scale, rotation, shift) applied to crop and targets alike,
horizontal flip (mirror-mapped targets), colour jitter, grey scale, blur and random occluding
rectangles.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import torch

from facealign_cli.core.geometry import pose_from_camera, roi_box_from_landmarks
from facealign_cli.core.morphable_model import load_morphable_model
from facealign_cli.core.regression import CropFitter
from facealign_cli.core.symmetry import ibug68_flip_permutation, vertex_mirror_map
from facealign_cli.models.regressor import FaceAlignNet, normalise_crops, sha256_of
from facealign_cli.models.weights import canonical_arch
from facealign_cli.training.config import (
    TEACHER_INIT,
    TrainConfig,
    same_recipe,
    stored_config,
)
from facealign_cli.training.convert import convert_teacher
from facealign_cli.training.data import SIZE, prepare_training_set
from facealign_cli.training.decoder import VertexDecoder
from facealign_cli.training.labels import prepare_refitted_set
from facealign_cli.training.validation import (
    aflw_validation_split,
    validate,
    validate_aflw,
    yaw_bins,
    zoom_crops,
)


class Augmenter:
    """Random augmentation of (crop, targets) pairs; numpy + OpenCV, one face at a time."""

    def __init__(self, cfg: TrainConfig, target_index: np.ndarray, model, rng: np.random.Generator):
        self.cfg = cfg
        self.rng = rng
        mirror = vertex_mirror_map(model)
        pos = {int(v): i for i, v in enumerate(target_index)}
        flip = np.array([pos.get(int(mirror[v]), i) for i, v in enumerate(target_index)])
        flip[:68] = ibug68_flip_permutation()
        self.flip_perm = flip  # target column i of the mirror image = column flip[i] of original
        self.lmk_perm = ibug68_flip_permutation()
        self.box_error = load_box_error(cfg.box_error) if cfg.box_error else None

    def __call__(self, crop, tgt, real, params=None):
        """Augment one face.

        Args:
            crop: (120, 120, 3) uint8 BGR.
            tgt: (3, K) float32 target vertices, crop frame (x right, y down, z to viewer).
            real: (68, 2) float32 real landmarks (NaN where unknown), crop pixels.
            params: optional (62,) teacher parameters of the unaugmented crop.

        Returns:
            ``(crop, tgt, real, params)``; ``params`` is the exactly transformed parameter
            vector, or ``None`` when the face was mirrored (no parameter-space mirror exists).
        """
        cfg, rng = self.cfg, self.rng
        tgt = tgt.copy()
        real = real.copy()
        flipped = False
        if cfg.flip and rng.random() < 0.5:
            flipped = True
            crop = crop[:, ::-1]
            tgt = tgt[:, self.flip_perm]
            tgt[0] = (SIZE - 1) - tgt[0]
            real = real[self.lmk_perm]
            real[:, 0] = (SIZE - 1) - real[:, 0]
        sigma = cfg.rot_sigma or cfg.rot_deg / 2
        a = math.radians(rng.normal(0, sigma)) if cfg.rot_deg else 0.0
        a = float(np.clip(a, -math.radians(cfg.rot_deg), math.radians(cfg.rot_deg)))
        R = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        c = (SIZE - 1) / 2
        if self.box_error is not None and params is not None and rng.random() < cfg.box_error_p:
            # a detector-like crop: the landmark roi box moved and resized by a measured error
            # of the detector's roi box on a face of the same |yaw| (scripts/measure_box_error.py)
            yaw = float(pose_from_camera(params)[0]) * (-1 if flipped else 1)
            pool = self.box_error[int(yaw_bins(np.array([yaw]))[0])]
            dxs, dys, dlog = pool[rng.integers(len(pool))]
            roi = roi_box_from_landmarks(tgt[:2, :68].T)
            side = float(roi[2] - roi[0])
            centre = (roi[:2] + roi[2:]) / 2 + np.array([dxs * np.sign(yaw), dys]) * side
            s = SIZE / (side * math.exp(dlog) * cfg.roi_scale)
            A = s * R
            b = np.array([c, c]) - A @ centre
        else:
            s = math.exp(rng.uniform(-cfg.scale_jitter, cfg.scale_jitter)) / cfg.roi_scale
            dx, dy = rng.uniform(-cfg.shift_jitter, cfg.shift_jitter, 2) * SIZE
            A = s * R
            b = np.array([c + dx, c + dy]) - A @ np.array([c, c])
        M = np.hstack([A, b[:, None]]).astype(np.float32)
        crop = cv2.warpAffine(np.ascontiguousarray(crop), M, (SIZE, SIZE), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        tgt[:2] = A @ tgt[:2] + b[:, None]
        tgt[2] = s * tgt[2]
        real = real @ A.T + b
        crop = self._photometric(crop)
        p_out = None
        if params is not None and not flipped:
            p_out = transform_params(params, A, b, s)
        return crop, tgt.astype(np.float32), real.astype(np.float32), p_out

    def _photometric(self, crop):
        rng = self.rng
        img = crop.astype(np.float32)
        img = img * rng.uniform(0.6, 1.4) + rng.uniform(-30, 30)
        img = img * rng.uniform(0.85, 1.15, size=3)  # colour balance
        if rng.random() < 0.1:
            img[:] = img.mean(axis=2, keepdims=True)
        img = np.clip(img, 0, 255).astype(np.uint8)
        if rng.random() < 0.15:
            k = int(rng.choice([3, 5]))
            img = cv2.GaussianBlur(img, (k, k), 0)
        if self.cfg.photo_p:
            img = self._photo_like(img)
        if rng.random() < self.cfg.occlusion_p:
            w, h = (rng.uniform(0.15, 0.45, 2) * SIZE).astype(int)
            x, y = rng.integers(0, SIZE - w), rng.integers(0, SIZE - h)
            img[y:y + h, x:x + w] = rng.integers(0, 256, 3)
        return img


    def _photo_like(self, img: np.ndarray) -> np.ndarray:
        """Degradations of real photo archives, each with probability ``photo_p``: down-and-up
        sampling to 0.35-1x resolution, motion blur (3-9 px, any direction), Gaussian noise
        (sigma 2-12 grey levels), JPEG at quality 30-95 (in that order, as a camera then an
        archive would apply them)."""
        rng, p = self.rng, self.cfg.photo_p
        if rng.random() < p:
            f = rng.uniform(0.35, 1.0)
            m = max(8, int(round(SIZE * f)))
            small = cv2.resize(img, (m, m), interpolation=cv2.INTER_AREA)
            img = cv2.resize(small, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
        if rng.random() < p:
            k = int(rng.integers(3, 10))
            ker = np.zeros((k, k), np.float32)
            ker[k // 2] = 1.0 / k
            R = cv2.getRotationMatrix2D(((k - 1) / 2, (k - 1) / 2), rng.uniform(0, 180), 1.0)
            ker = cv2.warpAffine(ker, R, (k, k))
            img = cv2.filter2D(img, -1, ker / max(float(ker.sum()), 1e-6))
        if rng.random() < p:
            noise = rng.normal(0, rng.uniform(2, 12), img.shape)
            img = np.clip(img + noise, 0, 255).astype(np.uint8)
        if rng.random() < p:
            q = int(rng.integers(30, 96))
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])
            if ok:
                img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        return img


def load_box_error(path: str | Path) -> list[np.ndarray]:
    """The detector's measured roi-box errors (``scripts/measure_box_error.py``), by |yaw| bin.

    Returns:
        Three (M_b, 3) float64 arrays of ``(dx, dy, dlog)`` rows (centre offsets in roi sides,
        ``dx`` signed by the face's yaw; log side ratio), faces the detector found only.

    Raises:
        FileNotFoundError: no such file; ValueError: a bin has no sample.
    """
    with np.load(path) as d:
        ok = d["found"].astype(bool)
        rows = np.stack([d["dx"], d["dy"], d["dlog"]], axis=1)[ok].astype(np.float64)
        bins = yaw_bins(d["yaw"][ok])
    out = [rows[bins == b] for b in range(3)]
    if any(len(r) == 0 for r in out):
        raise ValueError(f"{path}: a |yaw| bin has no measured box")
    return out


def transform_params(params: np.ndarray, A: np.ndarray, b: np.ndarray, s: float) -> np.ndarray:
    """Parameters of a face after the crop-pixel similarity ``p' = A p + b`` (y down frame).

    With ``u = v_x - 1`` and ``w = SIZE - v_y`` (3DDFA's crop convention) and ``D = diag(1, -1)``,
    the camera's first two rows become ``D A D P[:2]`` with translation
    ``D A D t + D (A c1 + b) + c2`` where ``c1 = (-1, SIZE)``, ``c2 = (1, SIZE)``; the third row
    is scaled by ``s``. Shape and expression coefficients are unchanged.

    Returns:
        (62,) float32.
    """
    p = np.asarray(params, dtype=np.float64).copy()
    P = p[:12].reshape(3, 4)
    D = np.diag([1.0, -1.0])
    DAD = D @ A @ D
    c1, c2 = np.array([-1.0, SIZE]), np.array([1.0, SIZE])
    P2 = P.copy()
    P2[:2, :3] = DAD @ P[:2, :3]
    P2[:2, 3] = DAD @ P[:2, 3] + D @ (A @ c1 + b) + c2
    P2[2] = s * P[2]
    p[:12] = P2.reshape(-1)
    return p.astype(np.float32)


def _log(msg: str, logf=None):
    line = f"[{time.strftime('%H:%M:%S')}] {msg}"
    print(line, flush=True)
    if logf:
        logf.write(line + "\n")
        logf.flush()


def train(cfg: TrainConfig, shared: Path, teacher_weights: Path, out_dir: Path,
          cache: Path, eval_fn=None) -> Path:
    """Train a regressor from random initialisation and write ``out_dir/model.pth``.

    Args:
        cfg: the settings.
        shared: the data folder (``../shared``).
        teacher_weights: the teacher's ``.pth`` (its mean/std ``.pkl`` beside it).
        out_dir: where the checkpoint, ``train_log.txt`` and ``summary.json`` go.
        cache: folder for the prepared training set.
        eval_fn: optional callable(checkpoint_path) -> dict of metrics, run after training.

    Returns:
        Path of the checkpoint.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    logf = open(out_dir / "train_log.txt", "a")
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    t_start = time.time()
    if cfg.labels == "refit":
        data_path = prepare_refitted_set(shared, teacher_weights, cache, cfg.n_dense, cfg.prior,
                                         log=lambda m: _log(m, logf),
                                         labeller=Path(cfg.labeller) if cfg.labeller else None)
    else:
        data_path = prepare_training_set(shared, teacher_weights, cache, cfg.n_dense,
                                         log=lambda m: _log(m, logf))
    data = np.load(data_path)
    crops, targets, real = data["crops"], data["targets"], data["real_pts"]
    params, tidx = data["params"], data["target_index"]
    names = data["names"]
    val, val_aflw, held = _hold_out(cfg, shared, names, crops, real)
    val_fitter = CropFitter(load_morphable_model(), ("landmarks",), flip=True)
    if held is not None:
        keep = ~held
        crops, targets, real, params = crops[keep], targets[keep], real[keep], params[keep]
        names = names[keep]
    if not cfg.real_aflw:  # real-landmark loss on the 300-W 68 points only
        real = real.copy()
        real[np.char.startswith(names.astype(str), "aflw/")] = np.nan
    if cfg.limit_faces:
        sel = rng.permutation(len(crops))[:cfg.limit_faces]
        crops, targets, real, params = crops[sel], targets[sel], real[sel], params[sel]
    n = len(crops)
    model = load_morphable_model()
    pmean = params.mean(0).astype(np.float32)
    pstd = (params.std(0) + 1e-6).astype(np.float32)
    # P[2, 3] (the camera's z translation) is nearly constant and invisible in the image: give it
    # unit scale and leave it out of the parameter loss.
    pstd[11] = max(float(pstd[11]), 1.0)
    param_dims = torch.tensor([i for i in range(62) if i != 11])
    net = FaceAlignNet(cfg.arch, stem=cfg.stem)
    if cfg.init_from:
        # "teacher": 3DDFA-V2's own weights, converted to the mb05 layout by the project's code
        # (the v4 fine-tune); a path: the project's checkpoint of an earlier stage
        if cfg.init_from == TEACHER_INIT:
            prev = convert_teacher(teacher_weights)
            src = f"the teacher {teacher_weights} (sha256 {sha256_of(teacher_weights)[:16]})"
        else:
            prev = torch.load(cfg.init_from, map_location="cpu", weights_only=False)
            src = f"{cfg.init_from} (sha256 {sha256_of(cfg.init_from)[:16]})"
        net.load_state_dict(prev["model"])
        pmean = np.asarray(prev["param_mean"], dtype=np.float32)
        pstd = np.asarray(prev["param_std"], dtype=np.float32)
        _log(f"initialised from {src}", logf)
    else:
        with torch.no_grad():  # start at the mean face
            net.fc.weight.mul_(0.01)
            net.fc.bias.zero_()
    net = net.to(memory_format=torch.channels_last)  # NHWC: much faster depthwise convs on CPU
    dec = VertexDecoder(model, tidx)
    t_mean, t_std = torch.from_numpy(pmean), torch.from_numpy(pstd)
    aug = Augmenter(cfg, tidx, model, rng)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = n // cfg.batch_size
    total = steps_per_epoch * cfg.epochs
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(total, 100),
                                                pct_start=0.05, div_factor=20,
                                                final_div_factor=200)
    _log(f"training {cfg.arch} on {n} faces, {total} steps, config {asdict(cfg)}", logf)
    step, epoch, best = 0, 0, None
    last = out_dir / "last.pth"
    if last.is_file():  # resume an interrupted run of the same config
        st = torch.load(last, map_location="cpu", weights_only=False)
        if not same_recipe(st["config"], cfg):
            raise ValueError(f"{last} was written by another config; use another --out")
        net.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        step, epoch, best = st["steps"], st["epoch"], st.get("best")
        rng.bit_generator.state = st["rng"]
        torch.set_rng_state(st["torch_rng"])
        aug.rng = rng
        t_start -= st["wall_time_s"]
        _log(f"resumed from {last} at epoch {epoch}, step {step}", logf)
    net.train()
    # the benchmark averages the three |yaw| bins equally while profiles are rarer in the data:
    # optionally draw faces with per-bin weights (yaw of the teacher's labels)
    yaw = np.abs([pose_from_camera(p)[0] for p in params])
    wbin = np.asarray(cfg.yaw_weights, dtype=np.float64)
    wface = wbin[np.digitize(yaw, [30.0, 60.0], right=True)]
    wface /= wface.sum()
    _log(f"faces per |yaw| bin: {np.bincount(np.digitize(yaw, [30.0, 60.0], right=True))}", logf)
    while step < total:
        if np.allclose(wbin, wbin[0]):
            order = rng.permutation(n)
        else:
            order = rng.choice(n, size=n, replace=True, p=wface)
        run_loss, t_ep = 0.0, time.time()
        for b in range(steps_per_epoch):
            if step >= total:
                break
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            xs, ts, rs, ps, pm = [], [], [], [], []
            for i in idx:
                c, t, r, pp = aug(crops[i], targets[i], real[i], params[i])
                xs.append(c)
                ts.append(t)
                rs.append(r)
                pm.append(pp is not None)
                ps.append(pp if pp is not None else params[i])
            x = normalise_crops(np.stack(xs)).contiguous(memory_format=torch.channels_last)
            tgt = torch.from_numpy(np.stack(ts))
            rl = torch.from_numpy(np.stack(rs))
            pn_tgt = (torch.from_numpy(np.stack(ps)) - t_mean) / t_std
            pmask = torch.tensor(pm)
            out = net(x)
            p = out * t_std + t_mean
            v = dec(p)
            if pmask.any():
                param_l = (out[pmask][:, param_dims] - pn_tgt[pmask][:, param_dims]).square().mean()
            else:
                param_l = torch.zeros(())
            dense = (v[:, :, 68:] - tgt[:, :, 68:]).norm(dim=1).mean()
            lmk = (v[:, :2, :68] - tgt[:, :2, :68]).norm(dim=1).mean()
            have = ~torch.isnan(rl[..., 0])
            if have.any():
                d = (v[:, :2, :68].transpose(1, 2) - torch.nan_to_num(rl)).norm(dim=2)
                real_l = d[have].mean()
            else:
                real_l = torch.zeros(())
            loss = dense + cfg.w_landmarks * lmk + cfg.w_real * real_l + cfg.w_param * param_l
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            run_loss += loss.item()
            if step % 50 == 0:
                _log(f"step {step}/{total} loss {loss.item():.3f} dense {dense.item():.3f} "
                     f"lmk {lmk.item():.3f} real {real_l.item():.3f} "
                     f"param {param_l.item():.3f} lr {sched.get_last_lr()[0]:.2e}", logf)
        epoch += 1
        msg = (f"epoch {epoch} done: mean loss {run_loss / max(b + 1, 1):.3f} "
               f"in {time.time() - t_ep:.0f} s")
        ck = _save(net, cfg, pmean, pstd, out_dir / "model.pth", t_start, step)
        _save(net, cfg, pmean, pstd, out_dir / f"epoch_{epoch:02d}.pth", t_start, step)
        scores = _validation_scores(net, val, val_aflw, t_mean, t_std, val_fitter, cfg)
        if scores:
            v_nme = scores["afw"] if cfg.choose_on == "afw" else scores["aflw"]["mean"]
            msg += f"; validation {json.dumps(scores)}"
            with open(out_dir / "validation.jsonl", "a") as vf:
                vf.write(json.dumps({"epoch": epoch, "steps": step, **scores}) + "\n")
            if best is None or v_nme < best["nme"]:
                best = {"nme": v_nme, "epoch": epoch, "steps": step, "chosen_on": cfg.choose_on,
                        **scores}
                _save(net, cfg, pmean, pstd, out_dir / "best.pth", t_start, step,
                      extra={"validation": best})
                msg += " (best)"
            net.train()
        _log(msg, logf)
        _save_state(last, net, opt, sched, cfg, step, epoch, best, rng, t_start)
    ck = out_dir / "model.pth"
    if best is not None and (out_dir / "best.pth").is_file():  # chosen on the validation split
        (out_dir / "best.pth").replace(ck)
        _log(f"kept the epoch-{best['epoch']} checkpoint (validation NME {best['nme']:.3f} %)",
             logf)
    summary = {"config": stored_config(cfg), "steps": step,
               "wall_time_s": round(time.time() - t_start), "checkpoint": str(ck),
               "sha256": sha256_of(ck), "validation": best}
    if eval_fn is not None:
        summary["metrics"] = eval_fn(ck)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    _log(f"done: {summary}", logf)
    return ck


def _hold_out(cfg: TrainConfig, shared: Path, names, crops, real):
    """The validation splits (:mod:`facealign_cli.training.validation`) and the mask of the
    faces they take out of training.

    Returns:
        ``(afw, aflw, held)``: ``(crops, real)`` of the AFW split or None; ``(crops, real,
        bins)`` of the AFLW split or None; (N,) bool mask of held-out faces or None.
    """
    names = names.astype(str)
    held = np.zeros(len(names), dtype=bool)
    zoom = 1.0 / cfg.roi_scale
    afw = aflw = None
    if cfg.hold_out_val:
        is_val = np.char.startswith(names, "300w/afw/")
        afw = zoom_crops(crops[is_val], real[is_val], zoom)
        held |= is_val
    if cfg.val_aflw:
        with np.load(shared / "data" / "aflw-train" / "labels.npz") as lab:
            aflw_names, aflw_yaw = lab["names"].astype(str), lab["yaw"]
        rows = aflw_validation_split(aflw_yaw, cfg.val_aflw)
        pos = {n: i for i, n in enumerate(names)}
        idx = np.array([pos[f"aflw/{aflw_names[r]}"] for r in rows])
        aflw = (*zoom_crops(crops[idx], real[idx], zoom), yaw_bins(aflw_yaw[rows]))
        held[idx] = True
    return afw, aflw, (held if held.any() else None)


def _validation_scores(net, afw, aflw, t_mean, t_std, fitter, cfg: TrainConfig) -> dict:
    """``{"afw": NME %, "aflw": {"bins", "mean"}}`` for the splits the recipe holds out."""
    scores = {}
    if afw is not None:
        scores["afw"] = round(validate(net, afw[0], afw[1], t_mean, t_std, fitter), 4)
    if aflw is not None:
        scores["aflw"] = validate_aflw(net, aflw[0], aflw[1], aflw[2], t_mean, t_std, fitter,
                                       1.0 / cfg.roi_scale)
    return scores


def _save_state(path: Path, net, opt, sched, cfg, step, epoch, best, rng, t_start) -> None:
    """Everything needed to resume a run after its last finished epoch."""
    st = {"model": net.state_dict(), "optimizer": opt.state_dict(),
          "scheduler": sched.state_dict(), "config": stored_config(cfg), "steps": step,
          "epoch": epoch, "best": best, "rng": rng.bit_generator.state,
          "torch_rng": torch.get_rng_state(), "wall_time_s": round(time.time() - t_start)}
    tmp = path.with_suffix(".tmp")
    torch.save(st, tmp)
    tmp.replace(path)


def _save(net, cfg, pmean, pstd, path: Path, t_start: float, step: int,
          extra: dict | None = None) -> Path:
    ck = {"model": net.state_dict(), "arch": canonical_arch(cfg.arch), "stem": cfg.stem,
          "input_size": SIZE, "param_mean": pmean, "param_std": pstd,
          "config": stored_config(cfg), "steps": step,
          "wall_time_s": round(time.time() - t_start), **(extra or {})}
    tmp = path.with_suffix(".tmp")
    torch.save(ck, tmp)
    tmp.replace(path)
    return path
