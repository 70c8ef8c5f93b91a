"""Defaults and choices shared by the library and the command line, defined once.

Standard library only (``facealign --help`` imports it): no numpy, OpenCV or model code.
"""

from __future__ import annotations

#: Mesh file formats (:func:`facealign_cli.io.meshes.mesh_bytes`, ``facealign mesh --format``):
#: OBJ text, binary PLY, binary glTF; the first is the default.
MESH_FORMATS = ("obj", "ply", "glb")
#: Frames a mesh can be written in (:func:`facealign_cli.io.meshes.to_viewer_frame`); the first
#: is the default of the library's ``write_mesh`` / ``mesh_bytes`` and of ``facealign mesh``:
#: ``"viewer"`` = ``(x, H - y, -z)``, y up and z towards the viewer (opens upright, facing the
#: viewer); ``"image"`` = the photo's pixel frame (y down, z away from the camera).
MESH_FRAMES = ("viewer", "image")
DEFAULT_MESH_FRAME = MESH_FRAMES[0]
#: The default of ``--min-score`` / ``RunOptions.min_score``: the BlazeFace detector's own score
#: threshold (``BlazeFaceDetector(score_threshold=...)``; a test checks that they agree).
DEFAULT_MIN_SCORE = 0.45
#: The default of ``--min-quality`` / ``RunOptions.min_quality``: faces whose quality
#: (:func:`facealign_cli.core.quality.face_quality`, the probability that a detection is a real
#: face) is below it are dropped; the rates it gives are in :mod:`facealign_cli.core.quality`.
DEFAULT_MIN_QUALITY = 0.5
