"""The public Python API: the names ``facealign_cli`` exports, and that importing it (or
running ``facealign --help``) stays light."""

from __future__ import annotations

import json
import subprocess
import sys
import typing

import numpy as np

import facealign_cli

PUBLIC = [
    "FaceAligner",
    "AlignerSettings",
    "Face",
    "Detector",
    "Regressor",
    "read_image",
    "write_mesh",
    "sample_vertex_colors",
    "ImageError",
    "UnreadableImageError",
    "EmptyImageError",
    "NotAnImageError",
    "CorruptImageError",
    "TruncatedImageError",
    "UnsupportedImageError",
    "ImageTooLargeError",
]


def test_public_names():
    """Changing this list is changing the public API: say so in CHANGELOG.md."""
    assert facealign_cli.__all__ == PUBLIC
    for name in PUBLIC:
        obj = getattr(facealign_cli, name)
        assert obj.__name__ == name
        assert obj.__module__.startswith("facealign_cli.")
    ns: dict = {}
    exec("from facealign_cli import *", ns)
    assert set(PUBLIC) <= set(ns)
    assert isinstance(facealign_cli.__version__, str)


def test_unknown_names_raise_attribute_error():
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        facealign_cli.nope  # noqa: B018
    assert set(PUBLIC) <= set(dir(facealign_cli))


def test_image_errors_are_one_family():
    from facealign_cli.io import images

    base = facealign_cli.ImageError
    subclasses = {n for n in PUBLIC if n.endswith("Error") and n != "ImageError"}
    assert all(issubclass(getattr(facealign_cli, n), base) for n in subclasses)
    defined = {n for n, v in vars(images).items()
               if isinstance(v, type) and issubclass(v, base) and v is not base
               and not n.startswith("_")}
    assert defined == subclasses, "every public ImageError subclass is exported"
    assert issubclass(base, ValueError)


def test_protocols_are_typed_and_met_by_the_shipped_models():
    from facealign_cli.models.detector import BlazeFaceDetector
    from facealign_cli.models.regressor_onnx import OnnxRegressor

    det, reg = facealign_cli.Detector, facealign_cli.Regressor
    assert getattr(det, "_is_protocol", False) and getattr(reg, "_is_protocol", False)
    assert typing.get_type_hints(reg)["input_size"] is int
    assert hasattr(BlazeFaceDetector, "detect")
    hints = typing.get_type_hints(reg.predict)
    assert hints["return"] is np.ndarray
    assert callable(OnnxRegressor.predict)


def test_custom_models_plug_into_the_aligner():
    """Any object with the protocols' shape works: no subclassing needed."""
    Face = facealign_cli.Face

    class OneBox:
        def detect(self, image_bgr):
            return [Face(box=np.array([40, 40, 80, 80], np.float32), score=0.9)]

    class Frontal:
        input_size = 120

        def predict(self, crops):
            p = np.zeros((len(crops), 62), np.float32)
            p[:, [0, 5, 10]] = 1e-3  # a small frontal camera
            p[:, [3, 7]] = 60.0
            return p

    aligner = facealign_cli.FaceAligner(detector=OneBox(), regressor=Frontal())
    (face,) = aligner(np.zeros((120, 120, 3), np.uint8))
    assert face.landmarks_2d.shape == (68, 2) and face.pose.shape == (3,)


_PROBE = r"""
import json, sys
import facealign_cli
light = sorted(m for m in ("numpy", "cv2", "onnxruntime", "torch") if m in sys.modules)
from facealign_cli.cli.main import main
try:
    main(["--help"])
except SystemExit:
    pass
heavy = sorted(m for m in ("torch", "onnxruntime", "cv2", "numpy") if m in sys.modules)
sys.__stdout__.write("\nPROBE " + json.dumps({"import": light, "help": heavy}) + "\n")
"""


def test_import_and_help_stay_light():
    proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Usage:" in proc.stdout
    out = json.loads(proc.stdout.split("\nPROBE ", 1)[1])
    assert out["import"] == [], out
    assert "torch" not in out["help"] and "onnxruntime" not in out["help"], out
