"""The test-time crop options of the image commands and of ``facealign evaluate``:
``--roi-crop-scale S`` and ``--second-pass/--no-second-pass`` (see
:class:`facealign_cli.core.pipeline.FaceAligner`). Imports only click: ``facealign --help``
stays instant, so the default scale is resolved later (None here =
:data:`facealign_cli.core.geometry.ROI_CROP_SCALE`, 0.88 as written in the help;
``tests/cli/test_crop_options.py`` holds the two equal); the range accepted is
:data:`facealign_cli.core.settings.ROI_CROP_SCALE_RANGE`, the one the settings check. Also
:class:`FiniteFloatRange`, the one validator of every float option of the image commands and
of evaluate, and :func:`device_option` (``--device``), the same for both."""

from __future__ import annotations

import click


class FiniteFloatRange(click.FloatRange):
    """``click.FloatRange`` that also refuses ``nan`` and ``inf`` (a range check lets nan
    through: every comparison with it is false). The one validator of the float options of the
    image commands."""

    def convert(self, value, param, ctx):
        import math

        rv = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(rv, param, ctx)


def crop_options(evaluate: bool = False) -> list:
    """The two click options, for the image commands or (``evaluate``) for facealign's rows
    of ``facealign evaluate``; apply each to the command function."""
    from facealign_cli.core.settings import ROI_CROP_SCALE_RANGE

    who = "facealign's" if evaluate else "Every face"
    return [
        click.option("--roi-crop-scale", type=FiniteFloatRange(*ROI_CROP_SCALE_RANGE),
                     default=None,
                     metavar="S",
                     help=f"{who} crop, scaled about its centre by S [default: 0.88, tighter "
                          "than 3DDFA's, chosen on the annotated AFW photos; "
                          "facealign_cli.core.geometry.ROI_CROP_SCALE]. 1 = 3DDFA's standard "
                          "crop." + (" A row 'facealign (standard crop)' (1, one pass) is "
                                     "added unless S is 1 with --no-second-pass."
                                     if evaluate else "")),
        click.option("--second-pass/--no-second-pass", default=True, show_default=True,
                     help="Crop each face again at the roi box of its fitted landmarks and "
                          "regress again (one more regressor pass per face; lower NME on "
                          "the AFW photos, see the README)."),
    ]


def device_option(evaluate: bool = False):
    """``--device auto|cpu|cuda|coreml|directml`` (the field ``device`` of
    :class:`~facealign_cli.core.settings.AlignerSettings`; choices
    :data:`facealign_cli.models.providers.DEVICES`), for the image commands or (``evaluate``)
    for facealign's rows of ``facealign evaluate``."""
    from facealign_cli.models.providers import DEVICES

    who = "facealign's detector and regressor" if evaluate else "the detector and regressor"
    return click.option(
        "--device", type=click.Choice(DEVICES, case_sensitive=False), default="auto",
        show_default=True,
        help=f"Where ONNX Runtime runs {who}: auto = CUDA (onnxruntime-gpu) or DirectML "
             "(onnxruntime-directml) where installed, else the CPU; coreml (macOS) only when "
             "asked for. A device the installed ONNX Runtime lacks is an error naming what to "
             "install (exit 2), never a silent fall back to the CPU. Same outputs within float "
             "rounding (not part of the resume fingerprint); the provider used is recorded "
             "in the settings file.")
