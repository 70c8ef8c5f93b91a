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
#: face) is below it are dropped; the rates it gives: ``benchmarks/README.md`` (generated from
#: ``facealign_cli/data/figures.json`` by ``scripts/fit_quality.py --write-figures``).
DEFAULT_MIN_QUALITY = 0.5
#: Test-time presets (``--preset``, ``FaceAligner(preset=...)``): each a set of the aligner's
#: test-time settings (:class:`facealign_cli.core.pipeline.FaceAligner`'s ``flip``,
#: ``second_pass``, ``first_pass_flip``, ``second_pass_min_change``). ``fast``: one pass on the
#: detector's roi box, flip-averaged (2 regressor evaluations per face); ``balanced`` (the
#: default): a first pass without its mirror, a second pass at the roi box of the first pass's
#: landmarks, flip-averaged, skipped (the first crop reused, its mirror added) where that box
#: moved by less than ``second_pass_min_change`` of the side (2-3 evaluations); ``accurate``:
#: both passes flip-averaged, the second always run (4 evaluations; the default before v4).
#: Measured NME and CPU per photo of each: the model card, ``weights/README.md``.
PRESETS = {
    "fast": {"flip": True, "second_pass": False, "first_pass_flip": True,
             "second_pass_min_change": 0.0},
    "balanced": {"flip": True, "second_pass": True, "first_pass_flip": False,
                 "second_pass_min_change": 0.04},
    "accurate": {"flip": True, "second_pass": True, "first_pass_flip": True,
                 "second_pass_min_change": 0.0},
}
DEFAULT_PRESET = "balanced"


def preset_fields(preset: str | None = None, *, flip: bool | None = None,
                  second_pass: bool | None = None) -> dict:
    """The test-time settings of ``preset`` (None: :data:`DEFAULT_PRESET`) with the explicit
    ``--flip/--no-flip`` and ``--second-pass/--no-second-pass`` choices (None: not given) on
    top: the keyword arguments of :class:`facealign_cli.core.settings.AlignerSettings`.

    Raises:
        ValueError: an unknown preset (the message lists :data:`PRESETS`).
    """
    name = DEFAULT_PRESET if preset is None else preset
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}")
    out = dict(PRESETS[name])
    if flip is not None:
        out["flip"] = bool(flip)
    if second_pass is not None:
        out["second_pass"] = bool(second_pass)
    return out
#: The conventions of the head-pose angles ``[yaw, pitch, roll]`` (degrees), decomposed and
#: composed by :func:`facealign_cli.core.geometry.angles_from_rotation` /
#: :func:`~facealign_cli.core.geometry.rotation_from_pose`; the first is the default of
#: ``FaceAligner``, ``Face.pose`` and every output (``--pose-convention``):
#: ``"yaw-first"`` = ``R = Ry(-yaw) Rx(-pitch) Rz(-roll)``, singular only at |pitch| = 90;
#: ``"aflw2000"`` = AFLW2000-3D's ``R = Rx(-pitch) Ry(-yaw) Rz(-roll)``, singular at
#: |yaw| = 90 (profile faces), what ``facealign evaluate`` compares with the benchmark.
POSE_CONVENTIONS = ("yaw-first", "aflw2000")
DEFAULT_POSE_CONVENTION = POSE_CONVENTIONS[0]
#: Each convention's composition, as the outputs' readers see it stated (the contact sheet,
#: ``--help``); ``Rx``, ``Ry``, ``Rz`` right-handed, ``R`` model to camera (a test checks these
#: against :func:`facealign_cli.core.geometry.rotation_from_pose`).
POSE_FORMULAS = {"yaw-first": "R = Ry(-yaw) Rx(-pitch) Rz(-roll)",
                 "aflw2000": "R = Rx(-pitch) Ry(-yaw) Rz(-roll)"}
#: The convention of ``facealign evaluate``'s pose figures (the benchmark's ``Pose_Para``).
EVALUATE_POSE_CONVENTION = "aflw2000"
