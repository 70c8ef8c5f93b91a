"""The ``facealign`` command line: a thin layer that parses and validates options, reads the
``FACEALIGN_*`` environment variables (here only: :func:`read_env`) and calls
:func:`facealign_cli.batch.runner.run_batch` with explicit values.

Import rule: ``facealign --help`` must be instant, so this module imports only ``click`` and the
standard library at module level. Everything heavy (numpy, OpenCV, torch, rich, joblib) is
imported inside the command callbacks. The same rule binds the lazily loaded command modules
listed in :data:`LAZY_COMMANDS` (``facealign_cli/cli/evaluate.py``, ``facealign_cli/cli/train.py``):
each defines one ``click.Command`` object (e.g. ``evaluate = click.command(...)(fn)``) and imports
heavy packages inside the callback; they are imported only when their command runs (or its own
``--help`` is shown), never for ``facealign --help``.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import os
import signal
import sys

import click

from facealign_cli import __version__
from facealign_cli.cli.crop_options import FiniteFloatRange, crop_options, device_option
from facealign_cli.cli.environment import (  # noqa: F401 - read_env etc. re-exported
    ENV_VARS,
    env_runtime,
    env_weights,
    read_env,
)
from facealign_cli.cli.lazy_group import LazyGroup
from facealign_cli.defaults import (
    DEFAULT_MIN_QUALITY,
    DEFAULT_MIN_SCORE,
    DEFAULT_POSE_CONVENTION,
    POSE_CONVENTIONS,
    POSE_FORMULAS,
)
from facealign_cli.figures import quality_help
from facealign_cli.models.weights import DEFAULT_WEIGHTS, RUNTIMES

EXIT_CODES_HELP = """\b
Exit codes:
  0    every image processed (or already done by an earlier run)
  1    some images failed (see <out>/manifest.jsonl and stderr)
  2    usage or setup error: bad option or FACEALIGN_* value, missing input
       path, no images found, --out in use by another run (lock file
       <out>/.facealign/lock), model files missing, --device not available,
       Dask missing or its scheduler unreachable (--backend dask); nothing
       (more) was processed
  3    the manifest or stdout could not be written (disk full, stdout
       closed): stopped cleanly; re-run the same command to resume
  130  interrupted by Ctrl-C / SIGINT (143: SIGTERM or SIGHUP): images in
       flight were finished and the manifest written; re-run to resume
  141  --out - and the reader of stdout went away (e.g. | head -1)
"""

MAIN_EPILOG = EXIT_CODES_HELP + """
\b
Examples:
  facealign mesh ./photos --out ./meshes --jobs 4
  facealign pose ./photos --out ./poses          # -> ./poses/pose.csv
  facealign render ./photos --out ./look --draw box,landmarks,pose,mesh --sheet
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
    "status": ("facealign_cli.cli.status",
               "Show an output folder's state: items by status, the last run, failures."),
    "render": ("facealign_cli.cli.render",
               "Draw the results over each photo (boxes, landmarks, pose, mesh, depth); "
               "--sheet: index.html."),
}


@click.group(cls=LazyGroup, lazy_commands=LAZY_COMMANDS, epilog=MAIN_EPILOG,
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
    from facealign_cli.batch.progress import one_line_warnings
    from facealign_cli.batch.streams import ensure_standard_streams

    # closed standard streams (cmd 2>&-) become the null device, for this process and its
    # workers; a closed stdout is remembered for --out - (exit 3, see _run)
    closed = ensure_standard_streams()
    click.get_current_context().meta[_STDOUT_CLOSED] = 1 in closed

    one_line_warnings()


#: ``click.Context.meta`` key: stdout was closed when the command started.
_STDOUT_CLOSED = "facealign.stdout_closed"


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
                     help="Threads per worker for the detector, the regressor, OpenCV and "
                          "numpy [default: 1; a second thread costs ~1.75x the CPU for a few "
                          "percent less wall time: use --jobs for throughput]."),
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
        click.option("--min-score", type=FiniteFloatRange(0.0, 1.0), default=DEFAULT_MIN_SCORE,
                     show_default=True, metavar="S",
                     help="Drop detections whose detector score is below S (the detector "
                          "runs with S as its threshold). Raising it (e.g. 0.7) drops more "
                          "false positives (hands, hair) but also some real faces; "
                          "--min-quality is the finer filter. Recorded with the run's settings in "
                          "<out>/.facealign/settings/<command>.json."),
        click.option("--min-quality", type=FiniteFloatRange(0.0, 1.0),
                     default=DEFAULT_MIN_QUALITY, show_default=True, metavar="Q",
                     help="Drop faces whose quality is below Q (0 keeps all). The quality "
                          "(written as 'quality') estimates the probability that a detection "
                          "is a real face, from its score and how well the regressor's "
                          "predictions on the crop and its mirror image agree. "
                          "Not used by detect (it does not regress); off with --no-flip "
                          "(there is no mirrored pass to compare with). " + quality_help()),
        click.option("--weights", default=None, metavar="NAME|PATH",
                     help="Regressor weights: the name of shipped weights (v1, v3, ...; "
                          "'default' = " + DEFAULT_WEIGHTS + "), or a checkpoint (.pth) or its "
                          "ONNX export (.onnx) [default: $FACEALIGN_WEIGHTS, else "
                          + DEFAULT_WEIGHTS + "]."),
        click.option("--runtime", type=click.Choice(RUNTIMES),
                     default=None,
                     help="Regressor runtime [default: $FACEALIGN_RUNTIME, else auto = ONNX "
                          "Runtime when the weights have an up-to-date .onnx export beside "
                          "them, else torch]."),
        device_option(),
        click.option("--flip/--no-flip", default=None,
                     help="Test-time flip averaging [default: on, in every preset]: the "
                          "regressor also sees each face mirrored and the landmarks, pose and "
                          "mesh average both (one more regressor evaluation per face). "
                          "--no-flip also switches the quality filter (--min-quality) off, "
                          "with a warning: the quality needs the mirrored pass."),
        *crop_options(),
        click.option("--max-megapixels", type=FiniteFloatRange(min=0.01, max=1e6),
                     default=None,
                     metavar="MP",
                     help="Largest image decoded at full size [default: 50]. Larger JPEGs are "
                          "decoded at 1/2, 1/4 or 1/8 size (coordinates are still reported in "
                          "full-size pixels); other larger images fail."),
        click.option("--overwrite", is_flag=True,
                     help="Redo images whose outputs exist (default: skip them)."),
        click.option("--verify-inputs", type=click.Choice(["stat", "hash"]), default="stat",
                     show_default=True,
                     help="How an image done by an earlier run is known unchanged: 'stat' "
                          "(same size and modification time) or 'hash' (same content: for "
                          "archives copied with new times). A changed image is redone."),
        click.option("--quiet", "-q", is_flag=True,
                     help="Print only errors (no progress, no summary)."),
        click.option("--verbose", "-v", count=True,
                     help="One line per image; -vv adds tracebacks of failures."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _video_options(f):
    """Options of the commands that take video files (detect, landmarks, pose, mesh,
    render)."""
    opts = [
        click.option("--frame-step", type=click.IntRange(min=1), default=1, show_default=True,
                     metavar="N", help="Videos: process every N-th frame (0, N, 2N, ...)."),
        click.option("--max-fps", type=FiniteFloatRange(min=0.0, min_open=True), default=None,
                     metavar="F", help="Videos: process at most F frames per second of video "
                                       "[default: all]."),
        click.option("--smooth", is_flag=True,
                     help="Videos: One-Euro smoothing of each face track's landmarks and pose "
                          "(off by default)."),
        click.option("--detect-every", type=click.IntRange(min=1), default=1,
                     show_default=True, metavar="K",
                     help="Videos: run the detector on every K-th processed frame, faces "
                          "carried by their landmarks in between (faster; not for detect)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _own_options(command: str):
    """The decorator that adds the flags a command owns
    (:meth:`~facealign_cli.batch.commands.base.Command.cli_options`)."""
    from facealign_cli.batch.commands import get_command

    def apply(f):
        for o in reversed(get_command(command).cli_options()):
            f = o(f)
        return f

    return apply


def _pose_options(f):
    """``--pose-convention``, of the commands whose outputs hold pose angles (landmarks,
    pose, render's contact sheet)."""
    yf, aflw = (POSE_FORMULAS[c] for c in POSE_CONVENTIONS)
    return click.option(
        "--pose-convention", type=click.Choice(POSE_CONVENTIONS), default=DEFAULT_POSE_CONVENTION,
        show_default=True,
        help=f"Convention of the yaw, pitch, roll angles written (degrees; yaw > 0: the "
             f"subject turns to their right, pitch > 0: looks up, roll > 0: tilts clockwise "
             f"in the image, in both). yaw-first: {yf}, singular only at pitch +-90, so a "
             f"profile reads as yaw near +-90 with its own pitch and roll. aflw2000: "
             f"AFLW2000-3D's {aflw} (what 'facealign evaluate' compares), singular at yaw "
             f"+-90: profiles can read pitch and roll near 90. Written in each output "
             f"(JSON 'pose_convention', pose.csv column pose_convention) and in "
             f"<out>/.facealign/settings/<command>.json; changing it redoes the images.")(f)


INPUT_HELP = """

INPUT is an image file, a folder (searched recursively for .jpg .jpeg .png .bmp .webp
.tif .tiff, any case; hidden files and other runs' --out folders skipped), or '-' to read
paths from stdin, one per line.
detect, landmarks, pose, mesh and render also take videos (.mp4 .avi .mov .mkv .webm),
one item each, frames tracked (see docs/batch.md); videos need a folder as --out.
Outputs mirror each INPUT folder's structure under --out (a name the run uses itself, like
manifest, pose.csv or index.html, gets a '_' appended). Images are read with their EXIF
orientation applied; transparent areas become white. Coordinates are image pixels of the
upright photo, x right, y down, origin at the centre of the top-left pixel; 3D z is in pixels,
away from the camera, 0 at the mean depth of the 68 landmarks.
"""


def _with_input_help(f):
    """Append :data:`INPUT_HELP` to a command function's docstring (before click reads it)."""
    f.__doc__ = inspect.cleandoc(f.__doc__ or "") + INPUT_HELP
    return f


def _say(msg: str) -> None:
    """One line on stderr; a closed or broken stderr is ignored."""
    try:
        sys.stderr.write(msg + "\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass


def _stdin_items(stdin, bad: list):
    """The stdin path list as a stream for :func:`collect_inputs`, without the paths that hold
    a NUL byte (no file can have such a name): those go to ``bad``."""
    from facealign_cli.io.inputs import read_path_list

    good = []
    for p in read_path_list(stdin):
        (bad if "\0" in p else good).append(p)
    return io.StringIO("".join(p + "\n" for p in good))


def _run(command: str, params: dict) -> None:
    """Shared body of the image commands: :func:`_run_batch` with the stop signals handled:
    one before the run has taken them over stops the command (exit 130 for SIGINT, 143 for
    SIGTERM / SIGHUP); the first one decides the exit status, however many follow."""
    from facealign_cli.batch.errors import signal_exit_code
    from facealign_cli.batch.stopping import SignalGuard

    guard = click.get_current_context().with_resource(SignalGuard())
    try:
        _run_batch(command, params)
    except KeyboardInterrupt:
        _say("facealign: interrupted")
        sys.exit(signal_exit_code(guard.first or signal.SIGINT))


def _run_batch(command: str, params: dict) -> None:
    """Make the run's options (checked by :meth:`RunOptions.validate
    <facealign_cli.batch.options.RunOptions.validate>`: an invalid one is a usage error), read
    the environment, collect inputs, run the batch, exit with its code."""
    ctx = click.get_current_context()
    env = read_env()
    with _usage_errors(ctx):
        opts = _run_options(command, params, env)
    items = _collect_items(command, params, ctx)
    sys.exit(_execute(items, opts, ctx))


@contextlib.contextmanager
def _usage_errors(ctx):
    """Turn an :class:`~facealign_cli.batch.errors.OptionError` raised in the block into a
    ``click.UsageError`` (exit 2, with the command's usage line)."""
    from facealign_cli.batch.errors import OptionError

    try:
        yield
    except OptionError as exc:
        raise click.UsageError(str(exc), ctx=ctx) from None


def _collect_items(command: str, params: dict, ctx) -> list:
    """The run's items from the INPUT arguments (and stdin's path list).

    Raises:
        click.UsageError: an input that cannot be used, nothing to do.
    """
    from facealign_cli.batch.layout import is_reserved_name
    from facealign_cli.batch.sources import VIDEO_COMMANDS
    from facealign_cli.io.inputs import InputError, InputItem, collect_inputs

    out = params["out"]
    # Paths on stdin are decoded like command-line arguments (file-system encoding with
    # surrogateescape), so any file name the OS can list can be piped in.
    stdin = None
    bad_paths: list[str] = []
    if "-" in params["inputs"]:
        if sys.stdin is None:
            raise click.UsageError("'-' reads paths from stdin, but stdin is closed", ctx=ctx)
        stdin = _stdin_items(io.TextIOWrapper(sys.stdin.buffer,
                                              encoding=sys.getfilesystemencoding(),
                                              errors="surrogateescape"), bad_paths)
    try:
        items = collect_inputs(
            params["inputs"], include=params["include"], exclude=params["exclude"],
            stdin=stdin, skip_dirs=[] if out == "-" else [out], missing_ok=True,
            videos=command in VIDEO_COMMANDS, reserved=is_reserved_name)
    except InputError as exc:
        raise click.UsageError(str(exc)) from None
    for p in bad_paths:  # recorded as failed (reading a NUL-byte path fails), after the others
        items.append(InputItem(len(items), p, p.replace("\0", "%00"),
                               f"invalid-path~{len(items)}"))
    if not any(not getattr(it, "skipped", False) for it in items):
        # nothing to do (entries that could not be taken still get a warning each)
        for it in items:
            _say(f"facealign: warning: skipped {it.path}: {it.skip_reason}")
        raise click.UsageError("no images found in the given inputs", ctx=ctx)
    return items


def _preset(kw: dict) -> dict:
    """Pop ``preset``, ``flip`` and ``second_pass`` from the command's parameters and return
    the test-time settings they give (:func:`facealign_cli.defaults.preset_fields`)."""
    from facealign_cli.defaults import preset_fields

    return preset_fields(kw.pop("preset", None), flip=kw.pop("flip", None),
                         second_pass=kw.pop("second_pass", None))


def _weights_file(spec: str | None) -> str | None:
    """``--weights`` / ``$FACEALIGN_WEIGHTS`` as a file path: a shipped name (``v1``) becomes
    its file (:func:`facealign_cli.models.weights.resolve_weights`); a path, or a name that is
    neither, is kept as given (a missing file is the setup error of the model's preflight)."""
    if spec is None:
        return None
    from facealign_cli.models.weights import resolve_weights

    try:
        return str(resolve_weights(spec))
    except FileNotFoundError:
        return spec


#: The parameters of the image commands that are not settings of the run (the inputs), or
#: that :func:`_run_options` turns into one (``--max-megapixels``: ``max_pixels``).
_NOT_SETTINGS = ("inputs", "include", "exclude", "max_megapixels")


def _run_options(command: str, params: dict, env: dict):
    """The :class:`~facealign_cli.batch.options.RunOptions` of the run: every parameter of the
    command (:meth:`RunOptions.make <facealign_cli.batch.options.RunOptions.make>` sorts them
    into their groups by name) with the environment's defaults (``--weights``, ``--runtime``,
    ``--max-megapixels``, the Dask timeout); ``--jobs`` and ``--threads`` capped to the CPU
    cores, with a warning.

    Raises:
        OptionError: an invalid option (:meth:`RunOptions.validate
            <facealign_cli.batch.options.RunOptions.validate>`).
    """
    from facealign_cli.batch import options as batch_options

    kw = {k: v for k, v in params.items() if k not in _NOT_SETTINGS}
    mp = params["max_megapixels"]
    kw["max_pixels"] = int(mp * 1e6) if mp is not None else env["max_pixels"]
    kw["weights"] = _weights_file(params["weights"] or env["weights"])
    kw["runtime"] = params["runtime"] or env["runtime"]
    if kw["roi_crop_scale"] is None:  # (the default is resolved by the settings)
        del kw["roi_crop_scale"]
    kw.update(_preset(kw))
    cores = os.cpu_count() or 1
    jobs = params["jobs"] or cores
    if jobs > cores and params["backend"] == "local":
        if not params["quiet"]:
            _say(f"facealign: warning: --jobs {jobs} is more than the {cores} CPU cores; "
                 f"using {cores}")
        jobs = cores
    threads = params["threads"]
    if threads > cores:
        if not params["quiet"]:
            _say(f"facealign: warning: --threads {threads} is more than the {cores} CPU "
                 f"cores; using {cores}")
        threads = cores
    kw.update(jobs=jobs, threads=threads)
    if env["dask_timeout"] is not None:
        kw["dask_timeout"] = env["dask_timeout"]
    return batch_options.RunOptions.make(command, kw.pop("out"), **kw)


def _execute(items: list, opts, ctx) -> int:
    """Run the batch; its exit code (a run-level error: printed, and its code)."""
    from facealign_cli.batch.errors import BatchError, ExitCode
    from facealign_cli.batch.runner import run_batch

    out = opts.out
    stdout = getattr(sys.stdout, "buffer", None)
    try:
        if out == "-" and ctx.meta.get(_STDOUT_CLOSED):
            from facealign_cli.batch.streams import stdout_closed_error

            raise stdout_closed_error()
        with _usage_errors(ctx):
            summary = run_batch(items, opts, stdout=stdout, stderr=sys.stderr)
    except BatchError as exc:
        if exc.exit_code != ExitCode.BROKEN_PIPE:  # | head -1: expected end
            _say(f"facealign: error: {exc}")
        return exc.exit_code
    return summary.exit_code


@main.command(epilog=EXIT_CODES_HELP)
@_common_options
@_video_options
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
@_pose_options
@_video_options
@_with_input_help
def landmarks(**params):
    """68 landmarks (2D and 3D) and head pose: one JSON per image.

    Writes <out>/<relative path without extension>.json: {path, width, height, faces: [{box,
    score, quality, keypoints, roi_box, landmarks_2d: 68 x [x, y], landmarks_3d: 68 x [x, y, z],
    pose: {yaw, pitch, roll}}]} (iBUG 68-point order, pixels; angles in degrees, in the
    document's pose_convention, see --pose-convention).
    """
    _run("landmarks", params)



@main.command(epilog=EXIT_CODES_HELP)
@_common_options
@_pose_options
@_video_options
@_with_input_help
def pose(**params):
    """Head pose: one CSV table for the whole run.

    Writes <out>/pose.csv with columns path, face, yaw, pitch, roll, x1, y1, x2, y2, score:
    one row per face (face = 0, 1, ... by descending score), angles in degrees (yaw > 0: the
    subject turns to their right; pitch > 0: looks up; roll > 0: head tilts clockwise in the
    image; see --pose-convention), box in pixels, then the rotation quaternion qw, qx, qy, qz,
    the video columns frame, time, track (empty for photos), quality (see --min-quality) and
    pose_convention (the angles' convention, the same in every row). Images without
    faces have no row (the manifest lists them). The table is rebuilt on every run from
    per-image records, so a resumed run yields the full table.
    """
    _run("pose", params)



@main.command(epilog=EXIT_CODES_HELP)
@_common_options
@_own_options("mesh")
@_video_options
@_with_input_help
def mesh(**params):
    """Dense 3D face meshes with colours: one file per face.

    Writes <out>/<relative path without extension>_face<k>.obj (or .ply, .glb), k = 0, 1, ...
    by descending detector score: the fitted face model's vertices (38,731; in pixels of the
    photo, by default in the viewer frame x, H - y, -z: upright and facing the viewer; see
    --mesh-frame), its triangles (normals out of the face), and per-vertex colours sampled
    from the photo, or with --texture a UV texture (OBJ + MTL + PNG). --out must be a folder.
    """
    _run("mesh", params)



if __name__ == "__main__":  # pragma: no cover
    main(prog_name=os.path.basename(sys.argv[0]) or "facealign")
