"""Shipped weights by name (``--weights v1``), and weights that are only an ONNX export (what a
wheel ships: no ``.pth``)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from facealign_cli.models import weights as W
from facealign_cli.models.regressor_onnx import OnnxRegressor, make_regressor

REPO_WEIGHTS = W.weights_dir()


def test_the_default_name_is_one_constant():
    assert W.DEFAULT_WEIGHTS_NAME == f"facealign_{W.DEFAULT_WEIGHTS}.pth"
    assert W.default_weights_path() == REPO_WEIGHTS / W.DEFAULT_WEIGHTS_NAME
    assert W.resolve_weights(None) == W.resolve_weights("default") == W.default_weights_path()


def test_every_shipped_export_is_known_by_its_name():
    shipped = W.shipped_weights()
    exports = sorted(REPO_WEIGHTS.glob("facealign_v*.onnx"))
    assert {f"v{f.stem.split('_v')[1]}" for f in exports} == set(shipped) >= {"v1", "v3"}
    assert list(shipped) == sorted(shipped, key=lambda n: int(n[1:]))
    for name, path in shipped.items():
        # a source checkout: the checkpoint, with its export beside it
        assert path == REPO_WEIGHTS / f"facealign_{name}.pth" and path.is_file()
        assert W.resolve_weights(name) == path
    assert W.resolve_weights(shipped["v1"]) == shipped["v1"]  # a path stays a path


def test_an_unknown_name_lists_the_shipped_ones(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"v1, v3, v4.*default v4"):
        W.resolve_weights("v99")
    # an existing file of that name wins over a shipped name
    monkeypatch.chdir(tmp_path)
    (tmp_path / "v1").write_bytes(b"x")
    assert W.resolve_weights("v1").resolve() == (tmp_path / "v1").resolve()


@pytest.fixture()
def wheel_like(tmp_path, monkeypatch):
    """A weights folder as a wheel ships it (exports only), with a future v5 beside v4."""
    folder = tmp_path / "_weights"
    folder.mkdir()
    for name in ("v1", "v3", "v4"):
        shutil.copy2(REPO_WEIGHTS / f"facealign_{name}.onnx", folder)
    shutil.copy2(REPO_WEIGHTS / "facealign_v3.onnx", folder / "facealign_v5.onnx")
    monkeypatch.setattr(W, "weights_dir", lambda: folder)
    return folder


def test_names_resolve_to_exports_where_no_checkpoint_ships(wheel_like):
    assert W.shipped_weights() == {n: wheel_like / f"facealign_{n}.onnx"
                                   for n in ("v1", "v3", "v4", "v5")}
    assert W.default_weights_path() == wheel_like / "facealign_v4.onnx"
    reg = make_regressor("v5", num_threads=1)
    assert isinstance(reg, OnnxRegressor) and reg.onnx_path == wheel_like / "facealign_v5.onnx"
    assert reg.checkpoint_sha256 == W.sha256_of(REPO_WEIGHTS / "facealign_v3.pth")
    crops = np.random.default_rng(0).integers(0, 256, (2, 120, 120, 3), dtype=np.uint8)
    want = OnnxRegressor(REPO_WEIGHTS / "facealign_v3.pth", num_threads=1).predict(crops)
    np.testing.assert_array_equal(reg.predict(crops), want)


def test_torch_without_a_checkpoint_says_what_is_missing(wheel_like):
    pytest.importorskip("torch")
    with pytest.raises(FileNotFoundError, match=r"needs the checkpoint .*facealign_v1\.pth"):
        make_regressor("v1", runtime="torch")
