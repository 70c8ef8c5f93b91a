"""The model core's one entry point: image in, :class:`~facealign_cli.core.face.Face` list out.

``FaceAligner`` chains the detector (BlazeFace by default), the roi-box rule, the crop, the
regressor and the 3DMM. It knows nothing of files or the command line.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np

from facealign_cli.core import geometry as G
from facealign_cli.core.face import Face
from facealign_cli.core.quality import face_quality
from facealign_cli.core.settings import AlignerSettings
from facealign_cli.io.images import to_bgr


class Detector(Protocol):
    """Anything with ``detect(image_bgr) -> list[Face]`` (box, score, keypoints filled)."""

    def detect(self, image_bgr: np.ndarray) -> list[Face]: ...


class FaceAligner:
    """Detect faces and fit the 3DMM to each.

    Its settings (:class:`~facealign_cli.core.settings.AlignerSettings`: the fields, defaults
    and checks of the image commands' flags) come as ``settings``, as keyword arguments named
    like its fields (``FaceAligner(flip=False, min_quality=0)``), or both (the keywords
    replace those fields of ``settings``); they are checked here, not image by image:

    * ``max_faces``: keep at most this many faces per image (highest scores first); 0 = all.
    * ``min_score``: drop detections scoring below it (the default detector runs with it as its
      threshold).
    * ``min_quality``: :meth:`__call__` drops the faces whose ``quality``
      (:func:`facealign_cli.core.quality.face_quality`) is below it, as the image commands do
      (default :data:`facealign_cli.defaults.DEFAULT_MIN_QUALITY`; 0 keeps all).
    * ``flip``: test-time flip averaging (default on): each crop is also regressed mirrored and
      the landmarks, vertices and pose are the average of both
      (:mod:`facealign_cli.core.regression`); ``Face.params`` stays the prediction of the
      unflipped crop.
    * ``roi_crop_scale``: every roi box the regressor crops is scaled about its centre by this
      factor (:func:`facealign_cli.core.geometry.scale_roi_box`), in [0.5, 2]; default
      :data:`~facealign_cli.core.geometry.ROI_CROP_SCALE` (a tighter crop than 3DDFA's,
      chosen on validation photos); 1 = 3DDFA's standard crop.
    * ``second_pass``: (default on) after a first fit, each face's roi box is recomputed from
      its 68 landmarks (:func:`~facealign_cli.core.geometry.roi_box_from_landmarks`, times
      ``roi_crop_scale``) and the face is cropped and regressed again; the outputs (and
      ``Face.roi_box``) are the second pass's. Off: one pass on the detector's roi box.
    * ``first_pass_flip``: with ``flip`` and ``second_pass``, flip-average the first pass
      too. Off (the ``balanced`` preset, the default): the first pass regresses the crop once,
      only the final pass is flip-averaged.
    * ``second_pass_min_change``: skip the second pass of a face whose landmark roi box moved
      by less than this fraction of its first crop's side
      (:func:`~facealign_cli.core.geometry.roi_box_change`): the first crop is kept and its
      prediction reused (only its mirror image is regressed); 0 = always run it.
    * ``pose_convention``: the convention of ``Face.pose``, one of
      :data:`facealign_cli.defaults.POSE_CONVENTIONS` (written to ``Face.pose_convention``):
      ``"yaw-first"`` (default; ``R = Ry(-yaw) Rx(-pitch) Rz(-roll)``, singular only at
      |pitch| = 90, so profile faces read as a yaw near 90 with their own pitch and roll) or
      ``"aflw2000"`` (AFLW2000-3D's ``R = Rx(-pitch) Ry(-yaw) Rz(-roll)``, singular at
      |yaw| = 90; what ``facealign evaluate`` compares).
      :func:`facealign_cli.core.geometry.angles_from_rotation` has both formulas;
      ``Face.rotation`` is the same in both.
    * ``weights``, ``runtime``: the regressor loaded when none is given
      (:func:`facealign_cli.models.regressor_onnx.make_regressor`).

    Images: (H, W, 3) uint8 BGR; grey ((H, W) or (H, W, 1)), BGRA and 16-bit or float images
    are converted once, as :func:`facealign_cli.io.images.read_image` converts a file's
    (:func:`facealign_cli.io.images.to_bgr`; alpha composited on white), for the detector and
    the regressor alike.

    Args:
        detector: a :class:`Detector`; default
            :class:`facealign_cli.models.detector.BlazeFaceDetector` (threshold ``min_score``).
        regressor: a :class:`facealign_cli.models.regressor.Regressor`; default loads
            ``weights`` (None: the shipped weights) in ``runtime``.
        settings: an :class:`~facealign_cli.core.settings.AlignerSettings` (default: its
            defaults).
        preset: ``"fast"``, ``"balanced"`` (the default's steps) or ``"accurate"``
            (:data:`facealign_cli.defaults.PRESETS`): its test-time steps replace those of
            ``settings``; keywords replace them in turn.
        min_face: ignore detector boxes whose mean side is below this many pixels.
        num_threads: threads for the detector and the regressor.
        **fields: fields of ``settings`` to replace (above).

    Raises:
        SettingError: a setting out of range or of the wrong type (a ``ValueError``: e.g.
            ``roi_crop_scale=100``, ``max_faces=-1``, ``pose_convention="euler"``).
        TypeError: a keyword that is no setting.
        FileNotFoundError: weights or model files are missing.
    """

    def __init__(self, detector: Detector | None = None, regressor=None, *,
                 settings: AlignerSettings | None = None, preset: str | None = None,
                 min_face: float = 12.0, num_threads: int | None = None, **fields):
        settings = settings if settings is not None else AlignerSettings()
        if preset is not None:
            from facealign_cli.defaults import preset_fields

            settings = dataclasses.replace(settings, **preset_fields(preset))
        if fields:
            settings = dataclasses.replace(settings, **fields)
        if detector is None:
            from facealign_cli.models.detector import BlazeFaceDetector

            detector = BlazeFaceDetector(score_threshold=settings.min_score,
                                         num_threads=num_threads or 1)
        if regressor is None:
            from facealign_cli.models.regressor_onnx import make_regressor

            regressor = make_regressor(settings.weights, num_threads=num_threads,
                                       runtime=settings.runtime)
        self.settings = settings
        self.detector = detector
        self.regressor = regressor
        self._model = None
        self._dense_model = None
        self.min_face = min_face
        self._topology = None
        self._fitters = {}

    # the settings the pipeline's steps read (read-only: make another aligner to change them)
    max_faces = property(lambda self: self.settings.max_faces)
    flip = property(lambda self: self.settings.flip)
    roi_crop_scale = property(lambda self: self.settings.roi_crop_scale)
    second_pass = property(lambda self: self.settings.second_pass)
    first_pass_flip = property(lambda self: self.settings.first_pass_flip)
    second_pass_min_change = property(lambda self: self.settings.second_pass_min_change)
    pose_convention = property(lambda self: self.settings.pose_convention)

    def fitter(self, dense: bool = False, flip: bool | None = None):
        """The :class:`~facealign_cli.core.regression.CropFitter` of the 68 landmarks and, with
        ``dense``, of the face region (built once each); ``flip`` defaults to :attr:`flip`."""
        flip = self.flip if flip is None else bool(flip)
        if (dense, flip) not in self._fitters:
            from facealign_cli.core.regression import CropFitter

            sets = ["landmarks"]
            if dense:
                sets.append((self.dense_model, self.topology.vertex_index))
            self._fitters[dense, flip] = CropFitter(
                self.model, sets, flip=flip, pose_convention=self.pose_convention)
        return self._fitters[dense, flip]

    @property
    def model(self):
        """The 3DMM (:class:`~facealign_cli.core.morphable_model.MorphableModel`), loaded on
        first use so that detection alone needs no basis."""
        if self._model is None:
            from facealign_cli.core.morphable_model import load_morphable_model

            self._model = load_morphable_model()
        return self._model

    @property
    def dense_model(self):
        """The 3DMM restricted to the face region of :attr:`topology` (gathered once)."""
        if self._dense_model is None:
            self._dense_model = self.model.subset(self.topology.vertex_index)
        return self._dense_model

    @property
    def topology(self):
        """The face region and triangles
        (:class:`~facealign_cli.core.morphable_model.FaceTopology`)."""
        if self._topology is None:
            from facealign_cli.core.morphable_model import load_face_topology

            self._topology = load_face_topology()
        return self._topology

    def detect(self, image_bgr: np.ndarray) -> list[Face]:
        """Faces found by the detector (box, score, keypoints): those of at least
        ``min_face`` pixels and ``min_score``, highest scores first, at most ``max_faces``."""
        return self._detect(to_bgr(image_bgr))

    def _detect(self, image_bgr: np.ndarray) -> list[Face]:
        s = self.settings
        faces = [f for f in self.detector.detect(image_bgr)
                 if (f.box[2] - f.box[0] + f.box[3] - f.box[1]) / 2 >= self.min_face
                 and float(f.score) >= s.min_score]
        faces.sort(key=lambda f: -f.score)
        if s.max_faces:
            faces = faces[:s.max_faces]
        return faces

    def fit(self, image_bgr: np.ndarray, faces: list[Face], *, dense: bool = False) -> list[Face]:
        """Regress the 3DMM for given faces, in place.

        A face without a ``roi_box`` gets the roi box of its detector box
        (:func:`~facealign_cli.core.geometry.roi_box_from_detector_box`) times
        :attr:`roi_crop_scale`; a face given with a ``roi_box`` (a tracked face) is cropped
        there. With :attr:`second_pass`, the face is then cropped again at the roi box of its
        fitted landmarks and regressed again. Fills ``roi_box`` (the last crop), ``params``,
        ``landmarks_3d``, ``pose``, ``rotation``, ``quality``
        (:mod:`facealign_cli.core.quality`, from the last pass) and, if ``dense``,
        ``vertices`` (the face region's vertices, :attr:`topology`). All faces of the image
        go through the network in one batch per pass.

        Returns:
            The same list (no face dropped: :meth:`__call__` applies ``min_quality``).
        """
        return self._fit(to_bgr(image_bgr), faces, dense=dense)

    def _fit(self, image_bgr: np.ndarray, faces: list[Face], *, dense: bool) -> list[Face]:
        if not faces:
            return faces
        for f in faces:
            if f.roi_box is None:
                # a face cut by the image border: its unclipped box gives the better crop centre
                f.roi_box = G.scale_roi_box(G.roi_box_from_detector_box(np.asarray(f.full_box)),
                                            self.roi_crop_scale)
        if not self.second_pass:
            self._regress(image_bgr, faces, dense=dense)
            return faces
        first_flip = self.flip and self.first_pass_flip
        fit, crops = self._regress(image_bgr, faces, dense=False, flip=first_flip)
        rois, redo = second_pass_roi_boxes(np.stack([f.roi_box for f in faces]),
                                           np.stack([f.landmarks_3d for f in faces]),
                                           self.roi_crop_scale, self.second_pass_min_change)
        known, known_mirror = reused_predictions(fit.params, fit.mirror_params, redo)
        for f, roi in zip(faces, rois):
            f.roi_box = roi
        self._regress(image_bgr, faces, dense=dense, known=known, known_mirror=known_mirror,
                      crops=crops)
        return faces

    def _regress(self, image_bgr: np.ndarray, faces: list[Face], *, dense: bool,
                 flip: bool | None = None, known=None, known_mirror=None, crops=None):
        """One pass: crop every face's ``roi_box``, regress, fill the outputs (see :meth:`fit`).

        ``known`` / ``known_mirror``: (B, 62) predictions already made on a face's crop (NaN
        rows: none), whose crop (from ``crops``) is reused. Returns ``(fit, crops)``.
        """
        size = self.regressor.input_size
        reuse = np.zeros(len(faces), bool) if known is None else np.isfinite(known).all(axis=1)
        crops = np.stack([crops[i] if reuse[i] else G.crop_roi(image_bgr, f.roi_box, size)
                          for i, f in enumerate(faces)])
        fit = self.fitter(dense, flip)(self.regressor, crops, params=known,
                                       mirror_params=known_mirror)
        for i, f in enumerate(faces):
            f.params = fit.params[i]
            lm = G.crop_to_image(fit.vertices[0][i], f.roi_box, size)
            z0 = lm[2].mean()
            lm[2] -= z0
            f.landmarks_3d = lm.T.copy()
            f.pose = fit.pose[i].astype(np.float32)
            f.pose_convention = self.pose_convention
            f.rotation = fit.rotation[i]
            _rate(f, fit.flip_disagreement, i)
            if dense:
                v = G.crop_to_image(fit.vertices[1][i], f.roi_box, size)
                v[2] -= z0
                f.vertices = v.T.copy()
        return fit, crops

    def __call__(self, image_bgr: np.ndarray, *, dense: bool = False) -> list[Face]:
        """Detect and fit: an image (class docstring) to a list of faces (scores descending),
        those the settings keep (:meth:`~facealign_cli.core.settings.AlignerSettings.keeps`:
        score >= ``min_score``, quality >= ``min_quality``), as the image commands do.

        Raises:
            UnsupportedImageError: an array that is no image (a ``ValueError``).
        """
        img = to_bgr(image_bgr)
        faces = self._fit(img, self._detect(img), dense=dense)
        return [f for f in faces if self.settings.keeps(f)]


def second_pass_roi_boxes(roi_boxes: np.ndarray, landmarks: np.ndarray, roi_crop_scale: float,
                          min_change: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The roi boxes of the second pass (:meth:`FaceAligner.fit`, ``evaluate``'s ``gt-crops``).

    A face is cropped again at 3DDFA's roi box of its first-pass landmarks
    (:func:`~facealign_cli.core.geometry.roi_box_from_landmarks`, times ``roi_crop_scale``)
    unless that box is degenerate (not finite, side < 1 px) or moved by less than
    ``min_change`` (:func:`~facealign_cli.core.geometry.roi_box_change`, a fraction of the
    first box's side): then the first box is kept.

    Args:
        roi_boxes: (N, 4) first-pass roi boxes ``[sx, sy, ex, ey]``, image pixels.
        landmarks: (N, 68, 2+) first-pass landmarks, image pixels (x right, y down).
        roi_crop_scale: the factor on every roi box (> 0).
        min_change: 0 = every valid box is redone.

    Returns:
        ``(boxes, redo)``: (N, 4) float32 roi boxes of the final pass and (N,) bool, True
        where the box changed (the face needs the network again).
    """
    boxes = np.array(roi_boxes, dtype=np.float32).reshape(-1, 4)
    redo = np.zeros(len(boxes), dtype=bool)
    for i, lm in enumerate(landmarks):
        roi = G.roi_box_from_landmarks(lm, roi_crop_scale)
        if not (np.isfinite(roi).all() and roi[2] - roi[0] >= 1):
            continue  # a degenerate fit: keep the first box
        if min_change > 0 and G.roi_box_change(boxes[i], roi) < min_change:
            continue
        boxes[i], redo[i] = roi, True
    return boxes, redo


def reused_predictions(params: np.ndarray, mirror_params: np.ndarray | None,
                       redo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the final pass may reuse from the first: each face's (62,) direct and mirror-image
    parameters where its crop is unchanged (``~redo``), NaN rows elsewhere (and everywhere for
    mirrors the first pass did not regress). Returns two (N, 62) float32 arrays, the
    ``params`` / ``mirror_params`` of :class:`~facealign_cli.core.regression.CropFitter`."""
    n = len(redo)
    known = np.full((n, 62), np.nan, np.float32)
    known_mirror = np.full((n, 62), np.nan, np.float32)
    keep = ~np.asarray(redo, dtype=bool)
    known[keep] = np.asarray(params, np.float32)[keep]
    if mirror_params is not None:
        known_mirror[keep] = np.asarray(mirror_params, np.float32)[keep]
    return known, known_mirror


def _rate(face: Face, flip_gaps: np.ndarray | None, i: int) -> None:
    """Set ``face.quality`` (:func:`facealign_cli.core.quality.face_quality`) and keep the flip
    disagreement in ``face.flip_disagreement`` (``None`` without flip averaging)."""
    flip = None if flip_gaps is None else float(flip_gaps[i])
    face.quality = face_quality(face.score, flip)
    face.flip_disagreement = flip
