"""``facealign train``: reproduce the shipped regressor weights (training only; needs the data
folder ``../shared`` and a teacher weights file, neither of which the tool ships)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("train")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
              default="configs/train_v4.toml", show_default=True, help="TOML training recipe.")
@click.option("--shared", type=click.Path(exists=True, file_okay=False), default="../shared",
              show_default=True, help="Data folder (AFLW-train, 300-W, AFLW2000-3D, teacher).")
@click.option("--teacher", type=click.Path(dir_okay=False), default=None,
              help="Teacher weights (default <shared>/teacher/mb05_120x120.pth).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="runs/v4",
              show_default=True, help="Run folder: model.pth, train_log.txt, summary.json.")
@click.option("--cache", type=click.Path(file_okay=False), default=".cache", show_default=True,
              help="Folder for the prepared training set.")
@click.option("--max-steps", type=click.IntRange(min=0), default=0,
              help="Stop after N steps (smoke run).")
@click.option("--limit-faces", type=click.IntRange(min=0), default=0,
              help="Train on N faces only (smoke run).")
@click.option("--epochs", type=click.IntRange(min=0), default=0,
              help="Override the config's epochs.")
@click.option("--no-eval", is_flag=True, help="Skip the AFLW2000-3D evaluation at the end.")
def train_cmd(config_path, shared, teacher, out_dir, cache, max_steps, limit_faces, epochs,
              no_eval):
    """Train the regressor from random initialisation (distilling the teacher's labels).
    Needs torch (pip install torch==2.13.0 onnx, the [train] extra)."""
    import os

    from facealign_cli.cli.export import require_torch

    cfg = _read_config(config_path, max_steps, limit_faces, epochs)
    require_torch("facealign train")

    # OpenMP threads that spin while waiting make CPU training several times slower when the
    # machine is shared; set before torch starts its thread pool.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from facealign_cli.training.train import train

    shared_p = Path(shared)
    teacher_p = Path(teacher) if teacher else shared_p / "teacher" / "mb05_120x120.pth"
    eval_fn = None
    aflw = shared_p / "data" / "aflw2000-3d"
    if not no_eval and aflw.is_dir():
        def eval_fn(ck):
            """AFLW2000-3D ground-truth crops (3DDFA protocol), no flip averaging, as the
            summary has always reported: ``nme_bins`` / ``nme_mean`` (% , fit-yaw bins),
            ``bin_counts``, ``pose_mae`` (degrees) and ``pose_count``, rounded to 3 decimals."""
            from facealign_cli.evaluation.datasets import open_aflw2000
            from facealign_cli.evaluation.protocols import Method, run_aflw2000, summarise_aflw2000
            from facealign_cli.models.regressor import Regressor

            method = Method("facealign", "facealign", Regressor(ck), {"weights": str(ck)})
            figs, _ = summarise_aflw2000(run_aflw2000(open_aflw2000(aflw), [method], batch=128))
            f = figs["gt-crops"]["facealign"]
            fit, pose = f["nme_2d"]["splits"]["fit"], f["pose"]
            return {"nme_bins": [round(b, 3) for b in fit["bins"]],
                    "nme_mean": round(fit["mean"], 3), "bin_counts": fit["counts"],
                    "pose_mae": {k: round(pose[k], 3) for k in ("yaw", "pitch", "roll", "mean")},
                    "pose_count": pose["count"]}
    ck = train(cfg, shared_p, teacher_p, Path(out_dir), Path(cache), eval_fn=eval_fn)
    click.echo(str(ck))
    try:  # the ONNX Runtime export the CLI runs by default (see facealign export-onnx)
        from facealign_cli.models.regressor_onnx import export_onnx

        click.echo(str(export_onnx(ck)))
    except ImportError as exc:
        click.echo(f"note: no ONNX export ({exc}); run facealign export-onnx {ck} later",
                   err=True)


def _read_config(config_path, max_steps: int, limit_faces: int, epochs: int):
    """The recipe with the command-line overrides, checked as a whole before torch or any data
    is touched: every problem is a usage error (exit 2) naming the file and the key."""
    from facealign_cli.training.config import TEACHER_INIT, ConfigError, TrainConfig

    try:
        cfg = TrainConfig.from_toml(config_path)
        if max_steps:
            cfg.max_steps = max_steps
        if limit_faces:
            cfg.limit_faces = limit_faces
        if epochs:
            cfg.epochs = epochs
        cfg.validate()
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="'--config'") from None
    for key in ("init_from", "labeller", "box_error"):
        path = getattr(cfg, key)
        if key == "init_from" and path == TEACHER_INIT:
            continue  # the teacher file (--teacher) is checked where it is read
        if path and not Path(path).is_file():
            raise click.BadParameter(f"{config_path}: {key} = {path!r}: no such file",
                                     param_hint="'--config'")
    return cfg
