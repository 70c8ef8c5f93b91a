"""The 3DDFA-V2 teacher converted to facealign's ``mb05`` layout computes what the teacher
computes: the same 62 parameters, to float32 rounding, on real face crops; and ``facealign train``
starts a fine-tune from it (``init_from = "teacher"``)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from facealign_cli.models.baseline_3ddfa import Baseline3DDFA  # noqa: E402
from facealign_cli.models.regressor import Regressor  # noqa: E402
from facealign_cli.training import convert as C  # noqa: E402
from facealign_cli.training.config import TrainConfig  # noqa: E402
from facealign_cli.training.validation import aflw_validation_split, yaw_bins  # noqa: E402


def _real_crops(shared, n=24):
    d = shared / "data" / "aflw-train" / "images"
    names = sorted(p.name for p in d.glob("*.jpg"))[::500][:n]
    return np.stack([cv2.imread(str(d / name)) for name in names])


def test_the_converted_teacher_regresses_the_teachers_parameters(shared, teacher_weights,
                                                                 tmp_path):
    out = tmp_path / "teacher_mb05.pth"
    ck = C.convert_teacher(teacher_weights, out)
    assert ck["arch"] == "mb05" and out.is_file()
    crops = _real_crops(shared)
    want = Baseline3DDFA(teacher_weights).predict(crops)
    got = Regressor(out).predict(crops)
    assert got.shape == want.shape == (len(crops), 62)
    # same network, same tensors: equal to float32 rounding (relative to each parameter's scale)
    scale = np.abs(want).max(axis=0) + 1e-6
    assert np.max(np.abs(got - want) / scale) < 1e-4
    # and the crops differ enough for the check to mean something
    assert np.ptp(want[:, :12], axis=0).max() > 1e-3


def test_a_state_dict_of_another_network_is_refused(teacher_weights):
    sd = torch.load(teacher_weights, map_location="cpu", weights_only=True)
    sd = dict(sd.get("state_dict", sd))
    with pytest.raises(KeyError, match="not a tensor"):
        C.convert_state_dict({**sd, "head.weight": torch.zeros(1)})
    del sd[next(k for k in sd if "dw3_1.conv_sep" in k)]
    with pytest.raises(KeyError, match="no tensors for features.5.pw"):
        C.convert_state_dict(sd)


def test_the_aflw_validation_split_is_fixed_and_balanced_across_yaw(shared):
    yaw = np.load(shared / "data" / "aflw-train" / "labels.npz")["yaw"]
    a = aflw_validation_split(yaw, 1000)
    assert np.array_equal(a, aflw_validation_split(yaw, 1000))  # the same for every run
    assert len(np.unique(a)) == 1000
    assert np.bincount(yaw_bins(yaw[a]), minlength=3).tolist() == [334, 333, 333]
    with pytest.raises(ValueError, match="bin 2"):
        aflw_validation_split(yaw, 3 * int((yaw_bins(yaw) == 2).sum()) + 3)


def test_init_from_teacher_starts_training_from_the_converted_weights(shared, teacher_weights,
                                                                     tmp_path):
    from facealign_cli.core import geometry as G
    from facealign_cli.core.morphable_model import load_morphable_model
    from facealign_cli.training import train as T
    from facealign_cli.training.data import choose_target_vertices

    crops = _real_crops(shared, 16)
    teacher = Baseline3DDFA(teacher_weights)
    params = teacher.predict(crops)
    tidx = choose_target_vertices(load_morphable_model(), 60)
    targets = G.params_to_crop_vertices(params, load_morphable_model(), tidx)
    cache = tmp_path / "cache"
    cache.mkdir()
    np.savez(cache / "trainset_k60.npz", names=np.array([f"aflw/x{i}" for i in range(16)]),
             crops=crops, real_pts=np.full((16, 68, 2), np.nan, np.float32), params=params,
             targets=targets.astype(np.float32), target_index=tidx)
    cfg = TrainConfig(arch="mb05", init_from="teacher", epochs=1, batch_size=8, lr=1e-9,
                      n_dense=60, threads=1, flip=False, occlusion_p=0.0)
    ck = T.train(cfg, shared, teacher_weights, tmp_path / "run", cache)
    assert "initialised from the teacher" in (tmp_path / "run" / "train_log.txt").read_text()
    c = torch.load(ck, weights_only=False)
    mean, std = C.load_teacher_mean_std(teacher_weights)
    assert np.array_equal(c["param_mean"], mean) and np.array_equal(c["param_std"], std)
    # lr ~0: the fine-tune's starting point is the teacher itself (BatchNorm statistics move a
    # little in train mode, hence the tolerance)
    got = Regressor(ck).predict(crops)
    assert np.median(np.abs(got - params) / (np.abs(params).max(0) + 1e-6)) < 0.05
