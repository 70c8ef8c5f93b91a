"""Shared parts of the ``facealign evaluate`` commands: loading the methods (facealign and the
optional 3DDFA-V2 baseline) and the detector, the common options, progress bar and report
files. Setup failures raise :class:`~facealign_cli.cli.export.SetupError` (exit status 2).
"""

from __future__ import annotations

import datetime as _dt
from contextlib import contextmanager
from pathlib import Path

import click

from facealign_cli.cli.crop_options import crop_options, device_option
from facealign_cli.cli.export import SetupError
from facealign_cli.models.weights import RUNTIMES

_PATH = click.Path(path_type=Path)


@contextmanager
def _progress(total: int, description: str):
    """A rich progress bar on stderr when stderr is a terminal; yields ``advance(n)`` or None
    (the tool's one progress bar, :func:`facealign_cli.batch.progress.terminal_progress`)."""
    from facealign_cli.batch.progress import terminal_progress

    with terminal_progress(total, description) as advance:
        yield advance


def _note(msg: str) -> None:
    click.echo(msg, err=True)


def _load_methods(settings, baseline: Path | None, baseline_mean_std: Path | None,
                  threads: int, standard_row: bool = False):
    """The methods to evaluate: the facealign regressor with ``settings``
    (:class:`~facealign_cli.core.settings.AlignerSettings`, see :func:`_with_settings`:
    ``weights``, else ``$FACEALIGN_WEIGHTS``, else the default weights, in ``runtime``, else
    ``$FACEALIGN_RUNTIME``, else the runtime the CLI would use,
    :func:`facealign_cli.models.regressor_onnx.make_regressor`; ``flip``,
    ``roi_crop_scale``, ``second_pass``), then, with ``--baseline-3ddfa``, the user's
    3DDFA-V2 MobileNet as its authors ship it
    (:func:`~facealign_cli.evaluation.protocols.authors_settings`), then, with
    ``standard_row`` and unless the settings already are the standard crop, facealign again
    with the standard crop (:data:`~facealign_cli.core.settings.STANDARD_CROP`; key
    ``facealign-standard``)."""
    path = _facealign_weights_path(settings)
    if path.is_file():
        methods = _facealign_methods(settings, path, threads, standard_row)
    elif baseline is None:
        raise SetupError(
            f"no facealign weights at {path}: pass --weights FILE (or set FACEALIGN_WEIGHTS)")
    else:
        _note(f"note: no facealign weights at {path}; evaluating the 3DDFA-V2 baseline only")
        methods = []
    if baseline is not None:
        # (the first two methods make the reports' difference rows: facealign minus the
        # baseline; the standard-crop row, if any, comes last)
        methods.insert(min(len(methods), 1), _baseline_method(baseline, baseline_mean_std,
                                                              threads))
    return methods


def _facealign_weights_path(settings) -> Path:
    """The facealign weights to evaluate: ``settings.weights``, else ``$FACEALIGN_WEIGHTS``,
    else the default weights (a shipped name or a file; the path may not exist).

    Raises:
        SetupError: ``--weights`` names neither a shipped name nor a file.
    """
    from facealign_cli.cli.main import env_weights
    from facealign_cli.models.weights import resolve_weights

    weights = None if settings.weights is None else Path(settings.weights)
    env = env_weights()  # $FACEALIGN_WEIGHTS: read here, at the edge
    try:  # a shipped name (v1) or a file; None: the default
        return resolve_weights(str(weights) if weights is not None else env)
    except FileNotFoundError as exc:
        if weights is not None:
            raise SetupError(f"--weights: {exc}") from None
        return Path(env)


def _facealign_methods(settings, path: Path, threads: int, standard_row: bool) -> list:
    """The facealign row with ``settings`` and the weights at ``path`` (in ``runtime``, else
    ``$FACEALIGN_RUNTIME``, else the CLI's), and with ``standard_row``, unless the settings
    already are the standard crop, the standard-crop row (key ``facealign-standard``).

    Raises:
        SetupError: the device is unusable or the weights cannot be loaded.
    """
    import dataclasses

    from facealign_cli.cli.main import env_runtime
    from facealign_cli.core.settings import STANDARD_CROP
    from facealign_cli.evaluation.protocols import Method
    from facealign_cli.models.providers import DeviceError
    from facealign_cli.models.regressor_onnx import make_regressor
    from facealign_cli.models.weights import sha256_of

    runtime = settings.runtime or env_runtime()  # $FACEALIGN_RUNTIME: read at the edge
    try:
        reg = make_regressor(path, num_threads=threads or None, runtime=runtime,
                             device=settings.device)
    except DeviceError as exc:
        raise SetupError(str(exc)) from None
    except Exception as exc:  # torch / pickle raise many types for a wrong file
        raise SetupError(f"cannot load facealign weights {path}: {exc}") from exc
    s = settings
    # the checkpoint's sha256 (an ONNX export carries it: a wheel ships no checkpoint)
    sha = getattr(reg, "checkpoint_sha256", None) or sha256_of(path)
    info = {"label": "facealign", "weights": str(path), "sha256": sha,
            "arch": reg.arch, "input_size": reg.input_size, "runtime": reg.runtime,
            "device": settings.device,
            "execution_provider": getattr(reg, "provider", "torch (CPU)"),
            **_test_time(s)}
    m = Method("facealign", "facealign", reg, info, settings=s)
    if not (standard_row and (s.roi_crop_scale != 1 or s.second_pass)):
        return [m]
    std = dataclasses.replace(s, **STANDARD_CROP)
    label = "facealign (given crop, one pass)"
    return [m, dataclasses.replace(m, key="facealign-standard", label=label, settings=std,
                                   info={**info, "label": label, **_test_time(std)})]


def _baseline_method(baseline: Path, baseline_mean_std: Path | None, threads: int):
    """The user's 3DDFA-V2 MobileNet at ``baseline`` as its authors ship it, with its
    parameter mean/std file (``baseline_mean_std``, else the authors' name beside it).

    Raises:
        SetupError: the mean/std file is missing, torch is missing, or the weights cannot be
            loaded.
    """
    from facealign_cli.evaluation.protocols import Method, crop_rule_label
    from facealign_cli.models.baseline_3ddfa import Baseline3DDFA
    from facealign_cli.models.weights import TorchMissingError, sha256_of

    ms = baseline_mean_std or baseline.with_name("param_mean_std_62d_120x120.pkl")
    if not ms.is_file():
        raise SetupError(
            f"the 3DDFA-V2 parameter mean/std file {ms} is missing: pass "
            "--baseline-mean-std param_mean_std_62d_120x120.pkl")
    try:
        b = Baseline3DDFA(baseline, ms, num_threads=threads or None)
    except TorchMissingError as exc:
        raise SetupError(str(exc)) from None
    except Exception as exc:
        raise SetupError(f"cannot load 3DDFA-V2 weights {baseline}: {exc}") from exc
    return Method("3ddfa-v2", "3DDFA-V2 MobileNet (user weights)", b, {
        "label": "3DDFA-V2", "weights": str(baseline), "sha256": sha256_of(baseline),
        "mean_std": str(ms), "mean_std_sha256": sha256_of(ms), "input_size": 120,
        "crop": crop_rule_label(1.0, False)})


def _test_time(s) -> dict:
    """What a report records of a facealign row's test-time steps (settings ``s``): the flags
    and ``crop``, its crop rule and passes in words
    (:func:`~facealign_cli.evaluation.protocols.crop_rule_label`)."""
    from facealign_cli.evaluation.protocols import crop_rule_label

    return {"flip": s.flip, "roi_crop_scale": s.roi_crop_scale, "second_pass": s.second_pass,
            "first_pass_flip": s.first_pass_flip,
            "second_pass_min_change": s.second_pass_min_change,
            "crop": crop_rule_label(s.roi_crop_scale, s.second_pass, s.flip, s.first_pass_flip,
                                    s.second_pass_min_change)}


def _load_detector(threads: int, device: str = "auto"):
    """The default detector on ``device`` (``--device``) and its description for the report
    (``execution_provider``: where it ran)."""
    try:
        from facealign_cli.models.detector import BlazeFaceDetector
    except ImportError as exc:
        raise SetupError(
            f"the detector protocols need facealign_cli.models.detector.BlazeFaceDetector ({exc}); "
            "run --protocols gt-crops,occlusion instead") from exc
    from facealign_cli.models.providers import DeviceError

    try:
        det = BlazeFaceDetector(num_threads=threads or 1, device=device)
    except DeviceError as exc:
        raise SetupError(str(exc)) from None
    except Exception as exc:
        raise SetupError(f"cannot start the BlazeFace detector: {exc}") from exc
    try:
        policy = det.policy()
    except Exception:  # the policy is informative only
        policy = None
    return det, {"name": type(det).__name__, "policy": policy,
                 "execution_provider": det.provider}


def _check_outputs(plot: Path | None, *paths: Path | None) -> None:
    if plot is not None:
        from facealign_cli.evaluation.reports import PlotUnavailableError, check_plot_available

        try:
            check_plot_available()
        except PlotUnavailableError as exc:
            raise SetupError(str(exc)) from exc
    for p in (plot, *paths):
        if p is not None:
            p.parent.mkdir(parents=True, exist_ok=True)


def _write_outputs(doc: dict, tables, title: str, json_path, markdown_path, plot_path, panels):
    from facealign_cli.evaluation import reports

    reports.print_tables(tables)
    if json_path:
        reports.write_json(json_path, doc)
        _note(f"wrote {json_path}")
    if markdown_path:
        Path(markdown_path).write_text(reports.markdown(doc, tables, title), encoding="utf-8")
        _note(f"wrote {markdown_path}")
    if plot_path:
        reports.plot_ced(plot_path, panels(), title=title)
        _note(f"wrote {plot_path}")


def _with_settings(f):
    """Give a command ``settings``, the
    :class:`~facealign_cli.core.settings.AlignerSettings` of its parameters named like its
    fields (``weights``, ``runtime``, ``device``, ``flip``, ``roi_crop_scale`` (None: the default),
    ``second_pass``), in their place; ``min_quality`` 0: evaluate scores every detection it
    matches to an annotated face; ``pose_convention`` AFLW2000-3D's
    (:data:`~facealign_cli.defaults.EVALUATE_POSE_CONVENTION`: the benchmark's ``Pose_Para``
    is compared with angles of its own convention). Apply it below the command's click
    options.

    Raises:
        click.BadParameter: an invalid setting.
    """
    import functools

    @functools.wraps(f)
    def command(**params):
        from facealign_cli.core.settings import AlignerSettings, SettingError, field_names
        from facealign_cli.defaults import EVALUATE_POSE_CONVENTION, preset_fields

        names = field_names(AlignerSettings)
        test_time = preset_fields(params.pop("preset", None), flip=params.pop("flip", None),
                                  second_pass=params.pop("second_pass", None))
        kw = {k: params.pop(k) for k in list(params) if k in names}
        kw.update(test_time)
        kw = {k: str(v) if k == "weights" and v is not None else v for k, v in kw.items()
              if not (k == "roi_crop_scale" and v is None)}
        try:
            params["settings"] = AlignerSettings(
                min_quality=0.0, pose_convention=EVALUATE_POSE_CONVENTION, **kw)
        except SettingError as exc:
            raise click.BadParameter(exc.message, param_hint=exc.flag) from None
        return f(**params)

    return command


def _common_options(f):
    """The options of the evaluate commands (and ``settings`` from them:
    :func:`_with_settings`)."""
    f = _with_settings(f)
    opts = [
        click.option("--weights", default=None, metavar="NAME|PATH",
                     help="facealign weights: a shipped name (v1, v3, ...) or a checkpoint "
                          "(.pth) / ONNX export (.onnx) (default: $FACEALIGN_WEIGHTS, else "
                          "the shipped default)."),
        click.option("--baseline-3ddfa", "baseline", type=click.Path(
            exists=True, dir_okay=False, path_type=Path), default=None,
            help="Your 3DDFA-V2 MobileNet weights (mb05_120x120.pth) to compare against; "
                 "never shipped or downloaded by facealign."),
        click.option("--baseline-mean-std", type=click.Path(
            exists=True, dir_okay=False, path_type=Path), default=None,
            help="param_mean_std_62d_120x120.pkl of the baseline (default: beside its "
                 "weights)."),
        click.option("--json", "json_path", type=_PATH, default=None,
                     help="Write every figure and the exact settings as JSON."),
        click.option("--markdown", "markdown_path", type=_PATH, default=None,
                     help="Write the tables as Markdown."),
        click.option("--plot", "plot_path", type=_PATH, default=None,
                     help="Write CED curves (PNG; needs matplotlib: facealign-cli[plot])."),
        click.option("--limit", type=click.IntRange(min=0), default=0,
                     help="Evaluate only N images spread evenly over the set (quick check)."),
        click.option("--iou-threshold", type=click.FloatRange(0, 1), default=0.3,
                     show_default=True,
                     help="Minimum IoU of the detection matched to an annotated face."),
        click.option("--threads", type=click.IntRange(min=0), default=1, show_default=True,
                     help="CPU threads for torch and the detector (0 = torch's default). "
                          "One thread is usually fastest: the crops are small and the "
                          "detector protocols run the networks one face at a time."),
        click.option("--runtime", type=click.Choice(RUNTIMES),
                     default=None,
                     help="Runtime of the facealign regressor [default: $FACEALIGN_RUNTIME, "
                          "else auto, as in the image commands]."),
        device_option(evaluate=True),
        click.option("--per-image", is_flag=True,
                     help="Also store per-image NME values in the JSON."),
        click.option("--flip/--no-flip", default=None,
                     help="Test-time flip averaging for facealign [default: the preset's, on], "
                          "as the image commands do. The --baseline-3ddfa model runs as its "
                          "authors ship it (no flip, standard crop, one pass)."),
        *crop_options(evaluate=True),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()
