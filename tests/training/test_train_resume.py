"""``facealign train`` survives an interruption: it resumes from ``last.pth`` (model,
optimiser, schedule, random state) at the last finished epoch and ends where an uninterrupted
run ends. Runs on a tiny training set built in the test from real AFLW crops (labels from the
3DMM mean face with random cameras, so no teacher run is needed)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from facealign_cli.core import geometry as G  # noqa: E402
from facealign_cli.core.morphable_model import load_morphable_model  # noqa: E402
from facealign_cli.training import train as T  # noqa: E402
from facealign_cli.training.data import choose_target_vertices  # noqa: E402


@pytest.fixture()
def tiny_cache(shared, tmp_path):
    import cv2

    d = shared / "data" / "aflw-train" / "images"
    names = sorted(p.name for p in d.glob("*.jpg"))[:48]
    crops = np.stack([cv2.imread(str(d / n)) for n in names])
    with open(shared / "teacher" / "param_mean_std_62d_120x120.pkl", "rb") as f:
        ms = pickle.load(f)
    rng = np.random.default_rng(0)
    params = (ms["mean"] + 0.3 * ms["std"] * rng.standard_normal((len(names), 62)))
    params = params.astype(np.float32)
    model = load_morphable_model()
    tidx = choose_target_vertices(model, 60)
    targets = G.params_to_crop_vertices(params, model, tidx)
    cache = tmp_path / "cache"
    cache.mkdir()
    np.savez(cache / "trainset_k60.npz", names=np.array([f"aflw/{n}" for n in names]),
             crops=crops, real_pts=np.full((len(names), 68, 2), np.nan, np.float32),
             params=params, targets=targets.astype(np.float32), target_index=tidx)
    return cache


def _cfg():
    return T.TrainConfig(arch="dws_s", epochs=3, batch_size=16, lr=1e-3, n_dense=60,
                         threads=1, seed=5)


def test_an_interrupted_run_resumes_at_its_last_epoch_and_ends_like_an_uninterrupted_one(
        shared, tiny_cache, tmp_path, monkeypatch):
    teacher = shared / "teacher" / "mb05_120x120.pth"
    full = T.train(_cfg(), shared, teacher, tmp_path / "full", tiny_cache)

    real_save = T._save_state
    calls = {"n": 0}

    def save_then_die(*a, **k):
        real_save(*a, **k)
        calls["n"] += 1
        if calls["n"] == 2:  # killed right after epoch 2's state reached the disk
            raise KeyboardInterrupt

    monkeypatch.setattr(T, "_save_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        T.train(_cfg(), shared, teacher, tmp_path / "cut", tiny_cache)
    monkeypatch.setattr(T, "_save_state", real_save)
    assert torch.load(tmp_path / "cut" / "last.pth", weights_only=False)["epoch"] == 2

    resumed = T.train(_cfg(), shared, teacher, tmp_path / "cut", tiny_cache)
    log = (tmp_path / "cut" / "train_log.txt").read_text()
    assert "resumed from" in log and "at epoch 2, step 6" in log
    a = torch.load(full, weights_only=False)
    b = torch.load(resumed, weights_only=False)
    assert a["steps"] == b["steps"] == 9
    for k, v in a["model"].items():
        torch.testing.assert_close(b["model"][k], v, rtol=1e-4, atol=1e-5, msg=k)


def test_resume_refuses_another_config(shared, tiny_cache, tmp_path):
    teacher = shared / "teacher" / "mb05_120x120.pth"
    cfg = _cfg()
    cfg.epochs = 1
    T.train(cfg, shared, teacher, tmp_path / "run", tiny_cache)
    other = _cfg()
    other.lr = 5e-4
    with pytest.raises(ValueError, match="another config"):
        T.train(other, shared, teacher, tmp_path / "run", tiny_cache)


def test_checkpoints_store_the_current_arch_name_and_old_runs_still_resume(
        shared, tiny_cache, tmp_path):
    """A recipe with an old arch name (``fan_s``) saves ``dws_s``; a ``last.pth`` written
    before the rename (config ``fan_s``) resumes under ``dws_s``."""
    teacher = shared / "teacher" / "mb05_120x120.pth"
    cfg = _cfg()
    cfg.arch, cfg.epochs = "fan_s", 1
    ck = torch.load(T.train(cfg, shared, teacher, tmp_path / "run", tiny_cache),
                    weights_only=False)
    assert ck["arch"] == ck["config"]["arch"] == "dws_s"
    last = tmp_path / "run" / "last.pth"
    st = torch.load(last, weights_only=False)
    assert st["config"]["arch"] == "dws_s"
    st["config"]["arch"] = "fan_s"  # as a run before the rename wrote it
    torch.save(st, last)
    again = _cfg()
    again.epochs = 1
    T.train(again, shared, teacher, tmp_path / "run", tiny_cache)
    assert "resumed from" in (tmp_path / "run" / "train_log.txt").read_text()
