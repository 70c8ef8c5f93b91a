"""The shipped regressor on real faces: accuracy on a fixed AFLW2000-3D subset, consistency of
the model card, and the pipeline's landmarks on real photos."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from facealign_cli.core import geometry as G
from facealign_cli.evaluation.datasets import open_aflw2000
from facealign_cli.evaluation.metrics import nme_box
from facealign_cli.evaluation.protocols import Method, run_aflw2000, summarise_aflw2000
from facealign_cli.models.regressor import Regressor, default_weights_path, sha256_of

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def regressor():
    return Regressor(default_weights_path(), num_threads=2)


def test_shipped_weights_small_and_documented():
    path = default_weights_path()
    assert path.is_file()
    assert path.stat().st_size < 10 * 1024 * 1024
    card = (REPO / "weights" / "README.md").read_text()
    assert sha256_of(path) in card, "the model card must give the shipped file's sha256"


def test_predict_shapes_and_determinism(regressor):
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (3, 120, 120, 3), dtype=np.uint8)
    p1 = regressor.predict(crops)
    p2 = regressor.predict(crops[:1])
    assert p1.shape == (3, 62) and p1.dtype == np.float32
    np.testing.assert_allclose(p1[0], p2[0], rtol=1e-4, atol=1e-4)
    assert regressor.predict(np.zeros((0, 120, 120, 3), np.uint8)).shape == (0, 62)


def gt_crop_figures(regressor, data) -> dict:
    """NME (mean of the yaw bins, the bins; fit split) and pose MAE of ``regressor`` on the
    3DDFA protocol (ground-truth crops) of an AFLW2000-3D subset."""
    run = run_aflw2000(data, [Method("m", "m", regressor, {})], protocols=("gt-crops",))
    fig = summarise_aflw2000(run)[0]["gt-crops"]["m"]
    fit = fig["nme_2d"]["splits"]["fit"]
    return {"nme_mean": fit["mean"], "nme_bins": fit["bins"], "pose_mae": fig["pose"]["mean"]}


def test_aflw2000_subset_accuracy(shared, regressor):
    """400 AFLW2000-3D images spread over the set on the 3DDFA protocol: the mean NME of the
    yaw bins and the pose MAE stay near the full-set figures of the model card."""
    data = open_aflw2000(shared / "data" / "aflw2000-3d", limit=400)
    res = gt_crop_figures(regressor, data)
    assert res["nme_mean"] < 4.6, res
    assert res["nme_bins"][0] < 3.6, res
    assert res["pose_mae"] < 5.0, res


def test_pipeline_landmarks_on_annotated_photos(shared):
    """Full pipeline (detector + roi rule + regressor) on AFW photos: the landmarks of each
    annotated face land close to the annotation (box-normalised NME)."""
    from facealign_cli.core.pipeline import FaceAligner

    root = shared / "data" / "photos" / "afw"
    ann = json.loads((root / "annotations.json").read_text())["photos"]
    aligner = FaceAligner(num_threads=2)
    errs = []
    for stem in sorted(ann)[:12]:
        img = cv2.imread(str(root / f"{stem}.jpg"), cv2.IMREAD_COLOR)
        faces = aligner(img)
        for pts in ann[stem]:
            gt = np.asarray(pts, dtype=np.float64)
            best = min(faces, key=lambda f: np.abs(f.landmarks_2d - gt).mean(), default=None)
            assert best is not None
            errs.append(float(nme_box(best.landmarks_2d[None], gt[None])[0]))
            assert best.vertices is None and best.pose.shape == (3,)
    errs = np.array(errs)
    # iBUG 2D annotations vs 3DMM landmarks differ on the jaw of turned faces: generous bounds
    assert np.median(errs) < 0.06, errs
    assert (errs < 0.12).mean() > 0.9, errs


def test_roi_rule_matches_landmark_crops(shared):
    """The roi box from detector boxes covers the face like 3DDFA's landmark rule: on AFLW2000-3D
    images the centre is within 10 % and the side within 15 % of the protocol box (median)."""
    from facealign_cli.models.detector import BlazeFaceDetector

    data = open_aflw2000(shared / "data" / "aflw2000-3d")
    det = BlazeFaceDetector()
    dc, ds = [], []
    for i in range(0, 2000, 40):
        img = cv2.imread(str(data.root / data.names[i]), cv2.IMREAD_COLOR)
        faces = det.detect(img)
        if not faces:
            continue
        roi = G.roi_box_from_detector_box(faces[0].full_box)
        ref = G.roi_box_from_landmarks(data.pts68[i])
        side = ref[2] - ref[0]
        dc.append(np.linalg.norm((roi[:2] + roi[2:]) / 2 - (ref[:2] + ref[2:]) / 2) / side)
        ds.append(abs((roi[2] - roi[0]) / side - 1))
    assert len(dc) >= 45
    assert np.median(dc) < 0.10 and np.median(ds) < 0.15


def test_model_card_lists_the_reproduction_command():
    card = (REPO / "weights" / "README.md").read_text()
    assert re.search(r"facealign train --config configs/\S+\.toml", card)


def test_model_card_recipe_is_the_one_that_made_the_shipped_file():
    """The config stored in the shipped checkpoint is one of configs/*.toml, named in the model
    card, and its chain of earlier stages (``init_from``) goes back to a stage trained from
    random initialisation or from the teacher's converted weights (then the card names the
    converter and NOTICE.md), every stage's config being in the card too."""
    import torch

    from facealign_cli.training.config import TEACHER_INIT, same_recipe
    from facealign_cli.training.train import TrainConfig

    card = (REPO / "weights" / "README.md").read_text()
    configs = {p: TrainConfig.from_toml(p) for p in sorted((REPO / "configs").glob("*.toml"))}

    def config_of(checkpoint: Path) -> Path:
        ck = torch.load(checkpoint, map_location="cpu", weights_only=False)
        # keys added to TrainConfig after the checkpoint was written take their defaults
        stored = vars(TrainConfig(**dict(ck["config"],
                                         yaw_weights=tuple(ck["config"]["yaw_weights"]))))
        # dws_m and its old name fan_m (which the shipped files store) are the same network
        found = [p for p, c in configs.items() if same_recipe(stored, c)]
        assert found, f"no configs/*.toml matches the config stored in {checkpoint}: {stored}"
        return found[0]

    path, seen = config_of(default_weights_path()), set()
    while True:
        assert f"configs/{path.name}" in card, f"model card does not name configs/{path.name}"
        assert path not in seen
        seen.add(path)
        prev = configs[path].init_from
        if not prev:
            break  # random initialisation
        if prev == TEACHER_INIT:  # the teacher's weights, converted by the project's code
            assert "facealign_cli/training/convert.py" in card and "NOTICE.md" in card
            break
        if Path(prev).parent.name == "weights":
            # continues an earlier shipped model: its own stored config goes on the chain
            path = config_of(REPO / prev)
            continue
        # the earlier stage's run folder is the --out of a card command with its config
        out = re.escape(str(Path(prev).parent))
        m = re.search(rf"--config (configs/\S+\.toml) \S.* --out {out}\b", card)
        assert m, f"model card has no command writing {prev}"
        path = REPO / m.group(1)
    assert len(seen) >= 1


def test_arch_names_do_not_collide_with_fan_and_old_names_still_load(tmp_path):
    """``dws_s`` / ``dws_m`` ("depthwise-separable") are the arch names; ``fan_s`` / ``fan_m``
    (a clash with FAN, the landmark network) stay loadable aliases: the shipped checkpoint and
    its ONNX export store ``fan_m`` and are not rewritten."""
    import torch

    from facealign_cli.models.regressor import ARCH_ALIASES, ARCHS, FaceAlignNet
    from facealign_cli.models.regressor_onnx import OnnxRegressor

    assert sorted(ARCHS) == ["dws_m", "dws_s", "mb05"]
    assert not any(a.startswith("fan") for a in ARCHS)
    assert ARCH_ALIASES == {"fan_s": "dws_s", "fan_m": "dws_m"}
    for old, new in ARCH_ALIASES.items():
        a, b = FaceAlignNet(old).state_dict(), FaceAlignNet(new).state_dict()
        assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    v1 = default_weights_path().with_name("facealign_v1.pth")
    ck = torch.load(v1, map_location="cpu", weights_only=False)
    assert ck["arch"] == "fan_m"  # the v1 file keeps its old name ...
    assert Regressor(v1).arch == "dws_m"  # ... and reports the new one
    assert OnnxRegressor(v1).arch == "dws_m"
    with pytest.raises(KeyError, match="dws_m"):
        FaceAlignNet("fan_xl")


def test_a_missing_torch_says_what_to_install(monkeypatch):
    import sys

    from facealign_cli.models.weights import TorchMissingError, import_torch

    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(TorchMissingError, match=r"--runtime torch needs torch.*"
                                                r"python3 -m pip install torch==2.13.0"):
        import_torch("--runtime torch")
    assert issubclass(TorchMissingError, ImportError)


def test_missing_weights_name_the_option(tmp_path):
    from facealign_cli.models.regressor_onnx import make_regressor

    for runtime in ("auto", "onnxruntime", "torch"):
        with pytest.raises(FileNotFoundError, match="--weights"):
            make_regressor(tmp_path / "nope.pth", runtime=runtime)
