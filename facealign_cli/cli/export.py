"""``facealign export-onnx``: write the ONNX Runtime export of a regressor checkpoint beside it
(needs torch and the ``onnx`` package, the ``[train]`` extra; running the export needs only
``onnxruntime``)."""

from __future__ import annotations

from pathlib import Path

import click


class SetupError(click.ClickException):
    """A one-line error for a missing package or file, exit code 2 (the CLI's setup error)."""

    exit_code = 2


def require_torch(feature: str, *, onnx: bool = False) -> None:
    """Fail with :class:`SetupError` (the install command) unless torch (and, with ``onnx``,
    the ``onnx`` package) imports: the parts of the CLI that need the ``[train]`` extra."""
    from facealign_cli.models.weights import TorchMissingError, import_torch

    try:
        import_torch(feature)
        if onnx:
            try:
                import onnx as _onnx  # noqa: F401
            except ImportError as exc:
                raise TorchMissingError(
                    f"{feature} needs the onnx package, which is not installed; install it "
                    "with: python3 -m pip install onnx") from exc
    except TorchMissingError as exc:
        raise SetupError(str(exc)) from None


@click.command("export-onnx")
@click.argument("checkpoints", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--check/--no-check", default=True, show_default=True,
              help="Run the export and torch on the same random crops and fail if the 62 "
                   "parameters differ by more than 1e-3 (relative to their spread).")
def export_onnx_cmd(checkpoints, check):
    """Export each CHECKPOINT (.pth) to CHECKPOINT.onnx, the file the ONNX Runtime path of
    every command runs (--runtime auto/onnxruntime). The export records the checkpoint's sha256,
    so an export left beside a changed checkpoint is never used.

    Exit codes: 0 exported; 1 the export failed or disagrees with torch; 2 a missing file, a
    file that is not a facealign checkpoint (one line saying why), or torch / onnx missing."""
    require_torch("facealign export-onnx", onnx=True)
    import numpy as np

    from facealign_cli.models.regressor import Regressor
    from facealign_cli.models.regressor_onnx import OnnxRegressor, export_onnx
    from facealign_cli.models.weights import CheckpointError

    for ck in checkpoints:
        try:
            out = export_onnx(ck)
        except ImportError as exc:
            raise SetupError(str(exc)) from None
        except CheckpointError as exc:  # not a checkpoint: bad input, exit 2 like a bad path
            raise SetupError(f"cannot export: {exc}") from None
        except (OSError, RuntimeError) as exc:
            raise click.ClickException(f"cannot export {ck}: {exc}") from None
        if check:
            crops = np.random.default_rng(0).integers(0, 256, (8, 120, 120, 3), np.uint8)
            ref = Regressor(ck).predict(crops)
            got = OnnxRegressor(ck).predict(crops)
            err = float(np.max(np.abs(got - ref) / (ref.std(0) + 1e-6)))
            if not err < 1e-3:
                raise click.ClickException(f"{out}: ONNX and torch disagree (max error {err:.2e} "
                                           "of the parameters' spread)")
        click.echo(str(out))
