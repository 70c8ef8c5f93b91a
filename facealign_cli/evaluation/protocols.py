"""The ``facealign evaluate`` protocols: AFLW2000-3D (three protocols) and 68-point photos.

AFLW2000-3D, :func:`run_aflw2000` then :func:`summarise_aflw2000`:

* ``gt-crops``, the benchmark protocol of 3DDFA (Zhu et al., TPAMI 2017; used by 3DDFA-V2 and
  SynergyNet): each image is cropped to its ground-truth-derived roi box with 3DDFA's crop rule
  (:data:`CROP_RULE`, :func:`facealign_cli.core.geometry.crop_roi`), the 68 predicted landmarks
  are mapped back to the image (:func:`predict_on_crops`); 2D NME by |yaw| bin and the
  unweighted mean of the bins, 3D NME, head-pose MAE against ``Pose_Para`` on the images whose
  three angles all lie within +-99 degrees (1,969 images), the predicted angles in the
  benchmark's own convention (AFLW2000-3D's, not the outputs' default yaw-first one:
  :data:`facealign_cli.defaults.EVALUATE_POSE_CONVENTION`) -- :mod:`.metrics`;
* ``detector``: the full pipeline, detector in the loop (misses counted per bin, never
  dropped);
* ``occlusion``: ``gt-crops`` on synthetically occluded images (:mod:`.occlusion`, after
  DSFNet, Li et al. CVPR 2023).

Photos with 68 landmarks (300-W ``.pts`` or an annotations JSON), :func:`run_landmarks68` then
:func:`summarise_landmarks68`: detector in the loop, NME by box size and by inter-ocular
distance (300-W, Sagonas et al. 2016).

Every method is a :class:`Method`; one or two methods run on the same crops and detections. The
data sets come from :mod:`.datasets`; nothing here reads a fixed data location.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from facealign_cli.core import geometry as G
from facealign_cli.core.morphable_model import MorphableModel, load_morphable_model
from facealign_cli.core.settings import STANDARD_CROP, AlignerSettings
from facealign_cli.defaults import EVALUATE_POSE_CONVENTION
from facealign_cli.evaluation.datasets import AFLW2000Set, AnnotatedImage, read_dataset_image
from facealign_cli.evaluation.metrics import (
    IOU_THRESHOLD,
    ced_summary,
    degenerate_annotation,
    difference,
    finite_stat,
    landmark_box,
    match_detection,
    nme_3d,
    nme_box,
    nme_figures,
    nme_interocular,
    pose_figures,
    yaw_bin_index,
)
from facealign_cli.evaluation.occlusion import (
    DEFAULT_OCCLUSION_SEED,
    OCCLUDER_KINDS,
    apply_occluder,
    occluded_fraction,
    occluders_for,
)

CROP_RULE = "3DDFA: integer roi box, zero padding, cv2.resize bilinear to 120x120"
CROP_SCALE_RULE = ("each method's roi boxes (ground-truth or from the detector box) scaled "
                   "about their centres by its roi_crop_scale; with second_pass, cropped "
                   "again at roi_box_from_landmarks of its first-pass landmarks times the "
                   "same scale")
PROTOCOLS = ("gt-crops", "detector", "occlusion")


def predict_on_crops(predict, images: list[np.ndarray], roi_boxes: np.ndarray,
                     model: MorphableModel, batch: int = 128, *, flip: bool = False,
                     fitter=None):
    """Run a parameter regressor on 3DDFA-rule crops and map the 68 landmarks back.

    Args:
        predict: callable (B, 120, 120, 3) uint8 BGR -> (B, 62) parameters, or a regressor
            object (``predict`` and ``input_size``).
        images: list of B (H, W, 3) uint8 BGR images.
        roi_boxes: (B, 4) float ``[sx, sy, ex, ey]`` roi boxes, image pixels.
        model: the morphable model that turns parameters into landmarks.
        batch: crops per regressor call.
        flip: test-time flip averaging (:class:`facealign_cli.core.regression.CropFitter`).
        fitter: a ready :class:`~facealign_cli.core.regression.CropFitter` of the landmarks
            (built once per run by the callers; ``flip`` and ``model`` are then its own).

    Returns:
        ``(landmarks, pose, params)``: (B, 68, 3) landmarks in the image frame (x, y pixels, z
        in pixel units away from the camera, facealign's output frame), (B, 3) ``[yaw, pitch,
        roll]`` degrees (the fitter's convention; by default AFLW2000-3D's,
        :data:`~facealign_cli.defaults.EVALUATE_POSE_CONVENTION`), (B, 62) parameters of the
        unflipped crops.
    """
    from facealign_cli.core.regression import CropFitter

    reg = predict if hasattr(predict, "predict") else _CallableRegressor(predict)
    fitter = fitter or CropFitter(model, ("landmarks",), flip=flip,
                                  pose_convention=EVALUATE_POSE_CONVENTION)
    lms, pose, params, _ = _fit_crops(reg, fitter, images, roi_boxes, batch)
    return lms, pose, params


def _fit_crops(reg, fitter, images, roi_boxes, batch: int = 128, known=None, known_mirror=None):
    """:func:`predict_on_crops`'s loop; ``known`` / ``known_mirror``: (B, 62) predictions to
    reuse (NaN rows: regress). Returns ``(landmarks, pose, params, mirror_params or None)``."""
    params, mirror, lms, pose = [], [], [], []
    for i in range(0, len(images), batch):
        sl = slice(i, i + batch)
        crops = np.stack([G.crop_roi(im, r) for im, r in zip(images[sl], roi_boxes[sl])])
        fit = fitter(reg, crops, params=None if known is None else known[sl],
                     mirror_params=None if known_mirror is None else known_mirror[sl])
        params.append(fit.params)
        mirror.append(fit.mirror_params)
        lms.extend(G.crop_to_image(v, r).T for v, r in zip(fit.vertices[0], roi_boxes[sl]))
        pose.append(fit.pose)
    mirror = None if mirror[0] is None else np.concatenate(mirror)
    return np.stack(lms), np.concatenate(pose), np.concatenate(params), mirror


@dataclass
class _CallableRegressor:
    """A bare ``predict`` callable seen as a regressor of 120-px crops."""

    predict: object
    input_size: int = 120


@dataclass
class Method:
    """A regressor under evaluation.

    Attributes:
        key: short id used in the JSON (``facealign``, ``3ddfa-v2``).
        label: human-readable name for tables and plots.
        regressor: an object with ``predict((B, 120, 120, 3) uint8 BGR) -> (B, 62)`` and
            ``input_size`` (120), e.g. :class:`facealign_cli.models.regressor.Regressor` or
            :class:`facealign_cli.models.baseline_3ddfa.Baseline3DDFA`.
        info: what the report records about it (weights path, sha256, ...).
        settings: its test-time settings
            (:class:`~facealign_cli.core.settings.AlignerSettings`): ``flip`` (flip averaging,
            :mod:`facealign_cli.core.regression`), ``roi_crop_scale`` (factor on every roi box
            cropped, detector-derived or ground-truth,
            :func:`facealign_cli.core.geometry.scale_roi_box`; 1 = 3DDFA's standard crop),
            ``second_pass`` (re-crop at the roi box of the first fit's landmarks and regress
            again, as :class:`facealign_cli.core.pipeline.FaceAligner` does, with its
            ``first_pass_flip`` and ``second_pass_min_change``), and the face filter of
            :meth:`aligner`'s calls (``min_quality``); ``pose_convention`` is set to
            AFLW2000-3D's (:data:`~facealign_cli.defaults.EVALUATE_POSE_CONVENTION`, the
            convention of the benchmark's ``Pose_Para``) whatever the settings given.

    The default settings run a regressor as 3DDFA-V2's authors ship theirs
    (:func:`authors_settings`: no flip, standard crop, one pass, no quality filter).
    """

    key: str
    label: str
    regressor: object
    info: dict
    settings: AlignerSettings = field(default_factory=lambda: authors_settings())

    def __post_init__(self):
        if self.settings.pose_convention != EVALUATE_POSE_CONVENTION:
            self.settings = replace(self.settings, pose_convention=EVALUATE_POSE_CONVENTION)

    def aligner(self, detector):
        """A :class:`~facealign_cli.core.pipeline.FaceAligner` of this method's regressor and
        settings around ``detector`` (its pose in AFLW2000-3D's convention, the benchmark's:
        the settings are pinned to it)."""
        from facealign_cli.core.pipeline import FaceAligner

        return FaceAligner(detector=detector, regressor=self.regressor, settings=self.settings)


def authors_settings() -> AlignerSettings:
    """A regressor run as 3DDFA-V2's authors run theirs: no flip averaging, their crop
    (:data:`~facealign_cli.core.settings.STANDARD_CROP`), every face kept (``min_quality``
    0), its pose in AFLW2000-3D's convention
    (:data:`~facealign_cli.defaults.EVALUATE_POSE_CONVENTION`)."""
    return AlignerSettings(flip=False, min_quality=0.0,
                           pose_convention=EVALUATE_POSE_CONVENTION, **STANDARD_CROP)


def crop_rule_label(roi_crop_scale: float, second_pass: bool, flip: bool = False,
                    first_pass_flip: bool = True, second_pass_min_change: float = 0.0) -> str:
    """How a method crops and how many passes it makes, for reports: e.g. ``"standard crop,
    1 pass"`` (3DDFA's roi box), ``"roi x0.88, 2 passes, flip"`` or ``"roi x0.88, 2 passes
    (2nd skipped if the box moves < 4 %), flip on the final pass"``."""
    crop = "standard crop" if roi_crop_scale == 1 else f"roi x{roi_crop_scale:g}"
    passes = "1 pass"
    if second_pass:
        passes = "2 passes"
        if second_pass_min_change > 0:
            passes += f" (2nd skipped if the box moves < {100 * second_pass_min_change:g} %)"
    parts = [crop, passes]
    if flip:
        parts.append("flip on the final pass" if second_pass and not first_pass_flip else "flip")
    return ", ".join(parts)


def _predict_gt_crops(m: Method, images: list[np.ndarray], roi_boxes: np.ndarray,
                      model: MorphableModel, fitter) -> tuple[np.ndarray, np.ndarray]:
    """``gt-crops`` for one method: the ground-truth roi boxes times its crop scale, then, with
    its second pass, again at the roi boxes of the first pass's landmarks, by the pipeline's
    rule and reuse (:func:`facealign_cli.core.pipeline.second_pass_roi_boxes`,
    :meth:`facealign_cli.core.pipeline.FaceAligner.fit`). ``fitter``: the method's final-pass
    :class:`~facealign_cli.core.regression.CropFitter`. (B, 68, 3) landmarks, (B, 3) pose."""
    from facealign_cli.core.pipeline import reused_predictions, second_pass_roi_boxes
    from facealign_cli.core.regression import CropFitter

    s = m.settings
    roi = G.scale_roi_box(roi_boxes, s.roi_crop_scale)
    if not s.second_pass:
        return _fit_crops(m.regressor, fitter, images, roi)[:2]
    first = fitter if (s.first_pass_flip or not s.flip) else \
        CropFitter(model, ("landmarks",), flip=False, pose_convention=s.pose_convention)
    lms, _, params, mirror = _fit_crops(m.regressor, first, images, roi)
    roi, redo = second_pass_roi_boxes(roi, lms, s.roi_crop_scale, s.second_pass_min_change)
    known, known_mirror = reused_predictions(params, mirror, redo)
    return _fit_crops(m.regressor, fitter, images, roi, known=known,
                      known_mirror=known_mirror)[:2]


def _fit_detected(aligner, image: np.ndarray, face) -> tuple[np.ndarray, np.ndarray]:
    """Run the pipeline's fit on a fresh copy of a detected face; (68, 3) landmarks, (3,) pose."""
    from facealign_cli.core.face import Face

    f = Face(box=np.asarray(face.box, dtype=np.float32).copy(), score=float(face.score),
             keypoints=None if face.keypoints is None else np.asarray(face.keypoints).copy())
    aligner.fit(image, [f])
    return np.asarray(f.landmarks_3d, dtype=np.float64), np.asarray(f.pose, dtype=np.float64)


@dataclass
class AFLW2000Run:
    """Raw per-image outputs of :func:`run_aflw2000` (B = images of the subset).

    Attributes:
        data: the data set.
        methods: the methods, in order.
        protocols: the protocols run (``occlusion`` implies ``gt-crops``, its clean reference).
        gt_crops: method key -> ``{"lms": (B, 68, 3), "pose": (B, 3)}`` (image frame, z away
            from the camera, degrees).
        detector: ``{"matched": (B,) bool, "iou": (B,), "box": (B, 4) NaN for misses,
            "n_detections": (B,) int, method key -> {"lms", "pose"} NaN for misses}``.
        occlusion: ``{"seed": int, "coverage": {kind: (B,)}, kind -> {method key -> {"lms",
            "pose"}}}``.
        settings: detector description, thresholds, seed.
    """

    data: AFLW2000Set
    methods: list[Method]
    protocols: tuple[str, ...]
    gt_crops: dict
    detector: dict
    occlusion: dict
    settings: dict


def run_aflw2000(data: AFLW2000Set, methods: list[Method], protocols=("gt-crops",),
                 detector=None, occlusion_seed: int = DEFAULT_OCCLUSION_SEED,
                 iou_threshold: float = IOU_THRESHOLD, batch: int = 32,
                 progress=None) -> AFLW2000Run:
    """Run every method through the requested AFLW2000-3D protocols.

    * ``gt-crops``: the 3DDFA protocol (Zhu et al., TPAMI 2017): crop each image to its roi box
      with :data:`CROP_RULE`, regress, map the 68 landmarks back (:func:`predict_on_crops`).
      A method with a crop scale other than 1 crops the roi box scaled about its centre; with
      a second pass it crops again at the roi box of its own first-pass landmarks
      (:class:`Method`).
    * ``detector``: the full pipeline (:class:`facealign_cli.core.pipeline.FaceAligner`: detector,
      roi rule from the detector box, crop, regressor) on the whole 450 x 450 image; the
      annotated face is the detection with the highest IoU with the 68-landmark box if that IoU
      is >= ``iou_threshold``, else a miss (kept, as NaN). All methods share the detections.
    * ``occlusion``: the ``gt-crops`` protocol on images occluded by each of
      :data:`~.occlusion.OCCLUDER_KINDS` (:func:`~.occlusion.occluders_for`, keyed by the
      full-list index), after DSFNet (Li et al., CVPR 2023).

    Images are streamed in batches of ``batch`` (memory stays small).

    Args:
        data: from :func:`~.datasets.open_aflw2000`.
        methods: regressors to compare (same crops for all).
        protocols: subset of :data:`PROTOCOLS`.
        detector: required for ``detector``: anything with ``detect(image_bgr) -> list[Face]``.
        occlusion_seed: seed of the occluders.
        iou_threshold: minimum IoU of a detection matched to the annotated face.
        batch: images read and cropped at a time.
        progress: optional callable ``progress(n_images_done_in_this_step)``.

    Raises:
        ValueError: unknown protocol, ``detector`` protocol without a detector, no methods.
        DatasetLayoutError: an unreadable image.
    """
    protocols = _checked_protocols(protocols, methods, detector)
    do_gt = "gt-crops" in protocols
    model = load_morphable_model()
    from facealign_cli.core.regression import CropFitter

    fitters = {m.key: CropFitter(model, ("landmarks",), flip=m.settings.flip,
                                 pose_convention=m.settings.pose_convention)
               for m in methods}
    B = len(data)
    gt = _nan_outputs(methods, B)
    det: dict = {}
    occ: dict = {}
    if "detector" in protocols:
        aligners = [m.aligner(detector) for m in methods]
        det = {"matched": np.zeros(B, bool), "iou": np.zeros(B), "box": np.full((B, 4), np.nan),
               "n_detections": np.zeros(B, np.int64), **_nan_outputs(methods, B)}
    if "occlusion" in protocols:
        occ = {"seed": int(occlusion_seed), "coverage": {k: np.zeros(B) for k in OCCLUDER_KINDS}}
        occ.update({k: _nan_outputs(methods, B) for k in OCCLUDER_KINDS})
    face_boxes = landmark_box(data.pts68)
    for s in range(0, B, batch):
        sl = slice(s, min(s + batch, B))
        images = [data.read_image(i) for i in range(sl.start, sl.stop)]
        roi = data.roi_boxes[sl]
        if do_gt:
            for m in methods:
                lms, pose = _predict_gt_crops(m, images, roi, model, fitters[m.key])
                gt[m.key]["lms"][sl], gt[m.key]["pose"][sl] = lms, pose
        if occ:
            _occlusion_batch(occ, methods, images, sl, roi, face_boxes[sl], data.indices[sl],
                             model, fitters)
        if det:
            _detector_batch(det, methods, aligners, images, sl.start, face_boxes,
                            iou_threshold)
        if progress is not None:
            progress(sl.stop - sl.start)
    settings = {"iou_threshold": iou_threshold, "occlusion_seed": int(occlusion_seed)}
    return AFLW2000Run(data, methods, protocols, gt if do_gt else {}, det, occ, settings)


def _nan_outputs(methods: list[Method], n: int) -> dict:
    """``{method key: {"lms": (n, 68, 3), "pose": (n, 3)}}`` of NaN (a miss until filled)."""
    return {m.key: {"lms": np.full((n, 68, 3), np.nan), "pose": np.full((n, 3), np.nan)}
            for m in methods}


def _checked_protocols(protocols, methods: list[Method], detector) -> tuple[str, ...]:
    """The protocols to run (``gt-crops`` added in front for ``occlusion``, its clean
    reference). Raises ValueError as :func:`run_aflw2000` says."""
    protocols = tuple(protocols)
    bad = [p for p in protocols if p not in PROTOCOLS]
    if bad:
        raise ValueError(f"unknown protocol(s) {bad}; choose from {PROTOCOLS}")
    if not methods:
        raise ValueError("no method to evaluate")
    if "detector" in protocols and detector is None:
        raise ValueError("the detector protocol needs a detector")
    if "occlusion" in protocols and "gt-crops" not in protocols:
        protocols = ("gt-crops",) + protocols
    return protocols


def _occlusion_batch(occ: dict, methods: list[Method], images: list[np.ndarray], sl: slice,
                     roi: np.ndarray, face_boxes: np.ndarray, indices: np.ndarray,
                     model: MorphableModel, fitters: dict) -> None:
    """The ``occlusion`` protocol on the images ``sl`` of the subset (their roi boxes, 68-point
    boxes and full-list indices), into ``occ`` (:class:`AFLW2000Run`'s layout)."""
    for kind in OCCLUDER_KINDS:
        occs = occluders_for(kind, face_boxes, [im.shape for im in images], indices,
                             occ["seed"])
        occ["coverage"][kind][sl] = [occluded_fraction(o, b) for o, b in zip(occs, face_boxes)]
        occluded = [apply_occluder(im, o) for im, o in zip(images, occs)]
        for m in methods:
            lms, pose = _predict_gt_crops(m, occluded, roi, model, fitters[m.key])
            occ[kind][m.key]["lms"][sl], occ[kind][m.key]["pose"][sl] = lms, pose


def _detector_batch(det: dict, methods: list[Method], aligners: list, images: list[np.ndarray],
                    start: int, face_boxes: np.ndarray, iou_threshold: float) -> None:
    """The ``detector`` protocol on the images from index ``start`` of the subset (one
    detection pass, shared by the methods), into ``det`` (:class:`AFLW2000Run`'s layout)."""
    for j, im in enumerate(images):
        i = start + j
        faces = aligners[0].detect(im)
        det["n_detections"][i] = len(faces)
        k, iou = match_detection(face_boxes[i], np.array([f.box[:4] for f in faces]),
                                 iou_threshold)
        det["iou"][i] = iou
        if k < 0:
            continue
        det["matched"][i] = True
        det["box"][i] = faces[k].box[:4]
        for m, al in zip(methods, aligners):
            det[m.key]["lms"][i], det[m.key]["pose"][i] = _fit_detected(al, im, faces[k])


def _lm_figures(lms: np.ndarray, pose: np.ndarray, data: AFLW2000Set, gt3: np.ndarray) -> tuple:
    """(figures, per-image 2D NME %) for one method and protocol."""
    nme2 = nme_box(lms[..., :2], data.pts68[..., :2]) * 100
    nme3 = nme_3d(lms, gt3) * 100
    fig = {"nme_2d": nme_figures(nme2, data.yaw_splits),
           "nme_3d": nme_figures(nme3, data.yaw_splits),
           "pose": pose_figures(pose, data.pose)}
    return fig, nme2


def summarise_aflw2000(run: AFLW2000Run) -> tuple[dict, dict]:
    """Figures of an :class:`AFLW2000Run`.

    Returns:
        ``(figures, per_image)``. ``figures[protocol][method_key]`` holds ``nme_2d`` and
        ``nme_3d`` (:func:`~.metrics.nme_figures`, %), ``pose`` (:func:`~.metrics.pose_figures`,
        degrees); ``figures[protocol]["difference"]`` is first method minus second (when two);
        ``figures["detector"]["detection"]`` the detection counts;
        ``figures["occlusion"][method_key][kind]`` adds ``increase`` (mean of bins minus clean,
        percentage points) and ``increase_bins``. ``per_image[protocol][method_key]`` is the
        (B,) 2D NME in % (NaN = miss); for occlusion ``per_image["occlusion"][kind][key]``.
    """
    data = run.data
    gt3 = data.pts68_output_frame()
    keys = [m.key for m in run.methods]
    figs: dict = {}
    per: dict = {}

    def with_diff(block: dict) -> dict:
        if len(keys) >= 2:
            block["difference"] = difference(block[keys[0]], block[keys[1]])
        return block

    if run.gt_crops:
        figs["gt-crops"], per["gt-crops"] = {}, {}
        for k in keys:
            figs["gt-crops"][k], per["gt-crops"][k] = _lm_figures(
                run.gt_crops[k]["lms"], run.gt_crops[k]["pose"], data, gt3)
        with_diff(figs["gt-crops"])
    if run.detector:
        d = run.detector
        matched = d["matched"]
        block: dict = {"detection": {
            "faces": len(data), "detected": int(matched.sum()), "misses": int((~matched).sum()),
            "misses_by_bin": {s: [int(((yaw_bin_index(y) == b) & ~matched).sum())
                                  for b in range(3)] for s, y in data.yaw_splits.items()},
            "mean_iou_matched": finite_stat(d["iou"][matched], np.mean),
            "iou_threshold": run.settings["iou_threshold"],
            "images_with_extra_detections": int((d["n_detections"] > 1).sum())}}
        per["detector"] = {}
        for k in keys:
            block[k], per["detector"][k] = _lm_figures(d[k]["lms"], d[k]["pose"], data, gt3)
        figs["detector"] = with_diff(block)
    if run.occlusion:
        o = run.occlusion
        block = {"seed": o["seed"], "kinds": list(OCCLUDER_KINDS),
                 "coverage": {kind: finite_stat(o["coverage"][kind], np.mean)
                              for kind in OCCLUDER_KINDS}}
        per["occlusion"] = {kind: {} for kind in OCCLUDER_KINDS}
        for k in keys:
            clean = figs["gt-crops"][k]["nme_2d"]
            mb: dict = {"clean": {"bins": clean["splits"]["fit"]["bins"],
                                  "mean": clean["splits"]["fit"]["mean"]}}
            for kind in OCCLUDER_KINDS:
                f, per["occlusion"][kind][k] = _lm_figures(o[kind][k]["lms"], o[kind][k]["pose"],
                                                           data, gt3)
                fs = f["nme_2d"]["splits"]["fit"]
                f["increase"] = fs["mean"] - mb["clean"]["mean"]
                f["increase_bins"] = [a - b for a, b in zip(fs["bins"], mb["clean"]["bins"])]
                mb[kind] = f
            block[k] = mb
        figs["occlusion"] = with_diff(block)
    return figs, per


@dataclass
class Landmarks68Run:
    """Raw per-face outputs of :func:`run_landmarks68` (F = annotated faces).

    Attributes:
        items: the images.
        methods: the methods.
        sources: F face labels.
        matched: (F,) bool; iou: (F,) best IoU; gt: (F, 68, 2) ground truth (image pixels).
        pred: method key -> (F, 68, 3) landmarks, image frame (NaN for misses).
        settings: ``{"iou_threshold": float}``.
        degenerate: F reasons, None for the faces that can be scored
            (:func:`~facealign_cli.evaluation.metrics.degenerate_annotation`: not matched,
            counted apart from the misses).
    """

    items: list[AnnotatedImage]
    methods: list[Method]
    sources: list[str]
    matched: np.ndarray
    iou: np.ndarray
    gt: np.ndarray
    pred: dict
    settings: dict
    degenerate: list = field(default_factory=list)


def run_landmarks68(items: list[AnnotatedImage], methods: list[Method], detector,
                    iou_threshold: float = IOU_THRESHOLD, progress=None) -> Landmarks68Run:
    """Detector-in-the-loop 68-landmark evaluation on annotated photos.

    Each image is passed once through the detector (:meth:`FaceAligner.detect`); each annotated
    face is matched to the detection with the highest IoU with its 68-landmark box (a miss below
    ``iou_threshold``); each method fits the matched detections with the pipeline's roi rule.
    A degenerate annotation (:func:`~facealign_cli.evaluation.metrics.degenerate_annotation`)
    is not matched (``degenerate``: its reason).

    Args:
        items: from :func:`~.datasets.open_landmarks68`.
        methods: regressors to compare.
        detector: anything with ``detect(image_bgr) -> list[Face]``.
        progress: optional callable ``progress(1)`` after each image.

    Raises:
        DatasetLayoutError: an unreadable image.
    """
    aligners = [m.aligner(detector) for m in methods]
    gts = [f for it in items for f in it.faces]
    F = len(gts)
    pred = {m.key: np.full((F, 68, 3), np.nan) for m in methods}
    matched, ious = np.zeros(F, bool), np.zeros(F)
    degenerate = [degenerate_annotation(g) for g in gts]
    i = 0
    for it in items:
        im = read_dataset_image(it.path)
        faces = aligners[0].detect(im)
        boxes = np.array([f.box[:4] for f in faces]).reshape(-1, 4)
        for g in it.faces:
            k, ious[i] = (-1, 0.0) if degenerate[i] else match_detection(
                landmark_box(g), boxes, iou_threshold)
            if k >= 0:
                matched[i] = True
                for m, al in zip(methods, aligners):
                    pred[m.key][i] = _fit_detected(al, im, faces[k])[0]
            i += 1
        if progress is not None:
            progress(1)
    return Landmarks68Run(items, methods, [s for it in items for s in it.sources], matched,
                          ious, np.stack(gts) if gts else np.zeros((0, 68, 2)), pred,
                          {"iou_threshold": iou_threshold}, degenerate)


def summarise_landmarks68(run: Landmarks68Run) -> tuple[dict, dict]:
    """Figures of a :class:`Landmarks68Run`.

    Returns:
        ``(figures, per_image)``: ``figures["detection"]`` (faces, images, detected, misses,
        degenerate: the count, and ``degenerate_faces``: ``[[face label, reason]]``),
        ``figures[key]["nme_box"]`` and ``["nme_io"]``: ``mean``, ``median`` (% over detected
        faces), ``n``, ``misses`` and ``ced`` (misses as failures; degenerate annotations left
        out of all); ``figures["difference"]`` when two methods. ``per_image[key] =
        {"nme_box": (F,), "nme_io": (F,)}`` in % (NaN = miss or degenerate).
    """
    bad = [(s, why) for s, why in zip(run.sources, run.degenerate) if why]
    scored = np.array([not why for why in run.degenerate] or [True] * len(run.gt), bool)
    figs: dict = {"detection": {"images": len(run.items), "faces": len(run.gt),
                                "detected": int(run.matched.sum()),
                                "misses": int((~run.matched & scored).sum()),
                                "degenerate": len(bad), "degenerate_faces": bad,
                                "iou_threshold": run.settings["iou_threshold"]}}
    per: dict = {}
    keys = [m.key for m in run.methods]
    for k in keys:
        p = run.pred[k]
        with np.errstate(divide="ignore", invalid="ignore"):  # degenerate: 0 / 0
            e_box = nme_box(p[..., :2], run.gt) * 100 if len(p) else np.zeros(0)
            e_io = nme_interocular(p[..., :2], run.gt) * 100 if len(p) else np.zeros(0)
        per[k] = {"nme_box": e_box, "nme_io": e_io}
        figs[k] = {name: {"mean": finite_stat(e, np.mean), "median": finite_stat(e, np.median),
                          "n": int(np.isfinite(e).sum()), "misses": int((~np.isfinite(e)).sum()),
                          "ced": ced_summary(e)}
                   for name, e in (("nme_box", e_box[scored]), ("nme_io", e_io[scored]))}
    if len(keys) >= 2:
        figs["difference"] = difference(figs[keys[0]], figs[keys[1]])
    return figs, per
