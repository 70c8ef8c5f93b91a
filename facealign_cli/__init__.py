"""facealign: batch 3D dense face alignment (3DMM regression) for folders of photos.

The public Python API (see the README's "Python API" section)::

    from facealign_cli import FaceAligner, read_image

    aligner = FaceAligner()
    faces = aligner(read_image("photo.jpg").image, dense=True)

Names are imported on first use (module ``__getattr__``), so that ``import facealign_cli`` and
``facealign --help`` load neither numpy, OpenCV nor ONNX Runtime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

__all__ = [
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

#: module that defines each public name
_EXPORTS: dict[str, str] = {
    "FaceAligner": "facealign_cli.core.pipeline",
    "AlignerSettings": "facealign_cli.core.settings",
    "Face": "facealign_cli.core.face",
    "Detector": "facealign_cli.core.pipeline",
    "Regressor": "facealign_cli.core.regression",
    "read_image": "facealign_cli.io.images",
    "write_mesh": "facealign_cli.io.meshes",
    "sample_vertex_colors": "facealign_cli.render.texture",
    **{name: "facealign_cli.io.images" for name in __all__ if name.endswith("Error")},
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from facealign_cli.core.face import Face
    from facealign_cli.core.pipeline import Detector, FaceAligner
    from facealign_cli.core.regression import Regressor
    from facealign_cli.core.settings import AlignerSettings
    from facealign_cli.io.images import (
        CorruptImageError,
        EmptyImageError,
        ImageError,
        ImageTooLargeError,
        NotAnImageError,
        TruncatedImageError,
        UnreadableImageError,
        UnsupportedImageError,
        read_image,
    )
    from facealign_cli.io.meshes import write_mesh
    from facealign_cli.render.texture import sample_vertex_colors


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
