"""The ``facealign`` command line: a thin layer that parses options and calls
:func:`facealign_cli.batch.engine.run_batch`.

Import rule: ``facealign --help`` must be instant, so this module imports only ``click`` and the
standard library at module level. Everything heavy (numpy, OpenCV, torch, rich, joblib) is
imported inside the command callbacks. The same rule binds the lazily loaded command modules
listed in :data:`LAZY_COMMANDS` (``facealign_cli/cli_evaluate.py``, ``facealign_cli/cli_train.py``):
each defines one ``click.Command`` object (e.g. ``evaluate = click.command(...)(fn)``) and imports
heavy packages inside the callback; they are imported only when their command runs (or its own
``--help`` is shown), never for ``facealign --help``.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import io
import os
import sys

import click

from facealign_cli import __version__
from facealign_cli.models.weights import RUNTIMES

EXIT_CODES_HELP = """\b
Exit codes:
  0    every image processed (or already done by an earlier run)
  1    some images failed (see <out>/manifest.jsonl and stderr)
  2    usage or setup error: bad option, missing input path, --out in use
       by another run (lock file <out>/.facealign/lock), model files
       missing, Dask missing or its scheduler unreachable (--backend
       dask); nothing (more) was processed
  130  interrupted by Ctrl-C / SIGINT (143: SIGTERM): images in flight were
       finished and the manifest written; re-run the same command to resume
"""

MAIN_EPILOG = EXIT_CODES_HELP + """
\b
Examples:
  facealign mesh ./photos --out ./meshes --jobs 4
  facealign pose ./photos --out ./poses          # -> ./poses/pose.csv
  facealign landmarks ./photos --out ./lm --backend dask --scheduler tcp://head:8786
  find /archive -name '*.jpg' | facealign landmarks - --out -  > landmarks.ndjson
"""

#: Commands implemented in other modules, imported on demand: name -> (module, one-line help
#: shown in ``facealign --help`` without importing the module). The module must define a
#: ``click.Command`` whose ``name`` is the command name (any attribute name).
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "evaluate": ("facealign_cli.cli.evaluate", "Benchmark landmarks and pose on AFLW2000-3D."),
    "train": ("facealign_cli.cli.train", "Train the 3DMM parameter regressor."),
    "export-onnx": ("facealign_cli.cli.export",
                    "Export a regressor checkpoint for ONNX Runtime (the fast path)."),
}


class LazyGroup(click.Group):
    """A click group whose :data:`LAZY_COMMANDS` are imported only when invoked.

    A lazy command whose module is not installed is simply not listed; invoking it gives a
    usage error. Its help line in ``facealign --help`` comes from :data:`LAZY_COMMANDS`.
    """

    @staticmethod
    def _available(name: str) -> bool:
        try:
            return importlib.util.find_spec(LAZY_COMMANDS[name][0]) is not None
        except (ImportError, ValueError):
            return False

    def list_commands(self, ctx):
        lazy = [n for n in LAZY_COMMANDS if n not in self.commands and self._available(n)]
        return sorted(list(self.commands) + lazy)

    def get_command(self, ctx, cmd_name):
        cmd = self.commands.get(cmd_name)
        if cmd is not None or cmd_name not in LAZY_COMMANDS or not self._available(cmd_name):
            return cmd
        module_name = LAZY_COMMANDS[cmd_name][0]
        module = importlib.import_module(module_name)
        cmd = getattr(module, cmd_name, None)
        if not isinstance(cmd, click.Command):
            found = [v for v in vars(module).values()
                     if isinstance(v, click.Command) and v.name == cmd_name]
            if not found:
                raise RuntimeError(f"{module_name} defines no click command named {cmd_name!r}")
            cmd = found[0]
        self.commands[cmd_name] = cmd
        return cmd

    def format_commands(self, ctx, formatter):
        rows = []
        for name in self.list_commands(ctx):
            if name in self.commands:
                cmd = self.commands[name]
                if cmd.hidden:
                    continue
                rows.append((name, cmd.get_short_help_str(limit=formatter.width - 6 - len(name))))
            else:
                rows.append((name, LAZY_COMMANDS[name][1]))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, epilog=MAIN_EPILOG,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="facealign")
def main():
    """facealign: batch 3D dense face alignment.

    Finds faces in photos and fits a 3D morphable face model to each: boxes, 68 landmarks (2D
    and 3D), head pose, and dense coloured 3D face meshes. Every command takes image files and
    folders (walked recursively), writes one output per image (or face) under --out mirroring
    the input folders, and writes <out>/manifest.jsonl with one line per image. Re-running a
    command skips the images already done.
    """
    # OpenMP threads that spin while idle make torch several times slower on a busy machine
    # (and with --jobs > 1); must be set before torch starts its thread pool.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _common_options(f):
    """Options shared by the image commands (applied bottom-up, shown top-down)."""
    opts = [
        click.argument("inputs", nargs=-1, required=True, metavar="INPUT..."),
        click.option("--out", "-o", "out", required=True, metavar="DIR",
                     help="Output folder (created if needed). '-' streams one NDJSON record "
                          "per image to stdout instead (detect, landmarks, pose)."),
        click.option("--jobs", "-j", type=click.IntRange(min=0), default=1, show_default=True,
                     help="Worker processes (0 = one per CPU core). The model is loaded once "
                          "per worker; outputs keep the input order."),
        click.option("--threads", type=click.IntRange(min=0), default=0,
                     help="Threads per worker for the detector, torch and OpenCV "
                          "[default: CPU cores / jobs; 1 with --backend dask]."),
        click.option("--backend", type=click.Choice(["local", "dask"]), default="local",
                     show_default=True,
                     help="Where the images are processed: 'local' (--jobs processes on this "
                          "machine) or 'dask' (the workers of a Dask cluster, see --scheduler; "
                          "needs pip install 'facealign-cli[dask]'). Outputs and the manifest "
                          "are written by this process either way."),
        click.option("--scheduler", metavar="ADDRESS", default=None,
                     help="Dask scheduler address for --backend dask, e.g. "
                          "tcp://10.0.0.5:8786. The workers need facealign and the same "
                          "--weights path; --jobs is then ignored."),
        click.option("--include", multiple=True, metavar="GLOB",
                     help="Only images whose relative path or file name matches (repeatable; "
                          "case-insensitive; '*' also matches '/')."),
        click.option("--exclude", multiple=True, metavar="GLOB",
                     help="Skip images whose relative path or file name matches (repeatable)."),
        click.option("--max-faces", type=click.IntRange(min=0), default=0,
                     help="Keep at most N faces per image, highest detector score first "
                          "[default: 0 = all]."),
        click.option("--weights", type=click.Path(exists=True, dir_okay=False), default=None,
                     metavar="PATH",
                     help="Regressor checkpoint [default: $FACEALIGN_WEIGHTS, else the "
                          "shipped weights]."),
        click.option("--runtime", type=click.Choice(RUNTIMES),
                     default=None,
                     help="Regressor runtime [default: $FACEALIGN_RUNTIME, else auto = ONNX "
                          "Runtime when the weights have an up-to-date .onnx export beside "
                          "them, else torch]."),
        click.option("--max-megapixels", type=click.FloatRange(min=0.01), default=None,
                     metavar="MP",
                     help="Largest image decoded at full size [default: 50]. Larger JPEGs are "
                          "decoded at 1/2, 1/4 or 1/8 size (coordinates are still reported in "
                          "full-size pixels); other larger images fail."),
        click.option("--overwrite", is_flag=True,
                     help="Redo images whose outputs exist (default: skip them)."),
        click.option("--quiet", "-q", is_flag=True,
                     help="Print only errors (no progress, no summary)."),
        click.option("--verbose", "-v", count=True,
                     help="One line per image; -vv adds tracebacks of failures."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


INPUT_HELP = """

INPUT is an image file, a folder (searched recursively for .jpg .jpeg .png .bmp .webp
.tif .tiff, any case; hidden files skipped), or '-' to read paths from stdin, one per line.
Outputs mirror each INPUT folder's structure under --out. Images are read with their EXIF
orientation applied; transparent areas become white. Coordinates are image pixels of the
upright photo, x right, y down, origin at the centre of the top-left pixel; 3D z is in pixels,
away from the camera, 0 at the mean depth of the 68 landmarks.
"""


def _with_input_help(f):
    """Append :data:`INPUT_HELP` to a command function's docstring (before click reads it)."""
    f.__doc__ = inspect.cleandoc(f.__doc__ or "") + INPUT_HELP
    return f


def _run(command: str, params: dict, **extra) -> None:
    """Shared body of the image commands: collect inputs, run the batch, exit with its code."""
    from facealign_cli.batch.engine import EXIT_SIGINT, BatchError, RunOptions, run_batch
    from facealign_cli.io.inputs import InputError, collect_inputs

    out = params["out"]
    if out == "-" and command == "mesh":
        raise click.UsageError("mesh writes files: give a folder to --out, not '-'",
                               ctx=click.get_current_context())
    if params["quiet"] and params["verbose"]:
        raise click.UsageError("--quiet and --verbose exclude each other")
    if params["backend"] == "dask" and not params["scheduler"]:
        raise click.UsageError("--backend dask needs --scheduler ADDRESS "
                               "(e.g. tcp://scheduler-host:8786)")
    if params["scheduler"] and params["backend"] != "dask":
        raise click.UsageError("--scheduler is used only with --backend dask")
    max_pixels = None
    if params["max_megapixels"] is not None:
        max_pixels = int(params["max_megapixels"] * 1e6)
    # Paths on stdin are decoded like command-line arguments (file-system encoding with
    # surrogateescape), so any file name the OS can list can be piped in.
    stdin = io.TextIOWrapper(sys.stdin.buffer,
                             encoding=sys.getfilesystemencoding(), errors="surrogateescape")
    try:
        items = collect_inputs(
            params["inputs"], include=params["include"], exclude=params["exclude"],
            stdin=stdin, skip_dirs=[] if out == "-" else [out], missing_ok=True)
    except InputError as exc:
        raise click.UsageError(str(exc)) from None
    stderr = sys.stderr
    if not items and not params["quiet"]:
        stderr.write("facealign: warning: no images found in the given inputs\n")
    jobs = params["jobs"] or os.cpu_count() or 1
    opts = RunOptions(command=command, out=out, jobs=jobs, threads=params["threads"],
                      max_faces=params["max_faces"], weights=params["weights"],
                      runtime=params["runtime"],
                      overwrite=params["overwrite"], max_pixels=max_pixels,
                      quiet=params["quiet"], verbose=params["verbose"],
                      backend=params["backend"], scheduler=params["scheduler"], **extra)
    try:
        summary = run_batch(items, opts, stdout=sys.stdout.buffer, stderr=stderr)
    except BatchError as exc:
        click.echo(f"facealign: error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("facealign: interrupted", err=True)
        sys.exit(EXIT_SIGINT)
    sys.exit(summary.exit_code)


@main.command(epilog=EXIT_CODES_HELP)
@_common_options
@_with_input_help
def detect(**params):
    """Find faces: one JSON per image with boxes, scores and 6 keypoints.

    Writes <out>/<relative path without extension>.json:
    {path, width, height, faces: [{box: [x1, y1, x2, y2], score, keypoints: 6 x [x, y]}]},
    keypoints in the order right eye, left eye, nose tip, mouth, right ear, left ear (the
    subject's right and left). Faces are sorted by descending score. Needs no regressor
    weights.
    """
    _run("detect", params)



@main.command(epilog=EXIT_CODES_HELP)
@_common_options
@_with_input_help
def landmarks(**params):
    """68 landmarks (2D and 3D) and head pose: one JSON per image.

    Writes <out>/<relative path without extension>.json: {path, width, height, faces: [{box,
    score, keypoints, roi_box, landmarks_2d: 68 x [x, y], landmarks_3d: 68 x [x, y, z],
    pose: {yaw, pitch, roll}}]} (iBUG 68-point order, pixels; angles in degrees).
    """
    _run("landmarks", params)



@main.command(epilog=EXIT_CODES_HELP)
@_common_options
@_with_input_help
def pose(**params):
    """Head pose: one CSV table for the whole run.

    Writes <out>/pose.csv with columns path, face, yaw, pitch, roll, x1, y1, x2, y2, score:
    one row per face (face = 0, 1, ... by descending score), angles in degrees (yaw > 0: the
    subject turns to their right; pitch > 0: looks up; roll > 0: head tilts clockwise in the
    image), box in pixels. Images without faces have no row (the manifest lists them). The
    table is rebuilt on every run from per-image records, so a resumed run yields the full table.
    """
    _run("pose", params)



@main.command(epilog=EXIT_CODES_HELP)
@_common_options
@click.option("--format", "mesh_format", type=click.Choice(["obj", "ply"], case_sensitive=False),
              default="obj", show_default=True, help="Mesh file format.")
@_with_input_help
def mesh(mesh_format, **params):
    """Dense 3D face meshes with colours: one file per face.

    Writes <out>/<relative path without extension>_face<k>.obj (or .ply), k = 0, 1, ... by
    descending detector score: the fitted face model's vertices in image pixels (x right,
    y down, z away from the camera), its triangles, and per-vertex colours sampled from the
    photo. --out must be a folder.
    """
    _run("mesh", params, mesh_format=mesh_format.lower())



if __name__ == "__main__":  # pragma: no cover
    main(prog_name=os.path.basename(sys.argv[0]) or "facealign")
