"""The test-time crop options of the image commands and of ``facealign evaluate``:
``--roi-crop-scale S`` and ``--second-pass/--no-second-pass`` (see
:class:`facealign_cli.core.pipeline.FaceAligner`). Imports only click: ``facealign --help``
stays instant, so the default scale is resolved later (None here =
:data:`facealign_cli.core.geometry.ROI_CROP_SCALE`, 0.88 as written in the help;
``tests/cli/test_crop_options.py`` holds the two equal); the range accepted is
:data:`facealign_cli.core.settings.ROI_CROP_SCALE_RANGE`, the one the settings check. Also
:class:`FiniteFloatRange`, the one validator of every float option of the image commands and
of evaluate."""

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


#: ``--preset``'s help (the figures: the model card, ``weights/README.md``).
PRESET_HELP = ("Test-time steps: fast = one pass on the detector's roi box, flip-averaged (2 "
               "regressor evaluations per face); balanced = a first pass without its mirror, "
               "then a flip-averaged pass at the roi box of its landmarks, skipped (the first "
               "crop reused) where that box moved < 4 % (2-3 evaluations); accurate = both "
               "passes flip-averaged (4). --flip/--no-flip and --second-pass/--no-second-pass "
               "given explicitly override the preset. Measured NME and CPU per photo of each: "
               "weights/README.md.")


def crop_options(evaluate: bool = False) -> list:
    """The click options of the test-time steps (``--preset``, ``--roi-crop-scale``,
    ``--second-pass/--no-second-pass``), for the image commands or (``evaluate``) for
    facealign's rows of ``facealign evaluate``; apply each to the command function. Resolve
    ``preset`` with the flags by :func:`facealign_cli.defaults.preset_fields`."""
    from facealign_cli.core.settings import ROI_CROP_SCALE_RANGE
    from facealign_cli.defaults import DEFAULT_PRESET, PRESETS

    who = "facealign's" if evaluate else "Every face"
    return [
        click.option("--preset", type=click.Choice(list(PRESETS)), default=DEFAULT_PRESET,
                     show_default=True, help=PRESET_HELP),
        click.option("--roi-crop-scale", type=FiniteFloatRange(*ROI_CROP_SCALE_RANGE),
                     default=None,
                     metavar="S",
                     help=f"{who} crop, scaled about its centre by S [default: 0.88, tighter "
                          "than 3DDFA's, chosen on the annotated AFW photos; "
                          "facealign_cli.core.geometry.ROI_CROP_SCALE]. 1 = 3DDFA's standard "
                          "crop." + (" On ground-truth crops a row 'facealign (given crop, "
                                     "one pass)' (S = 1, one pass) is added unless S is 1 "
                                     "with --no-second-pass."
                                     if evaluate else "")),
        click.option("--second-pass/--no-second-pass", default=None,
                     help="Crop each face again at the roi box of its fitted landmarks and "
                          "regress again [default: the preset's: on but for fast]."),
    ]
