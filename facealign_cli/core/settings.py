"""The settings that shape a model's faces (:class:`AlignerSettings`) and a video's frames
(:class:`VideoSettings`), each one frozen, checked group: the Python API
(:class:`facealign_cli.core.pipeline.FaceAligner`), the image commands (their run options, the
worker's model cache, the resume fingerprint) and ``facealign evaluate`` all take the same
objects, so a value, its default and its check are written once.

A *preset* is a set of field values (a ``dict``): ``dataclasses.replace(settings, **preset)``
applies it, ``AlignerSettings(**preset)`` starts from it; e.g. :data:`STANDARD_CROP` (3DDFA's
one-pass crop).

Standard library only at import (``facealign --help`` imports the batch options, which hold
these groups): the default crop scale is read from :mod:`facealign_cli.core.geometry` when a
settings object is made.
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass, field, fields
from typing import Any

from facealign_cli.defaults import (
    DEFAULT_MIN_QUALITY,
    DEFAULT_MIN_SCORE,
    DEFAULT_POSE_CONVENTION,
    DEFAULT_PRESET,
    POSE_CONVENTIONS,
    PRESETS,
)
from facealign_cli.models.weights import RUNTIMES

#: The crop scales accepted (``--roi-crop-scale``, ``FaceAligner(roi_crop_scale=...)``):
#: outside it a crop is either a fraction of the face or mostly background (100 made every
#: image fail with ``MemoryError``).
ROI_CROP_SCALE_RANGE = (0.5, 2.0)
#: The convention of the pose angles of outputs written before ``--pose-convention`` existed
#: (their fingerprints have no ``pose_convention``: :meth:`AlignerSettings.fingerprint`).
LEGACY_POSE_CONVENTION = "aflw2000"
#: The preset of 3DDFA's standard crop: the roi box as it is (scale 1), one pass.
STANDARD_CROP: dict[str, Any] = {"roi_crop_scale": 1.0, "second_pass": False}


class SettingError(ValueError):
    """An invalid setting value. ``name`` is the field (``"roi_crop_scale"``), ``flag`` its
    command-line flag (``"--roi-crop-scale"``), ``message`` what is wrong; ``str()`` is
    ``"<name>: <message>"``."""

    def __init__(self, name: str, message: str):
        self.name = name
        self.message = message
        super().__init__(f"{name}: {message}")

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def _require(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise SettingError(name, message)


def _whole(obj, name: str, low: int) -> None:
    """Check (and store as ``int``) a whole-number field of a frozen settings object."""
    v = getattr(obj, name)
    _require(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= low, name,
             f"must be a whole number >= {low}, got {v!r}")
    object.__setattr__(obj, name, int(v))


def _real(obj, name: str, low: float, high: float, *, open_low: bool = False) -> None:
    """Check (and store as ``float``) a number field in [low, high] (``open_low``: > low);
    NaN and booleans fail."""
    v = getattr(obj, name)
    ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and (
        low < v <= high if open_low else low <= v <= high)
    _require(ok, name, f"must lie in {'(' if open_low else '['}{low:g}, {high:g}], got {v!r}")
    object.__setattr__(obj, name, float(v))


def _flag(obj, name: str) -> None:
    """Check (and store as ``bool``) a switch of a frozen settings object."""
    v = getattr(obj, name)
    _require(not isinstance(v, str) and v in (True, False), name,
             f"must be True or False, got {v!r}")
    object.__setattr__(obj, name, bool(v))


def _default_roi_crop_scale() -> float:
    """:data:`facealign_cli.core.geometry.ROI_CROP_SCALE` (imported when settings are made,
    never for ``facealign --help``)."""
    from facealign_cli.core.geometry import ROI_CROP_SCALE

    return ROI_CROP_SCALE


@dataclass(frozen=True)
class AlignerSettings:
    """What shapes the faces a :class:`~facealign_cli.core.pipeline.FaceAligner` returns: the
    same fields, defaults and checks for the Python API and the image commands (whose flags
    are the field names with dashes: ``--roi-crop-scale``). Checked when made
    (:class:`SettingError`); frozen and hashable (the worker's model cache key).

    Attributes:
        max_faces: keep at most this many faces per image, highest detector scores first (0 =
            all); a whole number >= 0.
        min_score: drop detections scoring below this, in [0, 1] (the shipped detector runs
            with it as its threshold); default
            :data:`~facealign_cli.defaults.DEFAULT_MIN_SCORE`, the detector's own.
        min_quality: drop regressed faces whose ``quality``
            (:func:`facealign_cli.core.quality.face_quality`, the probability that the
            detection is a real face) is below this, in [0, 1] (0 keeps all); default
            :data:`~facealign_cli.defaults.DEFAULT_MIN_QUALITY`. Without flip averaging the
            quality comes from the score alone.
        weights: regressor checkpoint (None = the shipped weights); used when the aligner
            loads its own regressor.
        flip: test-time flip averaging (:mod:`facealign_cli.core.regression`).
        roi_crop_scale: factor on every roi box the regressor crops
            (:func:`facealign_cli.core.geometry.scale_roi_box`), in
            :data:`ROI_CROP_SCALE_RANGE`; default
            :data:`facealign_cli.core.geometry.ROI_CROP_SCALE`; 1 = 3DDFA's standard crop.
        second_pass: re-crop each face at the roi box of its first fit's landmarks and regress
            again.
        first_pass_flip: with ``flip`` and ``second_pass``, flip-average the first pass too
            (off by default: only the final pass is, the ``balanced`` preset).
        second_pass_min_change: skip the second pass of a face whose landmark roi box moved by
            less than this fraction of its first crop's side, in [0, 1] (0 = never skip;
            :func:`facealign_cli.core.pipeline.second_pass_roi_boxes`).
        runtime: regressor runtime, one of :data:`RUNTIMES` (None = ``"auto"``); not part of
            the outputs' fingerprint (every runtime gives the same faces).
        pose_convention: the convention of ``Face.pose``, one of
            :data:`~facealign_cli.defaults.POSE_CONVENTIONS` (``--pose-convention``):
            ``"yaw-first"`` (the default, ``R = Ry(-yaw) Rx(-pitch) Rz(-roll)``, singular only
            at |pitch| = 90: a profile face reads as a yaw near 90 with its own pitch and roll)
            or ``"aflw2000"`` (AFLW2000-3D's ``R = Rx(-pitch) Ry(-yaw) Rz(-roll)``, singular at
            |yaw| = 90; what ``facealign evaluate`` compares with the benchmark);
            :func:`facealign_cli.core.geometry.angles_from_rotation` has both formulas.

    Raises:
        SettingError: a value of the wrong type or out of range (its ``name`` says which).
    """

    max_faces: int = 0
    min_score: float = DEFAULT_MIN_SCORE
    min_quality: float = DEFAULT_MIN_QUALITY
    weights: str | None = None
    flip: bool = True
    roi_crop_scale: float = field(default_factory=_default_roi_crop_scale)
    second_pass: bool = True
    first_pass_flip: bool = PRESETS[DEFAULT_PRESET]["first_pass_flip"]
    second_pass_min_change: float = PRESETS[DEFAULT_PRESET]["second_pass_min_change"]
    runtime: str | None = None
    pose_convention: str = DEFAULT_POSE_CONVENTION

    def __post_init__(self):
        _whole(self, "max_faces", 0)
        _real(self, "min_score", 0.0, 1.0)
        _real(self, "min_quality", 0.0, 1.0)
        _real(self, "roi_crop_scale", *ROI_CROP_SCALE_RANGE)
        _flag(self, "flip")
        _flag(self, "second_pass")
        _flag(self, "first_pass_flip")
        _real(self, "second_pass_min_change", 0.0, 1.0)
        w = self.weights
        _require(w is None or isinstance(w, (str, os.PathLike)), "weights",
                 f"must be a file path or None, got {w!r}")
        if w is not None:
            w = os.fspath(w)
            _require(bool(w) and "\0" not in w, "weights", f"not a file path: {w!r}")
            object.__setattr__(self, "weights", w)
        _require(self.runtime is None or self.runtime in RUNTIMES, "runtime",
                 f"unknown runtime {self.runtime!r}; expected one of {RUNTIMES}")
        _require(self.pose_convention in POSE_CONVENTIONS, "pose_convention",
                 f"unknown pose convention {self.pose_convention!r}; expected one of "
                 f"{POSE_CONVENTIONS}")

    @property
    def quality_filter_on(self) -> bool:
        """Whether :attr:`min_quality` drops faces: it is > 0 and flip averaging is on (the
        quality's evidence is the regressor's agreement with the mirrored crop; without the
        mirror pass the quality is the detector score's estimate alone and the filter is off)."""
        return self.flip and self.min_quality > 0

    def keeps(self, face) -> bool:
        """Whether ``face`` passes the filter of the API and the image commands alike: score
        >= :attr:`min_score` and, once regressed (``quality`` set) and when
        :attr:`quality_filter_on`, quality >= :attr:`min_quality`."""
        return float(face.score) >= self.min_score and (
            face.quality is None or not self.quality_filter_on
            or face.quality >= self.min_quality)

    def fingerprint(self, regresses: bool, pose: bool = False) -> dict[str, Any]:
        """The settings whose change makes earlier outputs stale, as the done records and the
        settings file store them (key order kept: old records still match): ``max_faces``;
        with ``pose`` (the outputs hold pose angles) and ``regresses``, ``pose_convention``
        unless :data:`LEGACY_POSE_CONVENTION` (records written before the setting existed
        hold AFLW2000-3D's angles: reused by ``aflw2000``, redone by default); ``min_score``
        unless the default; with ``regresses`` also ``min_quality`` unless the default,
        ``weights`` (``"default"`` for None), ``flip`` only when off, and ``roi_crop_scale``
        and ``second_pass`` always (runs before these steps existed are redone), and with
        both passes flip-averaged ``first_pass_flip`` and ``second_pass_min_change`` (issue
        23's presets)."""
        fp: dict[str, Any] = {"max_faces": self.max_faces}
        if pose and regresses and self.pose_convention != LEGACY_POSE_CONVENTION:
            fp["pose_convention"] = self.pose_convention
        if self.min_score != DEFAULT_MIN_SCORE:
            fp["min_score"] = self.min_score
        if regresses:
            if self.min_quality != DEFAULT_MIN_QUALITY:
                fp["min_quality"] = self.min_quality
            fp["weights"] = str(self.weights or "default")
            if not self.flip:
                fp["flip"] = False
            fp["roi_crop_scale"] = self.roi_crop_scale
            fp["second_pass"] = self.second_pass
            if self.second_pass and self.flip:  # the test-time steps of v4's presets
                fp["first_pass_flip"] = self.first_pass_flip
                fp["second_pass_min_change"] = self.second_pass_min_change
        return fp

    def spelled_out(self, regresses: bool, pose: bool = False) -> dict[str, Any]:
        """The settings :meth:`fingerprint` leaves out at their defaults, always given (for
        the settings file a person reads): ``min_score``, with ``regresses`` also ``flip`` and
        ``min_quality``, and with ``pose`` ``pose_convention``."""
        out: dict[str, Any] = {"min_score": self.min_score}
        if regresses:
            out.update(flip=self.flip, min_quality=self.min_quality)
        if pose:
            out["pose_convention"] = self.pose_convention
        return out


@dataclass(frozen=True)
class VideoSettings:
    """How a video's frames are taken and followed (the same for every command that takes
    videos; ``mesh``'s ``--mesh-every`` is the mesh command's own).

    Attributes:
        frame_step: process every N-th frame, N >= 1
            (:class:`facealign_cli.io.video.VideoReader`).
        max_fps: process at most this many frames per second of video, a finite number > 0
            (None = all).
        smooth: One-Euro smoothing per face track
            (:class:`facealign_cli.core.smoothing.FaceSmoother`, its defaults).
        detect_every: run the detector on every k-th processed frame, k >= 1, faces carried by
            their landmarks in between (:class:`facealign_cli.core.tracking.VideoAligner`).

    Raises:
        SettingError: a value of the wrong type or out of range.
    """

    frame_step: int = 1
    max_fps: float | None = None
    smooth: bool = False
    detect_every: int = 1

    def __post_init__(self):
        _whole(self, "frame_step", 1)
        _whole(self, "detect_every", 1)
        if self.max_fps is not None:
            _real(self, "max_fps", 0.0, math.inf, open_low=True)
            _require(math.isfinite(self.max_fps), "max_fps",
                     f"must be a finite number > 0, got {self.max_fps!r}")
        _flag(self, "smooth")

    def fingerprint(self, regresses: bool) -> dict[str, Any]:
        """What a video's outputs depend on: the frame subsampling and, with ``regresses``,
        ``detect_every`` and ``smooth``."""
        v: dict[str, Any] = {"frame_step": self.frame_step, "max_fps": self.max_fps}
        if regresses:
            v.update(detect_every=self.detect_every, smooth=self.smooth)
        return v


def field_names(cls) -> frozenset[str]:
    """The field names of a settings dataclass (to route flat keyword settings to their
    group)."""
    return frozenset(f.name for f in fields(cls))
