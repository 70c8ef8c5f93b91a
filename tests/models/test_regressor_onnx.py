"""The ONNX Runtime regressor (facealign_cli.models.regressor_onnx): the committed export
belongs to the shipped checkpoint and gives torch's numbers on real faces; exports are checked
against the checkpoint they came from; the runtime choice of the CLI."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from facealign_cli.evaluation.datasets import open_aflw2000
from facealign_cli.models.regressor import FaceAlignNet, Regressor, default_weights_path
from facealign_cli.models.regressor_onnx import (
    OnnxRegressor,
    StaleExportError,
    export_onnx,
    make_regressor,
    onnx_path_for,
)

pytest.importorskip("onnxruntime")


@pytest.fixture()
def checkpoint(tmp_path):
    """A small random-initialised checkpoint (dws_s) in a temporary folder."""
    import torch

    torch.manual_seed(0)
    path = tmp_path / "w.pth"
    torch.save({"model": FaceAlignNet("dws_s").state_dict(), "arch": "dws_s", "stem": 16,
                "input_size": 120, "param_mean": np.linspace(-1, 1, 62, dtype=np.float32),
                "param_std": np.full(62, 2.0, np.float32)}, path)
    return path


def test_shipped_export_is_the_default_runtime():
    reg = make_regressor(default_weights_path(), num_threads=1)
    assert isinstance(reg, OnnxRegressor), "weights/ must hold an up-to-date .onnx export"
    assert reg.arch == Regressor(default_weights_path()).arch and reg.input_size == 120
    assert isinstance(make_regressor(default_weights_path(), runtime="torch"), Regressor)


def test_shipped_export_matches_torch_on_aflw2000(shared):
    """Every 10th AFLW2000-3D face: parameters agree to float32 rounding and the benchmark
    figures are the same to 0.01 (the ONNX path is not less accurate)."""
    from test_regressor import gt_crop_figures

    data = open_aflw2000(shared / "data" / "aflw2000-3d", limit=200)
    torch_reg = Regressor(default_weights_path(), num_threads=2)
    onnx_reg = OnnxRegressor(default_weights_path(), num_threads=2)
    calls = []

    class Both:
        input_size = 120

        @staticmethod
        def predict(crops):
            a, b = torch_reg.predict(crops), onnx_reg.predict(crops)
            calls.append(np.abs(a - b).max() / np.abs(a).max())
            return b

    res_onnx = gt_crop_figures(Both(), data)
    res_torch = gt_crop_figures(torch_reg, data)
    assert max(calls) < 1e-4
    assert abs(res_onnx["nme_mean"] - res_torch["nme_mean"]) < 0.01
    assert abs(res_onnx["pose_mae"] - res_torch["pose_mae"]) < 0.01


def test_export_matches_torch(checkpoint):
    assert export_onnx(checkpoint) == onnx_path_for(checkpoint)
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["w.onnx", "w.pth"]
    crops = np.random.default_rng(0).integers(0, 256, (5, 120, 120, 3), dtype=np.uint8)
    ref = Regressor(checkpoint).predict(crops)
    got = OnnxRegressor(checkpoint).predict(crops)
    assert got.shape == (5, 62) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(OnnxRegressor(checkpoint).predict(crops[2:3]), ref[2:3],
                               rtol=1e-4, atol=1e-4)
    assert OnnxRegressor(checkpoint).predict(crops[:0]).shape == (0, 62)


def test_stale_export_is_never_used(checkpoint):
    export_onnx(checkpoint)
    checkpoint.write_bytes(checkpoint.read_bytes() + b"\0")  # another checkpoint, same path
    with pytest.raises(StaleExportError):
        OnnxRegressor(checkpoint)
    with pytest.raises(StaleExportError):
        make_regressor(checkpoint, runtime="onnxruntime")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert type(make_regressor(checkpoint, runtime="auto")) is Regressor  # torch
    assert any("re-export" in str(x.message) for x in w)


def test_corrupt_export_auto_falls_back_to_torch_with_a_warning(checkpoint):
    onnx = export_onnx(checkpoint)
    onnx.write_bytes(onnx.read_bytes()[:4000])  # cut: not a model any more
    with pytest.raises(Exception):  # noqa: B017 - ONNX Runtime's own error type
        make_regressor(checkpoint, runtime="onnxruntime")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        reg = make_regressor(checkpoint, runtime="auto")
    assert type(reg) is Regressor  # torch, and it still predicts
    assert reg.predict(np.zeros((1, 120, 120, 3), np.uint8)).shape == (1, 62)
    assert any("cannot be loaded" in str(x.message) and "using torch" in str(x.message)
               for x in w)


def test_without_export_auto_uses_torch(checkpoint, monkeypatch):
    assert type(make_regressor(checkpoint)) is Regressor
    with pytest.raises(FileNotFoundError, match="export-onnx"):
        make_regressor(checkpoint, runtime="onnxruntime")
    with pytest.raises(ValueError, match="unknown runtime"):
        make_regressor(checkpoint, runtime="tensorflow")
    export_onnx(checkpoint)
    # the runtime is an explicit value: $FACEALIGN_RUNTIME is read by the command line only
    monkeypatch.setenv("FACEALIGN_RUNTIME", "torch")
    assert type(make_regressor(checkpoint)) is not Regressor  # auto: the fresh export
    assert type(make_regressor(checkpoint, runtime="torch")) is Regressor


def test_cli_export_and_runtimes_agree(checkpoint, afw_photos):
    """``facealign export-onnx`` writes the export; ``--runtime torch`` and ``--runtime
    onnxruntime`` give the same landmarks on real photos (JSON rounds to 0.01 px)."""
    from click.testing import CliRunner

    from facealign_cli.cli.main import main

    r = CliRunner().invoke(main, ["export-onnx", str(checkpoint)])
    assert r.exit_code == 0, r.output
    assert r.output.strip() == str(onnx_path_for(checkpoint))
    out = {}
    for rt in ("torch", "onnxruntime"):
        r = CliRunner().invoke(main, ["landmarks", *map(str, afw_photos), "--out", "-",
                                      "--runtime", rt, "--quiet"])
        assert r.exit_code == 0, r.output
        out[rt] = [json.loads(line) for line in r.stdout.splitlines()]
    lm = {rt: [np.array(f["landmarks_2d"]) for rec in recs for f in rec["faces"]]
          for rt, recs in out.items()}
    assert len(lm["torch"]) == len(lm["onnxruntime"]) >= 3
    for a, b in zip(lm["torch"], lm["onnxruntime"]):
        assert np.abs(a - b).max() <= 0.02


def test_onnx_path_does_not_import_torch(afw_photos):
    """The default path (detector + ONNX regressor + 3DMM) on a real photo never imports torch
    (that is where the start-up time of a one-photo run goes)."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from facealign_cli.io.images import load_image\n"
            "from facealign_cli.core.pipeline import FaceAligner\n"
            f"faces = FaceAligner(num_threads=1)(load_image({str(afw_photos[0])!r}), dense=True)\n"
            "assert faces and faces[0].vertices is not None\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "print(type(faces[0]).__name__, len(faces))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Face ")


def _not_checkpoints(folder, good):
    """Files a careless caller passes as a checkpoint, each with the words of its error."""
    import pickle

    import torch

    ck = torch.load(good, map_location="cpu", weights_only=False)
    made = {}

    def save(name, obj, words):
        torch.save(obj, folder / name)
        made[folder / name] = words

    (folder / "notes.txt").write_text("not a checkpoint\n", encoding="utf-8")
    made[folder / "notes.txt"] = "torch.load cannot read it"
    (folder / "list.pkl").write_bytes(pickle.dumps([1, 2, 3]))
    made[folder / "list.pkl"] = "torch.load cannot read it"
    save("list.pth", [1, 2, 3], "it holds a list, not a dict")
    save("no_arch.pth", {k: v for k, v in ck.items() if k != "arch"}, "it lacks 'arch'")
    save("state_dict.pth", ck["model"], "it lacks 'model', 'arch'")
    save("bad_arch.pth", {**ck, "arch": "fan_xl"}, "unknown arch 'fan_xl'")
    save("other_arch.pth", {**ck, "arch": "dws_m"}, "its weights do not fit arch 'dws_m'")
    save("short_mean.pth", {**ck, "param_mean": ck["param_mean"][:5]}, "expected (62,)")
    return made


def test_not_a_checkpoint_is_one_line_exit_2(checkpoint, tmp_path):
    """Issue 24: ``export-onnx`` of a text file or a pickled list gave a traceback, a dict
    without ``arch`` a bare ``'arch'``. Each is now a :class:`CheckpointError` naming the file
    and what is wrong: one line and exit 2 from the command line."""
    from click.testing import CliRunner

    from facealign_cli.cli.main import main
    from facealign_cli.models.weights import CheckpointError

    for path, words in _not_checkpoints(tmp_path, checkpoint).items():
        with pytest.raises(CheckpointError, match=words.replace("(", r"\(").replace(")", r"\)")):
            Regressor(path)
        r = CliRunner().invoke(main, ["export-onnx", str(path)])
        assert r.exit_code == 2, (path, r.output)
        assert r.exception is None or isinstance(r.exception, SystemExit)
        lines = r.output.strip().splitlines()
        assert len(lines) == 1 and str(path) in lines[0] and words in lines[0], r.output
        assert not onnx_path_for(path).exists()
