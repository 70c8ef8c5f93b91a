"""``facealign evaluate``: benchmark the regressor (and optionally the user's 3DDFA-V2 weights).

Thin command layer: the commands and their own options; loading of the methods and the
detector, the common options, progress bar and report files are in
:mod:`facealign_cli.cli.evaluate_setup`. The data sets live in
:mod:`facealign_cli.evaluation.datasets`, the protocols in
:mod:`facealign_cli.evaluation.protocols` (metrics in :mod:`facealign_cli.evaluation.metrics`,
occluders in :mod:`facealign_cli.evaluation.occlusion`), the formatting in
:mod:`facealign_cli.evaluation.reports`. Every expected failure (wrong folder layout, missing
weights, torch, detector or matplotlib) ends in a
:class:`~facealign_cli.cli.export.SetupError` (a one-line error, exit status 2, the CLI's setup
error), never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from facealign_cli import __version__
from facealign_cli.cli.evaluate_setup import (  # noqa: F401 - _load_* also used by scripts/
    _PATH,
    _check_outputs,
    _common_options,
    _load_detector,
    _load_methods,
    _note,
    _now,
    _progress,
    _with_settings,
    _write_outputs,
)
from facealign_cli.cli.export import SetupError
from facealign_cli.models.weights import RUNTIMES


@click.group("evaluate")
def evaluate():
    """Benchmark landmark accuracy and head pose on public data sets.

    Reports go to stdout as tables, and optionally to --json (every figure and the exact
    settings), --markdown and --plot (CED curves). --baseline-3ddfa runs your own 3DDFA-V2
    MobileNet weights through the same crops for a side-by-side comparison.
    """


@evaluate.command("aflw2000-3d", short_help="AFLW2000-3D: NME by yaw bin, 3D NME, head pose, "
                  "detector in the loop, occlusion.")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--protocols", default="gt-crops,detector,occlusion", show_default=True,
              help="Comma-separated subset of gt-crops, detector, occlusion.")
@click.option("--occlusion-seed", type=click.IntRange(min=0), default=2023, show_default=True,
              help="Seed of the synthetic occluders.")
@_common_options
def aflw2000_3d(path, protocols, occlusion_seed, settings, baseline, baseline_mean_std,
                json_path, markdown_path, plot_path, limit, iou_threshold, threads, per_image):
    """Evaluate on AFLW2000-3D (PATH: the folder of imageNNNNN.jpg + .mat).

    \b
    With PATH/3ddfa-protocol (the 3DDFA benchmark arrays) the roi boxes, the ground truth
    and both yaw splits (fit yaw and AFLW-label yaw) come from it. On the official folder
    alone, roi boxes are derived from pt3d_68 with 3DDFA's landmark rule and the yaw bins
    from Pose_Para yaw (the AFLW-label split is then unavailable).

    \b
    NME: mean 68-point 2D error / sqrt(w*h) of the ground-truth box, mean per |yaw| bin
    [0,30], (30,60], (60,90] and their unweighted mean (3DDFA, TPAMI 2017). Head pose: MAE
    against Pose_Para on faces with all angles within +-99 deg. Occlusion: one random square,
    two intersecting squares or one full-height column per image (after DSFNet, CVPR 2023).
    """
    from facealign_cli.core import geometry as G
    from facealign_cli.core.morphable_model import BasisNotFoundError
    from facealign_cli.evaluation import datasets as D
    from facealign_cli.evaluation import metrics as M
    from facealign_cli.evaluation import occlusion as O
    from facealign_cli.evaluation import protocols as P
    from facealign_cli.evaluation import reports

    protos = tuple(p.strip() for p in protocols.split(",") if p.strip())
    bad = [p for p in protos if p not in P.PROTOCOLS]
    if bad or not protos:
        raise click.BadParameter(f"{', '.join(bad) or 'empty'}; choose from "
                                 f"{', '.join(P.PROTOCOLS)}", param_hint="--protocols")
    _check_outputs(plot_path, json_path, markdown_path)
    try:
        data = D.open_aflw2000(path, limit=limit)
    except D.DatasetLayoutError as exc:
        raise SetupError(f"not an AFLW2000-3D folder: {exc}") from exc
    methods = _load_methods(settings, baseline, baseline_mean_std, threads, standard_row=True)
    detector, det_info = (_load_detector(threads) if "detector" in protos else (None, None))
    try:
        with _progress(len(data), f"AFLW2000-3D ({', '.join(protos)})") as advance:
            run = P.run_aflw2000(data, methods, protos, detector=detector,
                                 occlusion_seed=occlusion_seed, iou_threshold=iou_threshold,
                                 progress=advance)
    except D.DatasetLayoutError as exc:
        raise SetupError(str(exc)) from exc
    except BasisNotFoundError as exc:
        raise SetupError(str(exc)) from exc
    figs, per = P.summarise_aflw2000(run)
    settings = {
        "dataset": "AFLW2000-3D", "path": str(path), "layout": data.layout,
        "images": len(data), "images_total": data.n_total,
        "limit": limit, "subset": "evenly spaced over the list" if len(data) < data.n_total
        else "all",
        "protocols": list(run.protocols), "crop_rule": P.CROP_RULE,
        "crop_scale_rule": P.CROP_SCALE_RULE,
        "roi_boxes": data.roi_source,
        "nme": "mean 68-point 2D error / sqrt(w*h) of the ground-truth 68-point 2D box "
               "(3DDFA, Zhu et al. TPAMI 2017)",
        "nme_3d": "mean 68-point 3D error after subtracting each set's mean z (ground-truth "
                  "z negated to the output frame), same normalisation",
        "yaw_bins_deg": [list(b) for b in M.YAW_BINS],
        "yaw_splits": list(data.yaw_splits),
        "yaw_split_sources": {k: D.YAW_SPLITS[k] if data.layout == "3ddfa-protocol"
                              else "Pose_Para yaw" for k in data.yaw_splits},
        "pose": f"MAE of yaw, pitch, roll (deg) against Pose_Para on faces with all "
                f"|angles| <= {M.POSE_LIMIT_DEG:g}",
        "ced": {"auc_threshold_pct": M.CED_AUC_THRESHOLD,
                "failure_thresholds_pct": list(M.CED_FAILURE_THRESHOLDS),
                "misses": "count as failures"},
    }
    if detector is not None:
        settings["detector"] = det_info
        settings["iou_threshold"] = iou_threshold
        settings["detector_match"] = ("detection with the highest IoU with the 68-landmark "
                                      f"box, IoU >= {iou_threshold}; else a miss")
        settings["roi_rule_detector"] = (f"roi_box_from_detector_box(scale={G.ROI_SCALE}, "
                                         f"shift_y={G.ROI_SHIFT_Y})")
    if "occlusion" in run.protocols:
        settings["occlusion"] = {
            "seed": occlusion_seed, "kinds": list(O.OCCLUDER_KINDS),
            "source": "after DSFNet's synthetic occlusion benchmark (Li et al., CVPR 2023)",
            "sizes": "s = sqrt(w*h) of the 68-landmark box; square side U(0.3,0.5)s; two "
                     "intersecting squares of side U(0.25,0.4)s; column width U(0.15,0.3)w, "
                     "full image height; centres uniform in the box; colour uniform RGB",
            "yaw_split": "fit"}
    doc = {"command": "facealign evaluate aflw2000-3d", "version": __version__,
           "created_utc": _now(), "settings": settings,
           "methods": {m.key: m.info for m in methods}, "results": figs}
    if per_image:
        doc["per_image"] = {"names": data.names, "nme_2d_pct": per}
    title = "facealign evaluate — AFLW2000-3D"
    _write_outputs(doc, reports.aflw2000_tables(doc), title, json_path, markdown_path,
                   plot_path,
                   lambda: reports.aflw2000_panels(doc, per, data.yaw_splits["fit"]))


@evaluate.command("landmarks68", short_help="Photos with 68-point annotations (.pts or JSON), "
                  "detector in the loop.")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--annotations", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None,
              help='JSON {"photos": {stem: [[[x, y] * 68], ...]}} (0-based pixels) instead of '
                   ".pts files.")
@click.option("--pts-zero-based", is_flag=True,
              help=".pts coordinates are 0-based (default: 1-based, the 300-W convention).")
@_common_options
def landmarks68(directory, annotations, pts_zero_based, settings, baseline, baseline_mean_std,
                json_path, markdown_path, plot_path, limit, iou_threshold, threads, per_image):
    """Evaluate 68 landmarks on annotated photos (DIRECTORY of images).

    \b
    Annotations: 300-W .pts files beside the images (photo.pts or photo_1.pts, photo_2.pts
    for several faces of photo.jpg), or --annotations FILE.json. The detector runs on every
    image; each annotated face is matched to the detection with the highest IoU with its
    68-point box (>= --iou-threshold) or counted as a miss. NME is normalised by sqrt(w*h) of
    the ground-truth box and by the inter-ocular distance (outer eye corners, iBUG points 36
    and 45; the 300-W normalisation). An annotation that cannot be scored (its points on one
    point or line, or its outer eye corners together) is left out and counted apart, with a
    warning.
    """
    from facealign_cli.core.morphable_model import BasisNotFoundError
    from facealign_cli.evaluation import datasets as D
    from facealign_cli.evaluation import metrics as M
    from facealign_cli.evaluation import protocols as P
    from facealign_cli.evaluation import reports

    _check_outputs(plot_path, json_path, markdown_path)
    try:
        items = D.open_landmarks68(directory, annotations, pts_one_based=not pts_zero_based,
                                   limit=limit)
    except D.DatasetLayoutError as exc:
        raise SetupError(str(exc)) from exc
    methods = _load_methods(settings, baseline, baseline_mean_std, threads, standard_row=True)
    detector, det_info = _load_detector(threads)
    try:
        with _progress(len(items), "landmarks68") as advance:
            run = P.run_landmarks68(items, methods, detector, iou_threshold, progress=advance)
    except (D.DatasetLayoutError, BasisNotFoundError) as exc:
        raise SetupError(str(exc)) from exc
    figs, per = P.summarise_landmarks68(run)
    bad = figs["detection"]["degenerate_faces"]
    if bad:
        listed = "; ".join(f"{s}: {why}" for s, why in bad[:5]) + ("; ..." if len(bad) > 5 else "")
        _note(f"facealign: warning: {len(bad)} degenerate annotation(s) left out of the scores "
              f"(neither detector misses nor errors): {listed}")
    settings = {
        "dataset": "landmarks68", "path": str(directory),
        "annotations": str(annotations) if annotations else ".pts files beside the images "
        + ("(0-based)" if pts_zero_based else "(1-based, 300-W; 1 subtracted)"),
        "images": len(items), "limit": limit, "detector": det_info,
        "iou_threshold": iou_threshold,
        "detector_match": "detection with the highest IoU with the 68-landmark box, "
                          f"IoU >= {iou_threshold}; else a miss",
        "degenerate": "an annotation whose 68-point box or outer-eye-corner distance is under "
                      f"{M.MIN_ANNOTATION_PX:g} px is left out of every figure and counted in "
                      "detection.degenerate, not as a miss",
        "crop_rule": P.CROP_RULE, "crop_scale_rule": P.CROP_SCALE_RULE,
        "nme_box": "mean 68-point error / sqrt(w*h) of the ground-truth 68-point box",
        "nme_io": "mean 68-point error / distance of points 36 and 45 (outer eye corners; "
                  "300-W, Sagonas et al. 2016)",
        "ced": {"auc_threshold_pct": M.CED_AUC_THRESHOLD,
                "failure_thresholds_pct": list(M.CED_FAILURE_THRESHOLDS),
                "misses": "count as failures"},
    }
    doc = {"command": "facealign evaluate landmarks68", "version": __version__,
           "created_utc": _now(), "settings": settings,
           "methods": {m.key: m.info for m in methods}, "results": figs}
    if per_image:
        doc["per_image"] = {"faces": run.sources, "nme_pct": per}
    _write_outputs(doc, reports.landmarks68_tables(doc), "facealign evaluate — landmarks68",
                   json_path, markdown_path, plot_path,
                   lambda: reports.landmarks68_panels(doc, per))


@evaluate.command("stability", short_help="Jitter and lag on synthetic videos made from "
                  "photos (tracking, One-Euro smoothing).")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--frames", type=click.IntRange(min=2), default=None,
              help="Frames of each photo's jitter video [default: 30].")
@click.option("--moving-frames", type=click.IntRange(min=2), default=None,
              help="Frames of each photo's moving-face video [default: 45].")
@click.option("--fps", type=click.FloatRange(min=1, min_open=False), default=None,
              help="Frame rate of the synthetic videos [default: 30].")
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Seed of the random similarities (photo k uses seed + k) [default: 0].")
@click.option("--annotations", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None,
              help='JSON {"photos": {stem: [[[x, y] * 68], ...]}}: only the detections matched '
                   "to an annotated face count (false detections excluded); the annotations "
                   "are never compared with.")
@click.option("--iou-threshold", type=click.FloatRange(0, 1), default=0.3, show_default=True,
              help="Minimum IoU of the detection matched to an annotated face.")
@click.option("--detect-every", type=click.IntRange(min=1), default=1, show_default=True,
              help="Run the detector on every k-th frame, landmarks carried in between.")
@click.option("--smooth-min-cutoff", type=click.FloatRange(min=0, min_open=True), default=None,
              help="One-Euro cutoff at rest, Hz [default: the tool's].")
@click.option("--smooth-beta", type=click.FloatRange(min=0), default=None,
              help="One-Euro speed coefficient, per face size per second [default: the "
                   "tool's].")
@click.option("--smooth-d-cutoff", type=click.FloatRange(min=0, min_open=True), default=None,
              help="One-Euro cutoff of the speed estimate, Hz [default: the tool's].")
@click.option("--smooth-dead-zone", type=click.FloatRange(min=0), default=None,
              help="Speed, face sizes per second, below which the cutoff stays at rest "
                   "[default: the tool's].")
@click.option("--weights", default=None, metavar="NAME|PATH",
              help="facealign weights: a shipped name (v1, v3, ...) or a checkpoint / ONNX "
                   "export (default: $FACEALIGN_WEIGHTS, else the shipped default).")
@click.option("--baseline-3ddfa", "baseline", type=click.Path(
    exists=True, dir_okay=False, path_type=Path), default=None,
    help="Your 3DDFA-V2 MobileNet weights (mb05_120x120.pth) to compare against; never "
         "shipped or downloaded by facealign.")
@click.option("--baseline-mean-std", type=click.Path(
    exists=True, dir_okay=False, path_type=Path), default=None,
    help="param_mean_std_62d_120x120.pkl of the baseline (default: beside its weights).")
@click.option("--json", "json_path", type=_PATH, default=None,
              help="Write every figure and the exact settings as JSON.")
@click.option("--markdown", "markdown_path", type=_PATH, default=None,
              help="Write the tables as Markdown.")
@click.option("--limit", type=click.IntRange(min=0), default=0,
              help="Evaluate only N photos spread evenly over the folder (quick check).")
@click.option("--threads", type=click.IntRange(min=0), default=1, show_default=True,
              help="CPU threads for the networks (0 = the runtime's default).")
@click.option("--runtime", type=click.Choice(RUNTIMES), default=None,
              help="Runtime of the facealign regressor [default: $FACEALIGN_RUNTIME, else "
                   "auto, as in the image commands].")
@click.option("--per-image", is_flag=True, help="Also store per-photo figures in the JSON.")
@click.option("--flip/--no-flip", default=None,
              help="Test-time flip averaging for facealign [default: on], as the image "
                   "commands do by default. The --baseline-3ddfa model runs as its authors "
                   "ship it (no flip).")
@_with_settings
def stability(directory, frames, moving_frames, fps, seed, annotations, iou_threshold,
              detect_every, smooth_min_cutoff,
              smooth_beta, smooth_d_cutoff, smooth_dead_zone, settings, baseline,
              baseline_mean_std, json_path, markdown_path, limit, threads, per_image):
    """Stability on synthetic videos made from the photos of DIRECTORY (no annotations).

    \b
    After 3DDFA-V2's short-video synthesis (Guo et al., ECCV 2020): each photo becomes a
    jitter video of independent random similarities (scale 0.95-1.05, rotation +-3 deg,
    shift +-5 px, fixed seed) and a moving-face video (a known smooth trajectory). The
    detector, tracker and regressor run on the frames in order; the landmarks are mapped
    back to the photo through the known transforms.

    \b
    Reported, in % of the face size (sqrt(w*h) of its 68-point box): jitter (mean distance
    to the per-point mean over the frames), frame-to-frame motion, raw and after the
    One-Euro filter (Casiez et al., CHI 2012) of --smooth; the moving-face error (distance
    to the landmarks on the still photo), raw and smoothed: its rise is the lag that
    smoothing costs. Also tracks per face, and frames per second of the video pipeline.
    """
    from facealign_cli.evaluation import stability as S

    frames = _or_default(frames, S.DEFAULT_FRAMES)
    moving_frames = _or_default(moving_frames, S.DEFAULT_MOVING_FRAMES)
    fps = _or_default(fps, S.DEFAULT_FPS)
    seed = _or_default(seed, S.DEFAULT_SEED)
    smooth = _landmark_smoothing(min_cutoff=smooth_min_cutoff, beta=smooth_beta,
                                 d_cutoff=smooth_d_cutoff, dead_zone=smooth_dead_zone)
    _check_outputs(None, json_path, markdown_path)
    photos = _stability_photos(directory, limit)
    annotated = _annotated_faces(directory, annotations)
    methods = _load_methods(settings, baseline, baseline_mean_std, threads)
    detector, det_info = _load_detector(threads)
    figs, per = _run_stability(methods, detector, photos, detect_every=detect_every,
                               smooth=smooth, frames=frames, moving_frames=moving_frames,
                               fps=fps, seed=seed, annotated=annotated,
                               iou_threshold=iou_threshold)
    settings = {
        "dataset": "photos", "path": str(directory), "photos": len(photos), "limit": limit,
        "subset": "evenly spaced over the sorted names" if limit else "all",
        "frames": frames, "moving_frames": moving_frames, "fps": fps, "seed": seed,
        "faces": _faces_setting(annotations, iou_threshold),
        **_stability_method_settings(smooth),
        "detect_every": detect_every, "threads": threads, "detector": det_info,
        **_tracking_settings(),
    }
    doc = {"command": "facealign evaluate stability", "version": __version__,
           "created_utc": _now(), "settings": settings,
           "methods": {m.key: m.info for m in methods}, "results": figs}
    if per_image:
        doc["per_image"] = per
    _write_outputs(doc, S.stability_tables(doc), "facealign evaluate — stability", json_path,
                   markdown_path, None, lambda: [])


def _or_default(value, default):
    """``value``, or ``default`` where an option was not given (None)."""
    return default if value is None else value


def _landmark_smoothing(**given):
    """The landmark One-Euro settings: the tool's, with the ``--smooth-*`` options given (not
    None) in place of theirs."""
    import dataclasses

    from facealign_cli.core.smoothing import LANDMARK_DEFAULTS

    return dataclasses.replace(LANDMARK_DEFAULTS,
                               **{k: v for k, v in given.items() if v is not None})


def _stability_photos(directory: Path, limit: int) -> list[Path]:
    """The photos of ``directory`` (sorted, hidden files skipped), ``limit`` of them spread
    evenly when ``limit`` > 0. Raises SetupError when there is none."""
    from facealign_cli.evaluation import datasets as D

    photos = sorted(p for p in directory.iterdir()
                    if p.is_file() and p.suffix in D.IMAGE_SUFFIXES and not p.name.startswith("."))
    if not photos:
        raise SetupError(f"{directory} holds no photos ({', '.join(D.IMAGE_SUFFIXES)})")
    return [photos[i] for i in D.select_indices(len(photos), limit)]


def _annotated_faces(directory: Path, annotations: Path | None) -> dict | None:
    """``{photo stem: annotated faces}`` of ``--annotations`` (None without it). Raises
    SetupError for a file that does not fit the folder."""
    if annotations is None:
        return None
    from facealign_cli.evaluation import datasets as D

    try:
        items = D.open_landmarks68(directory, annotations)
    except D.DatasetLayoutError as exc:
        raise SetupError(str(exc)) from exc
    return {it.path.stem: it.faces for it in items}


def _run_stability(methods, detector, photos, *, detect_every, smooth, annotated,
                   iou_threshold, **videos) -> tuple[dict, dict]:
    """``(figures, per-photo figures)`` by method key: each method's video pipeline (detector,
    tracker, ``smooth`` landmarks and the tool's pose smoothing) over the synthetic videos of
    ``photos`` (``videos``: frames, moving_frames, fps, seed). Raises SetupError for a data set
    or 3DMM basis that cannot be read."""
    from facealign_cli.core.morphable_model import BasisNotFoundError
    from facealign_cli.core.smoothing import POSE_DEFAULTS, FaceSmoother
    from facealign_cli.core.tracking import VideoAligner
    from facealign_cli.evaluation import datasets as D
    from facealign_cli.evaluation import stability as S

    figs, per = {}, {}
    try:
        for m in methods:
            aligner = m.aligner(detector)
            va = VideoAligner(aligner, detect_every=detect_every,
                              smoother=FaceSmoother(smooth, POSE_DEFAULTS))
            with _progress(len(photos), f"stability ({m.label})") as advance:
                run = S.run_stability(photos, aligner, va, **videos,
                                      smooth=smooth, read_image=D.read_dataset_image,
                                      progress=advance, annotations=annotated,
                                      iou_threshold=iou_threshold, smooth_pose=POSE_DEFAULTS)
            figs[m.key], per[m.key] = S.summarise_stability(run)
    except (D.DatasetLayoutError, BasisNotFoundError) as exc:
        raise SetupError(str(exc)) from exc
    return figs, per


def _faces_setting(annotations: Path | None, iou_threshold: float) -> str:
    """The report's ``faces`` setting: which detections count."""
    if annotations is None:
        return "every detection on the photo"
    return ("detections matched to an annotated face of " + str(annotations) +
            f" (IoU >= {iou_threshold}); annotations select faces only")


def _stability_method_settings(smooth) -> dict:
    """The report's settings of the synthetic videos and of the smoothing."""
    import dataclasses

    from facealign_cli.core.smoothing import POSE_DEFAULTS
    from facealign_cli.evaluation import stability as S

    return {
        "similarities": {"scale": list(S.SCALE_RANGE), "rotation_deg": S.ROTATION_DEG,
                         "shift_px": S.SHIFT_PX, "centre": "mean centre of the photo's faces",
                         "source": "3DDFA-V2 short-video synthesis (Guo et al., ECCV 2020)"},
        "moving": (f"shift {S.MOVING_SHIFT:g} x median face size (x; y half, twice the "
                   f"frequency), rotation ±{S.MOVING_ROTATION_DEG:g}°, scale "
                   f"±{100 * S.MOVING_SCALE:g}%, period {S.MOVING_PERIOD_S:g} s"),
        "smoothing": dataclasses.asdict(smooth),
        "smoothing_pose": dataclasses.asdict(POSE_DEFAULTS),
        "smoothing_jitter_video": "the landmark smoother (One-Euro on rigid motion and "
                                  "shape) over each track's mapped-back landmarks (a still "
                                  "face with the pipeline's noise)",
        "smoothing_moving_video": "the pipeline's FaceSmoother on the frames, then mapped back",
    }


def _tracking_settings() -> dict:
    """The report's settings of the tracker and its units (after ``detector``)."""
    from facealign_cli.core.tracking import (
        DEFAULT_IOU_THRESHOLD,
        DEFAULT_MAX_DISTANCE,
        DEFAULT_MAX_MISSED,
        DEFAULT_MAX_SIZE_RATIO,
    )
    from facealign_cli.evaluation import stability as S

    return {
        "tracking": {"iou_threshold": DEFAULT_IOU_THRESHOLD, "max_missed": DEFAULT_MAX_MISSED,
                     "max_distance_face_sizes": DEFAULT_MAX_DISTANCE,
                     "max_size_ratio": DEFAULT_MAX_SIZE_RATIO,
                     "track_match_iou": S.MATCH_IOU},
        "units": "% of the face size, sqrt(w*h) of its 68-point box on the photo",
        "units_pose": "degrees (pose_jitter, pose_error: mean over yaw, pitch and roll; roll "
                      "mapped back as roll - the frame's in-plane rotation)",
    }


if __name__ == "__main__":  # pragma: no cover
    sys.exit(evaluate())
