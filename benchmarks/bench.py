"""Speed and memory benchmark of facealign (issue 5): the regressor against the 3DDFA-V2
teacher, the detector, whole ``landmarks`` / ``mesh`` runs, mesh writing, start-up, peak RSS,
and video frames per second on a synthetic 720p clip (issue 14).

Usage (from the repository root)::

    python benchmarks/bench.py --shared ../shared [--weights W] [--json out.json]
                               [--repeats 3] [--quick] [--note TEXT] [--only SECTIONS]
                               [--video-minutes 0.25] [--video-detect-every 1,5]

It prints a table (figure, median value, target, pass/fail, ratio to the teacher) and writes
the full results as JSON (``--json``, default ``benchmarks/last_run.json``, not tracked). A
full run (not ``--quick``) appends a one-line summary to ``benchmarks/history.jsonl``
(git-tracked: the figures before and after each optimisation).

Every figure is measured ``--repeats`` times in the same invocation; the table shows the
median, and a target counts as met only when *every* repeat meets it. See
``benchmarks/README.md`` for what each figure means. This is not a test: nothing here fails
the build, and speed targets live here only.

Data: the AFW sample photos (``<shared>/data/photos/afw``) and, when present, the teacher
weights (``<shared>/teacher/mb05_120x120.pth``, user-supplied; its rows are left out without
them). Run it on an otherwise idle machine: the 1-minute load average is recorded with the
results and a warning is printed when the machine is busy.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as _dt
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

# As the CLI does (facealign_cli.cli.main): OpenMP threads sleep instead of spinning when idle.
# Without it, torch's idle threads spin on the cores while the next runtime (ONNX Runtime,
# the other model) is timed in this same process.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from stages import bench_cli_cpu, bench_stages, stage_figures, stage_rows  # noqa: E402

HISTORY = REPO / "benchmarks" / "history.jsonl"
DEFAULT_JSON = REPO / "benchmarks" / "last_run.json"

#: Sections (``--only``), in the order they run.
SECTIONS = ("regressor", "detector", "mesh_write", "render", "cli", "video", "stages",
            "cli_cpu")

#: Targets on the reference machine (2 cores): figure key -> (comparison, value, unit).
TARGETS = {
    "regressor.ratio.b1.t1": ("<=", 0.5, "x teacher"),
    "regressor.ratio.b32.t1": ("<=", 0.5, "x teacher"),
    "regressor.ratio.b1.t2": ("<=", 0.5, "x teacher"),
    "regressor.ratio.b32.t2": ("<=", 0.5, "x teacher"),
    "cli.landmarks.j2.photos_per_s": (">=", 25.0, "photos/s"),
    "cli.mesh.j2.faces_per_s": (">=", 10.0, "faces/s"),
    "mesh_write.obj_ms": ("<=", 20.0, "ms"),
    "render.mesh_cpu_ms_per_face": ("<=", 50.0, "ms"),
    "mesh.vertices": (">=", 30000, "vertices"),
    "startup.help_s": ("<=", 0.3, "s"),
    "startup.first_result_s": ("<=", 2.0, "s"),
    "rss.peak_j2_mb": ("<=", 1536.0, "MB"),
}


# ------------------------------------------------------------------------------------------
# Small helpers
# ------------------------------------------------------------------------------------------


def _loadavg() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _cpu_snapshot() -> tuple[float, float] | None:
    """(busy CPU seconds of the whole machine, CPU seconds of this process and its waited-for
    children): the difference of two snapshots tells how much *other* work ran meanwhile."""
    import resource

    try:
        f = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        j = [int(x) for x in f]
    except (OSError, ValueError, IndexError):
        return None
    busy = (sum(j[:8]) - j[3] - j[4]) / os.sysconf("SC_CLK_TCK")
    own = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        own += r.ru_utime + r.ru_stime
    return busy, own


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _timeit(fn, *, min_time: float, warmup: int = 2) -> float:
    """Seconds per call of ``fn()``: ``warmup`` untimed calls, then a loop of at least
    ``min_time`` seconds (at least 3 calls)."""
    for _ in range(warmup):
        fn()
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        el = time.perf_counter() - t0
        if el >= min_time and n >= 3:
            return el / n


def _med(values):
    return statistics.median(values) if values else None


class _TreeRSS:
    """Polls the resident memory of a process and all its descendants (Linux ``/proc``, or
    psutil when installed) in a background thread; keeps the peak of the tree's sum and of
    the largest single process."""

    def __init__(self, pid: int, interval: float = 0.025, record: bool = False):
        self.pid, self.interval = pid, interval
        self.peak_sum = 0
        self.peak_single = 0
        #: with ``record``: (seconds since the start of polling, tree RSS in bytes) per sample
        self.samples: list[tuple[float, int]] | None = [] if record else None
        self._t0 = time.perf_counter()
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        try:
            import psutil  # noqa: F401

            self._psutil = True
        except ImportError:
            self._psutil = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _children(self, pid: int) -> list[int]:
        out: list[int] = []
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError):
                    out += [int(x) for x in
                            Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
        return out

    def _sample(self) -> None:
        rss = []
        if self._psutil:
            import psutil

            try:
                p = psutil.Process(self.pid)
                procs = [p] + p.children(recursive=True)
            except psutil.Error:
                return
            for q in procs:
                with contextlib.suppress(psutil.Error):
                    rss.append(q.memory_info().rss)
        else:
            todo, seen = [self.pid], set()
            while todo:
                pid = todo.pop()
                if pid in seen:
                    continue
                seen.add(pid)
                try:
                    rss.append(int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * self._page)
                except (OSError, ValueError, IndexError):
                    continue
                todo += self._children(pid)
        if rss:
            self.peak_sum = max(self.peak_sum, sum(rss))
            self.peak_single = max(self.peak_single, max(rss))
            if self.samples is not None:
                self.samples.append((time.perf_counter() - self._t0, sum(rss)))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self):
        self._t0 = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _facealign_cmd() -> list[str]:
    exe = shutil.which("facealign")
    if exe:
        return [exe]
    return [sys.executable, "-m", "facealign_cli.cli.main"]


def _run_cli(args: list[str], *, env: dict, wait_for: Path | None = None,
             poll_rss: bool = True, rss_at: tuple[float, ...] = ()) -> dict:
    """Run ``facealign ARGS`` and measure it: wall seconds, exit code, peak RSS of the process
    tree, (``wait_for``) the seconds until that file first exists, and (``rss_at``, fractions
    of the run's wall time) the tree's RSS sampled at those points of the run."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(_facealign_cmd() + args, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    first = None
    rss = (_TreeRSS(proc.pid, record=bool(rss_at)) if poll_rss
           else contextlib.nullcontext())
    with rss:
        if wait_for is not None:
            while proc.poll() is None:
                if wait_for.exists():
                    first = time.perf_counter() - t0
                    break
                time.sleep(0.002)
        _, err = proc.communicate()
    wall = time.perf_counter() - t0
    if first is None and wait_for is not None and wait_for.exists():
        first = wall
    res = {"wall_s": wall, "rc": proc.returncode, "first_result_s": first,
           "stderr": err.decode(errors="replace")[-2000:]}
    if poll_rss:
        res["peak_rss_tree_mb"] = rss.peak_sum / 2**20
        res["peak_rss_single_mb"] = rss.peak_single / 2**20
        if rss_at:
            res["rss_at_mb"] = _rss_at(rss.samples or [], rss_at)
    return res


def _rss_at(samples: list[tuple[float, int]], fractions: tuple[float, ...]
            ) -> dict[str, float | None]:
    """``{"10": MB, ...}``: the tree RSS of the sample nearest each fraction of the polled
    span (first to last sample)."""
    if not samples:
        return {f"{round(100 * f)}": None for f in fractions}
    t_end = samples[-1][0]
    out: dict[str, float | None] = {}
    for f in fractions:
        t = f * t_end
        _, b = min(samples, key=lambda s, t=t: abs(s[0] - t))
        out[f"{round(100 * f)}"] = b / 2**20
    return out


# ------------------------------------------------------------------------------------------
# Regressor runtimes
# ------------------------------------------------------------------------------------------


class _TorchRunner:
    """crops (B, S, S, 3) uint8 BGR -> (B, 62) parameters with a torch module, in a given
    memory format (optionally with batch norms folded into the convolutions)."""

    def __init__(self, net, mean, std, *, channels_last: bool, fold_bn: bool = False):
        import torch

        self.torch = torch
        net = copy.deepcopy(net).eval().to(memory_format=torch.contiguous_format)
        if fold_bn:
            from torch.fx.experimental.optimization import fuse

            net = fuse(net)
        self.fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.net = net.to(memory_format=self.fmt)
        self.mean, self.std = mean, std

    def __call__(self, crops):
        torch = self.torch
        with torch.inference_mode():
            x = torch.from_numpy(crops).permute(0, 3, 1, 2).float()
            x = ((x - 127.5) / 128.0).contiguous(memory_format=self.fmt)
            return self.net(x).numpy() * self.std + self.mean


class _OrtRunner:
    """The same network exported to ONNX (uint8 NHWC crops in, normalisation inside the
    graph) and run with ONNX Runtime's CPU provider."""

    def __init__(self, net, mean, std, *, threads: int, model_bytes: bytes | None = None):
        import onnxruntime as ort

        self.model_bytes = model_bytes or _export_onnx(net)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.sess = ort.InferenceSession(self.model_bytes, so, providers=["CPUExecutionProvider"])
        self.mean, self.std = mean, std

    def __call__(self, crops):
        return self.sess.run(None, {"crops": crops})[0] * self.std + self.mean


def _export_onnx(net) -> bytes:
    """ONNX bytes of ``net`` behind a wrapper taking (B, S, S, 3) uint8 BGR crops."""
    import torch

    class _Wrap(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, crops):
            x = (crops.permute(0, 3, 1, 2).float() - 127.5) / 128.0
            return self.inner(x)

    w = _Wrap(copy.deepcopy(net).eval().to(memory_format=torch.contiguous_format)).eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(w, (torch.zeros(1, 120, 120, 3, dtype=torch.uint8),), buf,
                          input_names=["crops"], output_names=["y"],
                          dynamic_axes={"crops": {0: "batch"}, "y": {0: "batch"}},
                          opset_version=17, dynamo=False)
    return buf.getvalue()


def _real_crops(photos: list[Path], n: int):
    """At least ``n`` real 120x120 face crops (detector boxes, the pipeline's roi rule)."""
    import numpy as np

    from facealign_cli.core import geometry as G
    from facealign_cli.core.pipeline import FaceAligner
    from facealign_cli.io.images import load_image

    class _NoRegressor:
        input_size = 120

    aligner = FaceAligner(regressor=_NoRegressor(), num_threads=1)
    crops = []
    for p in photos:
        img = load_image(p)
        for f in aligner.detect(img):
            box = f.full_box
            crops.append(G.crop_roi(img, G.roi_box_from_detector_box(np.asarray(box)), 120))
        if len(crops) >= n:
            break
    if not crops:
        raise SystemExit("no face found in the sample photos")
    while len(crops) < n:
        crops += crops
    return np.ascontiguousarray(np.stack(crops[:n]))


def _shipped_regressor(weights: Path, threads: int):
    """The regressor object the CLI builds for a run (``batch.worker.build_aligner``)."""
    from facealign_cli.batch.options import RunOptions
    from facealign_cli.batch.worker import build_aligner

    opts = RunOptions.make("landmarks", "-", jobs=1, threads=threads, weights=str(weights))
    return build_aligner(opts, threads).regressor


def bench_regressors(weights: Path, teacher: Path | None, photos: list[Path], repeats: int,
                     min_time: float, log) -> dict:
    """ms per face of ours and the teacher, every runtime, batch 1 and 32, 1 and 2 threads."""
    import numpy as np
    import torch

    from facealign_cli.models.regressor import Regressor

    crops = _real_crops(photos, 32)
    models = {}
    ours = Regressor(weights)
    models["ours"] = (ours.net, ours.param_mean, ours.param_std)
    if teacher is not None:
        from facealign_cli.models.baseline_3ddfa import Baseline3DDFA

        t = Baseline3DDFA(teacher)
        models["teacher"] = (t.net, t.mean, t.std)
    try:
        import onnxruntime  # noqa: F401

        have_ort = True
    except ImportError:
        have_ort = False
        log("onnxruntime not installed: ONNX Runtime rows left out "
            "(pip install onnxruntime onnx)")

    runtimes = ["torch-contiguous", "torch-channels-last", "torch-bnfold"]
    onnx_bytes = {}
    if have_ort:
        try:
            for name, (net, _, _) in models.items():
                onnx_bytes[name] = _export_onnx(net)
            runtimes.append("onnxruntime")
        except Exception as exc:  # noqa: BLE001 - e.g. the exporter needs the onnx package
            log(f"ONNX export failed ({type(exc).__name__}: {exc}); ONNX Runtime rows left out")

    out: dict = {"models": list(models), "runtimes": runtimes, "ms_per_face": {},
                 "max_abs_diff": {}}
    # ONNX Runtime sessions (the CLI's and both models' exports) are timed before any torch
    # run of the same thread count: idle torch threads left from a torch run slow down the
    # next runtime timed in this process, and that must favour neither model.
    phases = [["shipped"] + [r for r in runtimes if r == "onnxruntime"],
              [r for r in runtimes if r != "onnxruntime"]]
    for threads in (1, 2):
        torch.set_num_threads(threads)
        refs: dict = {}
        for phase in phases:
            for name, (net, mean, std) in models.items():
                for rt in phase:
                    if rt == "shipped" and name != "ours":
                        continue
                    if rt == "shipped":  # exactly what the CLI runs
                        shipped = _shipped_regressor(weights, threads)
                        out["shipped_runtime"] = getattr(shipped, "runtime", "torch")
                        run = shipped.predict
                    elif rt == "onnxruntime":
                        run = _OrtRunner(net, mean, std, threads=threads,
                                         model_bytes=onnx_bytes[name])
                    else:
                        run = _TorchRunner(net, mean, std,
                                           channels_last=rt == "torch-channels-last",
                                           fold_bn=rt == "torch-bnfold")
                    y = run(crops[:4])
                    ref = refs.setdefault(name, y)
                    out["max_abs_diff"][f"{name}.{rt}"] = float(np.abs(y - ref).max())
                    for b in (1, 32):
                        x = np.ascontiguousarray(crops[:b])
                        vals = [1000.0 * _timeit(lambda run=run, x=x: run(x), min_time=min_time) / b
                                for _ in range(repeats)]
                        out["ms_per_face"][f"{name}.{rt}.b{b}.t{threads}"] = vals
                        log(f"  {name:8s} {rt:20s} batch {b:2d} threads {threads}: "
                            f"{_med(vals):.3f} ms/face")
    return out


# ------------------------------------------------------------------------------------------
# Detector, mesh writing
# ------------------------------------------------------------------------------------------


def bench_detector(photos: list[Path], repeats: int, log) -> dict:
    """Mean ms per photo of the default detector (decoding excluded), 1 and 2 threads: wall
    clock and CPU time of this process (``time.process_time``; on a busy machine the CPU time is
    the figure to compare)."""
    from facealign_cli.io.images import load_image
    from facealign_cli.models.detector import BlazeFaceDetector

    images = [load_image(p) for p in photos]
    out = {"photos": len(images)}
    for threads in (1, 2):
        import cv2

        cv2.setNumThreads(threads)
        det = BlazeFaceDetector(num_threads=threads)
        det.detect(images[0])
        vals, cpu = [], []
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            for im in images:
                det.detect(im)
            vals.append(1000.0 * (time.perf_counter() - t0) / len(images))
            cpu.append(1000.0 * (time.process_time() - c0) / len(images))
        out[f"ms_per_photo.t{threads}"] = vals
        out[f"cpu_ms_per_photo.t{threads}"] = cpu
        log(f"  detector threads {threads}: {_med(vals):.1f} ms/photo "
            f"({_med(cpu):.1f} ms CPU)")
    return out


def bench_mesh_write(weights: Path, photos: list[Path], repeats: int, min_time: float,
                     log) -> dict:
    """ms per :func:`facealign_cli.io.meshes.write_mesh` call on a real face (OBJ and PLY)."""

    from facealign_cli.core.pipeline import FaceAligner
    from facealign_cli.io.images import load_image
    from facealign_cli.io.meshes import write_mesh
    from facealign_cli.models.regressor import Regressor
    from facealign_cli.render.texture import sample_vertex_colors

    aligner = FaceAligner(regressor=Regressor(weights, num_threads=1), num_threads=1)
    face = img = None
    for p in photos:
        img = load_image(p)
        faces = aligner(img, dense=True)
        if faces:
            face = faces[0]
            break
    if face is None:
        raise SystemExit("no face found for the mesh-write benchmark")
    tris = aligner.topology.triangles
    cols = sample_vertex_colors(img, face.vertices)
    out = {"vertices": int(len(face.vertices)), "triangles": int(len(tris))}
    with tempfile.TemporaryDirectory(prefix="facealign-bench-") as tmp:
        for fmt in ("obj", "ply"):
            # as a mesh run does: every call writes a new file (the folder is emptied between
            # repeats, outside the timing); replacing one existing file is timed as well, for
            # information (the file system then also frees the old file's pages)
            counter = iter(range(10**9))
            vals, vals_replace = [], []
            for _ in range(repeats):
                sub = Path(tmp) / "new"
                sub.mkdir()
                vals.append(1000.0 * _timeit(
                    lambda sub=sub, counter=counter, fmt=fmt: write_mesh(
                        sub / f"face{next(counter)}.{fmt}", face.vertices, tris, cols, fmt,
                        image_height=img.shape[0]),
                    min_time=min_time))
                shutil.rmtree(sub)
                path = Path(tmp) / f"face.{fmt}"
                vals_replace.append(1000.0 * _timeit(
                    lambda path=path, fmt=fmt: write_mesh(path, face.vertices, tris, cols, fmt,
                                                          image_height=img.shape[0]),
                    min_time=min_time))
            out[f"{fmt}_ms"] = vals
            out[f"{fmt}_replace_ms"] = vals_replace
            out[f"{fmt}_bytes"] = path.stat().st_size
            log(f"  write_mesh {fmt}: {_med(vals):.1f} ms new file, {_med(vals_replace):.1f} ms "
                f"replacing a file ({path.stat().st_size / 1e6:.1f} MB, "
                f"{len(face.vertices)} vertices)")
    return out


def bench_render(weights: Path, photos: list[Path], repeats: int, log, n_photos: int = 20
                 ) -> dict:
    """ms per face of ``facealign render``'s mesh layer (:func:`facealign_cli.render.draw_faces`
    with ``["mesh"]``: shading, the z-buffered rasteriser, the blend) at 1024 px, one thread
    (the same measurement as ``benchmarks/render_bench.py``, which pins a core and splits the
    time); wall clock and CPU time of this process, over the first ``n_photos`` photos with a
    face. Faces are fitted once, outside the timing."""
    import cv2

    from facealign_cli.core.pipeline import FaceAligner
    from facealign_cli.io.images import load_image
    from facealign_cli.models.regressor import Regressor
    from facealign_cli.render import draw_faces

    cv2.setNumThreads(1)
    aligner = FaceAligner(regressor=Regressor(weights, num_threads=1), num_threads=1)
    tris = aligner.topology.triangles
    scenes = []
    for p in photos:
        img = load_image(p)
        k = 1024 / max(img.shape[:2])
        if k != 1:
            img = cv2.resize(img, (round(img.shape[1] * k), round(img.shape[0] * k)),
                             interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR)
        faces = aligner(img, dense=True)
        if faces:
            scenes.append((img, faces))
        if len(scenes) >= n_photos:
            break
    n_faces = sum(len(f) for _, f in scenes)
    draw_faces(scenes[0][0], scenes[0][1], ["mesh"], triangles=tris)  # warm-up
    wall, cpu, default = [], [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        for img, faces in scenes:
            draw_faces(img, faces, ["mesh"], triangles=tris)
        wall.append(1000.0 * (time.perf_counter() - t0) / n_faces)
        cpu.append(1000.0 * (time.process_time() - c0) / n_faces)
        t0 = time.perf_counter()
        for img, faces in scenes:
            draw_faces(img, faces, ["box", "landmarks", "pose"])
        default.append(1000.0 * (time.perf_counter() - t0) / n_faces)
    log(f"  render mesh layer: {_med(wall):.1f} ms/face wall, {_med(cpu):.1f} ms/face CPU; "
        f"default layers {_med(default):.2f} ms/face ({len(scenes)} photos at 1024 px, "
        f"{n_faces} faces)")
    return {"photos": len(scenes), "faces": n_faces, "mesh_ms_per_face": wall,
            "mesh_cpu_ms_per_face": cpu, "default_ms_per_face": default}


# ------------------------------------------------------------------------------------------
# Whole CLI runs
# ------------------------------------------------------------------------------------------


def _manifest_counts(out: Path) -> tuple[int, int, int]:
    ok = faces = failed = 0
    with open(out / "manifest.jsonl", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            if rec["status"] == "ok":
                ok += 1
                faces += rec.get("n_faces") or 0
            elif rec["status"] == "failed":
                failed += 1
    return ok, faces, failed


def _count_obj_vertices(path: Path) -> tuple[int, bool]:
    n, coloured = 0, False
    with open(path, "rb") as f:
        for line in f:
            if line.startswith(b"v "):
                if n == 0:
                    coloured = len(line.split()) == 7
                n += 1
    return n, coloured


def bench_cli(photo_dir: Path, weights: Path, repeats: int, log) -> dict:
    """Whole ``landmarks`` and ``mesh`` runs at --jobs 1 and 2, ``--help`` and a one-photo
    run's time to first result."""
    env = dict(os.environ)
    env.pop("FACEALIGN_WEIGHTS", None)
    wargs = ["--weights", str(weights)]
    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="facealign-bench-") as tmp:
        tmp = Path(tmp)
        # start-up
        help_vals = []
        for _ in range(repeats):
            runs = [_run_cli(["--help"], env=env, poll_rss=False)["wall_s"] for _ in range(5)]
            help_vals.append(_med(runs))
        out["help_s"] = help_vals
        log(f"  facealign --help: {_med(help_vals):.3f} s")
        one = sorted(photo_dir.glob("*.jpg"))[0]
        first, total = [], []
        for _ in range(repeats):
            o = tmp / "one"
            r = _run_cli(["landmarks", str(one), "--out", str(o), "--overwrite", "--quiet"]
                         + wargs, env=env, wait_for=o / (one.stem + ".json"), poll_rss=False)
            if r["rc"] != 0:
                raise SystemExit(f"facealign failed: {r['stderr']}")
            first.append(r["first_result_s"])
            total.append(r["wall_s"])
            shutil.rmtree(o)
        out["first_result_s"] = first
        out["one_photo_wall_s"] = total
        log(f"  one-photo landmarks: first result {_med(first):.2f} s, "
            f"process {_med(total):.2f} s")
        # whole runs
        for command in ("landmarks", "mesh"):
            for jobs in (1, 2):
                key = f"{command}.j{jobs}"
                rec = {"wall_s": [], "photos_per_s": [], "faces_per_s": [],
                       "peak_rss_tree_mb": [], "peak_rss_single_mb": []}
                for _ in range(repeats):
                    o = tmp / key
                    r = _run_cli([command, str(photo_dir), "--out", str(o), "--jobs", str(jobs),
                                  "--overwrite", "--quiet"] + wargs, env=env)
                    if r["rc"] != 0:
                        raise SystemExit(f"facealign {command} failed ({r['rc']}): {r['stderr']}")
                    ok, faces, failed = _manifest_counts(o)
                    rec["wall_s"].append(r["wall_s"])
                    rec["photos_per_s"].append(ok / r["wall_s"])
                    rec["faces_per_s"].append(faces / r["wall_s"])
                    rec["peak_rss_tree_mb"].append(r["peak_rss_tree_mb"])
                    rec["peak_rss_single_mb"].append(r["peak_rss_single_mb"])
                    rec.update(photos=ok, faces=faces, failed=failed)
                    if command == "mesh" and "mesh_vertices" not in out:
                        first_obj = next(iter(sorted(o.glob("*_face0.obj"))), None)
                        if first_obj is not None:
                            out["mesh_vertices"], out["mesh_coloured"] = \
                                _count_obj_vertices(first_obj)
                    shutil.rmtree(o)
                out[key] = rec
                log(f"  {command} --jobs {jobs}: {_med(rec['photos_per_s']):.1f} photos/s, "
                    f"{_med(rec['faces_per_s']):.1f} faces/s ({rec['photos']} photos, "
                    f"{rec['faces']} faces, {_med(rec['wall_s']):.1f} s), peak RSS "
                    f"{_med(rec['peak_rss_tree_mb']):.0f} MB")
    return out


# ------------------------------------------------------------------------------------------
# Video: a synthetic 720p clip through the real CLI
# ------------------------------------------------------------------------------------------

#: AFW photos with several faces (the first one found is used for the clip)
VIDEO_PHOTOS = ("2086996835.jpg", "406798473.jpg")
VIDEO_SIZE = (1280, 720)
VIDEO_FPS = 30.0
#: points of a run (fractions of its wall time) where the process tree's RSS is reported
VIDEO_RSS_AT = (0.1, 0.5, 0.9)


def make_video_clip(photo: Path, path: Path, n_frames: int, *, size=VIDEO_SIZE,
                    fps: float = VIDEO_FPS) -> Path:
    """Write an MJPG ``.avi`` of ``n_frames`` frames of ``size`` (width, height) made from
    ``photo``: a 16:9 window that pans along an ellipse and zooms in and out (periods of 8 and
    5 seconds), so consecutive frames differ as in a hand-held shot rather than a still."""
    import math

    import cv2
    import numpy as np

    from facealign_cli.io.images import load_image

    img = load_image(photo)
    h, w = img.shape[:2]
    out_w, out_h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (out_w, out_h))
    if not writer.isOpened():
        raise SystemExit(f"cv2.VideoWriter cannot write MJPG to {path}")
    try:
        full_w = min(w, h * out_w / out_h)  # widest 16:9 window inside the photo
        for i in range(n_frames):
            t = i / fps
            win_w = full_w * (0.8 + 0.15 * math.sin(2 * math.pi * t / 5.0))
            win_h = win_w * out_h / out_w
            cx = w / 2 + 0.5 * (w - win_w) * math.sin(2 * math.pi * t / 8.0)
            cy = h / 2 + 0.5 * (h - win_h) * math.cos(2 * math.pi * t / 8.0)
            k = out_w / win_w
            m = np.array([[k, 0.0, out_w / 2 - k * cx], [0.0, k, out_h / 2 - k * cy]])
            writer.write(cv2.warpAffine(img, m, (out_w, out_h), flags=cv2.INTER_LINEAR,
                                        borderMode=cv2.BORDER_REFLECT101))
    finally:
        writer.release()
    return path


def _faces_per_frame(jsonl: Path) -> float | None:
    """Mean faces per processed frame of a video's ``<key>.jsonl`` (a clip whose faces are
    lost would run faster and mean nothing)."""
    n = faces = 0
    with contextlib.suppress(OSError), open(jsonl, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                n += 1
                faces += len(json.loads(line).get("faces") or [])
    return faces / n if n else None


def _video_manifest(out: Path) -> dict:
    with open(out / "manifest.jsonl", encoding="utf-8") as f:
        recs = [json.loads(line) for line in f if line.strip()]
    if len(recs) != 1 or recs[0]["status"] != "ok":
        raise SystemExit(f"facealign video run: unexpected manifest {recs}")
    return recs[0]


def bench_video(photo_dir: Path, weights: Path, repeats: int, log, *, minutes: float,
                detect_every: list[int]) -> dict:
    """``facealign landmarks clip.avi --out TMP -q`` on a synthetic 1280x720 MJPG clip of
    ``minutes`` minutes at 30 fps (:func:`make_video_clip`), once per ``--detect-every`` value
    (1 = the detector on every frame): frames per second of the whole process (frames / wall
    seconds) and of the manifest (``video.frames / seconds``), peak RSS of the process tree,
    and its RSS at 10/50/90 % of the run (memory must stay flat however long the video)."""
    photo = next((photo_dir / n for n in VIDEO_PHOTOS if (photo_dir / n).is_file()), None)
    if photo is None:
        raise SystemExit(f"none of {VIDEO_PHOTOS} in {photo_dir}")
    n_frames = max(1, round(minutes * 60 * VIDEO_FPS))
    env = dict(os.environ)
    env.pop("FACEALIGN_WEIGHTS", None)
    out: dict = {"photo": photo.name, "width": VIDEO_SIZE[0], "height": VIDEO_SIZE[1],
                 "fps": VIDEO_FPS, "frames": n_frames, "minutes": minutes}
    with tempfile.TemporaryDirectory(prefix="facealign-bench-video-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        clip = make_video_clip(photo, tmp / "clip.avi", n_frames)
        out["clip_mb"] = clip.stat().st_size / 1e6
        out["clip_build_s"] = time.perf_counter() - t0
        log(f"  clip: {n_frames} frames {VIDEO_SIZE[0]}x{VIDEO_SIZE[1]} MJPG from {photo.name} "
            f"({out['clip_mb']:.0f} MB, built in {out['clip_build_s']:.0f} s)")
        for k in detect_every:
            key = f"d{k}"
            rec: dict = {"wall_s": [], "seconds": [], "fps_wall": [], "fps_manifest": [],
                         "peak_rss_tree_mb": [], "rss_at_mb": []}
            for _ in range(repeats):
                o = tmp / "out"
                args = ["landmarks", str(clip), "--out", str(o), "-q", "--weights", str(weights)]
                if k != 1:
                    args += ["--detect-every", str(k)]
                r = _run_cli(args, env=env, rss_at=VIDEO_RSS_AT)
                if r["rc"] != 0:
                    raise SystemExit(f"facealign landmarks (video) failed ({r['rc']}): "
                                     f"{r['stderr']}")
                m = _video_manifest(o)
                frames = m["video"]["frames"]
                rec["wall_s"].append(r["wall_s"])
                rec["seconds"].append(m["seconds"])
                rec["fps_wall"].append(frames / r["wall_s"])
                rec["fps_manifest"].append(frames / m["seconds"])
                rec["peak_rss_tree_mb"].append(r["peak_rss_tree_mb"])
                rec["rss_at_mb"].append(r["rss_at_mb"])
                rec.update(frames=frames, frames_failed=m["video"]["frames_failed"],
                           tracks=m["n_faces"], faces_per_frame=_faces_per_frame(
                               o / f"{clip.stem}.jsonl"))
                shutil.rmtree(o)
            out[key] = rec
            at = rec["rss_at_mb"][len(rec["rss_at_mb"]) // 2]
            log(f"  landmarks video, --detect-every {k}: {_med(rec['fps_wall']):.1f} frames/s "
                f"(process), {_med(rec['fps_manifest']):.1f} frames/s (manifest); "
                f"{rec['frames']} frames, {rec['faces_per_frame'] or 0:.1f} faces/frame, "
                f"{rec['tracks']} tracks, "
                f"{_med(rec['wall_s']):.1f} s; peak RSS {_med(rec['peak_rss_tree_mb']):.0f} MB, "
                "RSS at " + ", ".join(f"{p} %: {v:.0f} MB" for p, v in at.items()
                                      if v is not None))
    return out


# ------------------------------------------------------------------------------------------
# Figures, table, history
# ------------------------------------------------------------------------------------------


def figures(res: dict) -> dict[str, list[float]]:
    """Flat ``{figure key: [value per repeat]}`` from the raw results (ratios included)."""
    figs: dict[str, list[float]] = {}
    reg = res.get("regressor")
    if reg:
        mpf = reg["ms_per_face"]
        for k, v in mpf.items():
            figs[f"regressor.{k}"] = v
        for t in (1, 2):
            for b in (1, 32):
                ours = {rt: mpf[f"ours.{rt}.b{b}.t{t}"] for rt in reg["runtimes"]}
                best_rt = min(ours, key=lambda rt: _med(ours[rt]))
                shipped = mpf[f"ours.shipped.b{b}.t{t}"]
                figs[f"regressor.ours_shipped.b{b}.t{t}"] = shipped
                figs[f"regressor.ours_best.b{b}.t{t}"] = ours[best_rt]
                res.setdefault("best_runtime", {})[f"ours.b{b}.t{t}"] = best_rt
                if "teacher" in reg["models"]:
                    teach = {rt: mpf[f"teacher.{rt}.b{b}.t{t}"] for rt in reg["runtimes"]}
                    t_rt = min(teach, key=lambda rt: _med(teach[rt]))
                    res["best_runtime"][f"teacher.b{b}.t{t}"] = t_rt
                    figs[f"regressor.teacher_best.b{b}.t{t}"] = teach[t_rt]
                    # per repeat: what the CLI runs (Regressor.predict) over the teacher's
                    # fastest runtime; and ours' fastest runtime over the teacher's fastest
                    figs[f"regressor.ratio.b{b}.t{t}"] = [
                        o / tt for o, tt in zip(shipped, teach[t_rt])]
                    figs[f"regressor.ratio_best.b{b}.t{t}"] = [
                        o / tt for o, tt in zip(ours[best_rt], teach[t_rt])]
    det = res.get("detector")
    if det:
        for t in (1, 2):
            figs[f"detector.ms_per_photo.t{t}"] = det[f"ms_per_photo.t{t}"]
            if f"cpu_ms_per_photo.t{t}" in det:
                figs[f"detector.cpu_ms_per_photo.t{t}"] = det[f"cpu_ms_per_photo.t{t}"]
    mw = res.get("mesh_write")
    if mw:
        figs["mesh_write.obj_ms"] = mw["obj_ms"]
        figs["mesh_write.ply_ms"] = mw["ply_ms"]
        figs["mesh_write.obj_replace_ms"] = mw["obj_replace_ms"]
    rd = res.get("render")
    if rd:
        figs["render.mesh_ms_per_face"] = rd["mesh_ms_per_face"]
        figs["render.mesh_cpu_ms_per_face"] = rd["mesh_cpu_ms_per_face"]
        figs["render.default_ms_per_face"] = rd["default_ms_per_face"]
    cli = res.get("cli")
    if cli:
        figs["startup.help_s"] = cli["help_s"]
        figs["startup.first_result_s"] = cli["first_result_s"]
        figs["startup.one_photo_wall_s"] = cli["one_photo_wall_s"]
        for c in ("landmarks", "mesh"):
            for j in (1, 2):
                r = cli[f"{c}.j{j}"]
                figs[f"cli.{c}.j{j}.photos_per_s"] = r["photos_per_s"]
                figs[f"cli.{c}.j{j}.faces_per_s"] = r["faces_per_s"]
                figs[f"cli.{c}.j{j}.peak_rss_mb"] = r["peak_rss_tree_mb"]
        figs["rss.peak_j2_mb"] = [max(a, b) for a, b in zip(
            cli["landmarks.j2"]["peak_rss_tree_mb"], cli["mesh.j2"]["peak_rss_tree_mb"])]
        if "mesh_vertices" in cli:
            figs["mesh.vertices"] = [cli["mesh_vertices"]]
    stage_figures(res, figs)
    vid = res.get("video")
    if vid:
        for key, rec in vid.items():
            if not (isinstance(rec, dict) and key.startswith("d")):
                continue
            figs[f"video.{key}.fps_wall"] = rec["fps_wall"]
            figs[f"video.{key}.fps_manifest"] = rec["fps_manifest"]
            if rec.get("faces_per_frame") is not None:
                figs[f"video.{key}.faces_per_frame"] = [rec["faces_per_frame"]]
            figs[f"video.{key}.peak_rss_mb"] = rec["peak_rss_tree_mb"]
            for p in (round(100 * f) for f in VIDEO_RSS_AT):
                vals = [a[str(p)] for a in rec["rss_at_mb"] if a.get(str(p)) is not None]
                if vals:
                    figs[f"video.{key}.rss_at{p}_mb"] = vals
    return figs


def _check(key: str, vals: list[float]) -> bool | None:
    if key not in TARGETS or not vals:
        return None
    op, target, _ = TARGETS[key]
    return all((v <= target) if op == "<=" else (v >= target) for v in vals)


def _fmt(v: float) -> str:
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def _mark(key: str, vals: list[float]) -> str:
    ok = _check(key, vals)
    if ok is None:
        return ""
    n_ok = sum(bool(_check(key, [v])) for v in vals)
    return ("PASS" if ok else "FAIL") + (f" ({n_ok}/{len(vals)})" if len(vals) > 1 else "")


def _target(key: str) -> str:
    if key not in TARGETS:
        return ""
    op, t, u = TARGETS[key]
    return f"{op} {_fmt(t)} {u}"


def _regressor_rows(res: dict, figs: dict) -> list[list[str]]:
    """One row per model and runtime: ms per face (and ratio to the teacher's fastest runtime
    at the same batch and threads) for batch 1 / 32 at 1 / 2 threads."""
    reg = res.get("regressor")
    if not reg:
        return []
    rows = []
    for m in reg["models"]:
        for rt in (["shipped"] if m == "ours" else []) + reg["runtimes"]:
            label = f"CLI regressor ({reg.get('shipped_runtime')})" if rt == "shipped" else rt
            row = [m, label]
            for t in (1, 2):
                for b in (1, 32):
                    v = _med(figs[f"regressor.{m}.{rt}.b{b}.t{t}"])
                    tb = figs.get(f"regressor.teacher_best.b{b}.t{t}")
                    row.append(f"{v:.3f}" + (f" ({v / _med(tb):.2f}x)" if tb else ""))
            rows.append(row)
    return rows


def _rows(res: dict, figs: dict) -> list[tuple[str, str, str, str]]:
    """(figure, median, target, pass) rows of the summary table, in reading order."""
    rows = []

    def add(label, key, unit=""):
        vals = figs.get(key)
        if vals:
            rows.append((label, f"{_fmt(_med(vals))} {unit}".strip(), _target(key),
                         _mark(key, vals)))

    if "best_runtime" in res and "teacher" in res.get("regressor", {}).get("models", []):
        for t in (1, 2):
            for b in (1, 32):
                best = res["best_runtime"][f"ours.b{b}.t{t}"]
                tbest = res["best_runtime"][f"teacher.b{b}.t{t}"]
                add(f"regressor ms/face, batch {b}, {t} thread(s): ours, as the CLI runs it",
                    f"regressor.ours_shipped.b{b}.t{t}", "ms")
                add(f"  teacher fastest ({tbest})", f"regressor.teacher_best.b{b}.t{t}", "ms")
                add("  ratio ours (CLI) / teacher fastest",
                    f"regressor.ratio.b{b}.t{t}", "x")
                add(f"  ours fastest ({best}) / teacher fastest",
                    f"regressor.ratio_best.b{b}.t{t}", "x")
    elif "best_runtime" in res:  # no teacher: no ratio
        for t in (1, 2):
            for b in (1, 32):
                add(f"regressor ms/face, batch {b}, {t} thread(s): ours, as the CLI runs it",
                    f"regressor.ours_shipped.b{b}.t{t}", "ms")
                add(f"  ours fastest ({res['best_runtime'][f'ours.b{b}.t{t}']})",
                    f"regressor.ours_best.b{b}.t{t}", "ms")
    for t in (1, 2):
        add(f"detector ms per AFW photo, {t} thread(s)", f"detector.ms_per_photo.t{t}", "ms")
        add("  CPU time", f"detector.cpu_ms_per_photo.t{t}", "ms")
    for c in ("landmarks", "mesh"):
        for j in (1, 2):
            add(f"{c} --jobs {j}: photos/s", f"cli.{c}.j{j}.photos_per_s")
            add(f"{c} --jobs {j}: faces/s", f"cli.{c}.j{j}.faces_per_s")
            add(f"{c} --jobs {j}: peak RSS (process tree)", f"cli.{c}.j{j}.peak_rss_mb", "MB")
    add("peak RSS at --jobs 2 (landmarks, mesh)", "rss.peak_j2_mb", "MB")
    add("mesh vertices (OBJ with colours)", "mesh.vertices")
    add("write_mesh, OBJ with colours, one face, new file", "mesh_write.obj_ms", "ms")
    add("  the same, replacing an existing file", "mesh_write.obj_replace_ms", "ms")
    add("write_mesh, PLY with colours, one face, new file", "mesh_write.ply_ms", "ms")
    add("render, mesh layer at 1024 px, ms/face (wall)", "render.mesh_ms_per_face", "ms")
    add("  the same, CPU time", "render.mesh_cpu_ms_per_face", "ms")
    add("render, default layers (box, landmarks, pose), ms/face", "render.default_ms_per_face",
        "ms")
    vid = res.get("video")
    if vid:
        clip = (f"{vid['width']}x{vid['height']} clip, {vid['frames']} frames "
                f"({vid['minutes']:g} min)")
        for key in (k for k, v in vid.items() if isinstance(v, dict) and k.startswith("d")):
            opt = "" if key == "d1" else f" --detect-every {key[1:]}"
            add(f"landmarks video{opt}, {clip}: frames/s (process)",
                f"video.{key}.fps_wall")
            add("  frames/s (manifest: frames / seconds)", f"video.{key}.fps_manifest")
            add("  faces per frame (the output .jsonl)", f"video.{key}.faces_per_frame")
            add("  peak RSS (process tree)", f"video.{key}.peak_rss_mb", "MB")
            for p in (round(100 * f) for f in VIDEO_RSS_AT):
                add(f"  RSS at {p} % of the run", f"video.{key}.rss_at{p}_mb", "MB")
    stage_rows(res, add)
    add("facealign --help", "startup.help_s", "s")
    add("one-photo landmarks: first result", "startup.first_result_s", "s")
    add("one-photo landmarks: process exit", "startup.one_photo_wall_s", "s")
    return rows


def print_table(res: dict, figs: dict) -> None:
    """Print the regressor table and the summary table (rich; plain text without rich)."""
    meta = res["meta"]
    title = (f"facealign benchmark {meta['date']} - {meta['machine']} - load "
             f"{meta['load_before']}, other processes {meta.get('other_cpu_pct', '?')} % CPU "
             f"- medians of {meta['repeats']}")
    reg_rows = _regressor_rows(res, figs)
    reg_cols = ["model", "runtime"] + [f"b{b} {t}thr ms/face" for t in (1, 2) for b in (1, 32)]
    rows = _rows(res, figs)
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        for r in [reg_cols] + reg_rows + list(rows):
            print(" | ".join(r))
        return
    console = Console(width=max(120, shutil.get_terminal_size((120, 40)).columns))
    if reg_rows:
        t = Table(title="regressor, ms per face (x = ratio to the teacher's fastest runtime)")
        for i, c in enumerate(reg_cols):
            t.add_column(c, justify="left" if i < 2 else "right")
        for r in reg_rows:
            t.add_row(*r)
        console.print(t)
    table = Table(title=title)
    for col, just in (("figure", "left"), ("value", "right"), ("target", "right"),
                      ("pass/fail", "left")):
        table.add_column(col, justify=just)
    for r in rows:
        table.add_row(*r, style="red" if r[3].startswith("FAIL") else None)
    console.print(table)


def _git_state() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                              capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    h = head.stdout.strip() or "no-commit"
    return h + ("+dirty" if dirty.stdout.strip() else "")


def append_history(res: dict, figs: dict, note: str) -> None:
    """Append a one-line summary (medians and pass/fail) to ``benchmarks/history.jsonl``."""
    entry = {
        "date": res["meta"]["date"],
        "note": note,
        "git": res["meta"]["git"],
        "machine": res["meta"]["machine"],
        "load_before": res["meta"]["load_before"],
        "load_after": res["meta"]["load_after"],
        "other_cpu_pct": res["meta"].get("other_cpu_pct"),
        "weights": res["meta"]["weights"],
        "repeats": res["meta"]["repeats"],
        "quick": res["meta"]["quick"],
        "medians": {k: round(_med(v), 4) for k, v in figs.items()},
        "pass": {k: _check(k, v) for k, v in figs.items() if k in TARGETS},
        "best_runtime": res.get("best_runtime", {}),
    }
    with open(HISTORY, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, sort_keys=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared",
                    help="the shared data folder (default ../shared)")
    ap.add_argument("--weights", type=Path, default=None,
                    help="regressor checkpoint (default $FACEALIGN_WEIGHTS, else "
                         "weights/facealign_v3.pth)")
    ap.add_argument("--teacher", type=Path, default=None,
                    help="teacher weights (default <shared>/teacher/mb05_120x120.pth if present)")
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON, help="full results (JSON)")
    ap.add_argument("--repeats", type=int, default=3, help="measurements per figure")
    ap.add_argument("--quick", action="store_true",
                    help="a fast smoke run: 24 photos, short timing loops, no history entry")
    ap.add_argument("--note", default="", help="what changed (stored in the history entry)")
    ap.add_argument("--history", dest="history", action="store_true", default=None,
                    help="append to benchmarks/history.jsonl (default: unless --quick)")
    ap.add_argument("--no-history", dest="history", action="store_false")
    ap.add_argument("--only", default=",".join(SECTIONS),
                    help=f"comma-separated sections to run, of {','.join(SECTIONS)} "
                         "(default all)")
    ap.add_argument("--video-minutes", type=float, default=0.25,
                    help="length of the video section's 1280x720 30 fps clip, minutes "
                         "(default 0.25 = 450 frames; 5 = 9000 frames for the memory check)")
    ap.add_argument("--video-detect-every", default="1,5",
                    help="comma-separated --detect-every values the video clip is run with "
                         "(default 1,5; 1 = the detector on every frame)")
    ap.add_argument("--baseline", type=Path, default=None, metavar="SRC",
                    help="cli_cpu: also run the CLI of this source tree (PYTHONPATH=SRC, e.g. "
                         "a worktree of main), paired with this checkout's runs")
    ap.add_argument("--baseline-weights", type=Path, default=None, metavar="W",
                    help="cli_cpu: the weights the --baseline tree runs (default: the same "
                         "--weights as this checkout); e.g. SRC's own default to compare "
                         "shipped defaults")
    args = ap.parse_args(argv)

    from facealign_cli.models.regressor import default_weights_path

    weights = (args.weights or default_weights_path()).resolve()
    if not weights.is_file():
        ap.error(f"regressor weights not found: {weights} (give --weights)")
    photo_dir = args.shared / "data" / "photos" / "afw"
    photos = sorted(photo_dir.glob("*.jpg"))
    if not photos:
        ap.error(f"no photos in {photo_dir}")
    teacher = args.teacher or args.shared / "teacher" / "mb05_120x120.pth"
    teacher = teacher if teacher.is_file() else None
    sections = set(args.only.split(","))
    if sections - set(SECTIONS):
        ap.error(f"--only: unknown section(s) {','.join(sorted(sections - set(SECTIONS)))} "
                 f"(choose from {','.join(SECTIONS)})")
    try:
        video_every = [int(k) for k in args.video_detect_every.split(",")]
    except ValueError:
        ap.error("--video-detect-every: comma-separated integers")
    if args.video_minutes <= 0 or any(k < 1 for k in video_every):
        ap.error("--video-minutes must be > 0 and --video-detect-every values >= 1")
    history = (not args.quick) if args.history is None else args.history

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    load = _loadavg()
    if load is not None and load > 0.5:
        log(f"warning: 1-minute load average {load:.2f}: other work on the machine inflates "
            "these figures")
    res: dict = {"meta": {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": f"{_cpu_model()}, {os.cpu_count()} CPUs, {platform.system()}",
        "cpus": os.cpu_count(), "python": platform.python_version(),
        "weights": str(weights), "teacher": str(teacher) if teacher else None,
        "repeats": args.repeats, "quick": args.quick, "load_before": load,
        "git": _git_state(),
    }}
    with contextlib.suppress(ImportError):
        import torch

        res["meta"]["torch"] = torch.__version__
    with contextlib.suppress(ImportError):
        import onnxruntime

        res["meta"]["onnxruntime"] = onnxruntime.__version__
    if teacher is None:
        log("teacher weights not found: teacher rows and ratios left out")

    cpu0, wall0 = _cpu_snapshot(), time.perf_counter()
    sub_photos = photos[:24] if args.quick else photos
    min_time = 0.1 if args.quick else 0.4
    tmp_inputs = None
    cli_dir = photo_dir
    if args.quick:  # a folder of links to a subset of the photos
        tmp_inputs = tempfile.TemporaryDirectory(prefix="facealign-bench-in-")
        cli_dir = Path(tmp_inputs.name)
        for p in sub_photos:
            os.symlink(p.resolve(), cli_dir / p.name)
    try:
        if "regressor" in sections:
            log("regressor (ms per face):")
            res["regressor"] = bench_regressors(weights, teacher, photos, args.repeats,
                                                min_time, log)
        if "detector" in sections:
            log("detector:")
            res["detector"] = bench_detector(sub_photos, args.repeats, log)
        if "mesh_write" in sections:
            log("mesh writing:")
            res["mesh_write"] = bench_mesh_write(weights, photos, args.repeats, min_time, log)
        if "render" in sections:
            log("render (ms per face):")
            res["render"] = bench_render(weights, photos, args.repeats, log)
        if "cli" in sections:
            log(f"whole runs ({len(sub_photos)} photos):")
            res["cli"] = bench_cli(cli_dir, weights, args.repeats, log)
        if "stages" in sections:
            log(f"stages (CPU per photo / face, {len(sub_photos)} photos, 1 thread):")
            res["stages"] = bench_stages(weights, sub_photos, args.repeats, log)
        if "cli_cpu" in sections:
            log(f"whole runs, wall and CPU ({len(sub_photos)} photos):")
            res["cli_cpu"] = bench_cli_cpu(cli_dir, weights, args.repeats, log, args.baseline,
                                           args.baseline_weights)
        if "video" in sections:
            log(f"video ({args.video_minutes:g} min 720p clip):")
            res["video"] = bench_video(photo_dir, weights, args.repeats, log,
                                       minutes=args.video_minutes, detect_every=video_every)
    finally:
        if tmp_inputs is not None:
            tmp_inputs.cleanup()
    res["meta"]["load_after"] = _loadavg()
    cpu1 = _cpu_snapshot()
    if cpu0 and cpu1:
        # CPU time used on the machine by processes other than this benchmark and its children
        other = max(0.0, (cpu1[0] - cpu0[0]) - (cpu1[1] - cpu0[1]))
        wall = time.perf_counter() - wall0
        res["meta"]["other_cpu_s"] = round(other, 1)
        res["meta"]["other_cpu_pct"] = round(100.0 * other / (wall * (os.cpu_count() or 1)), 1)
        if res["meta"]["other_cpu_pct"] > 3.0:
            log(f"warning: other processes used {other:.0f} CPU-s during the run "
                f"({res['meta']['other_cpu_pct']:.0f} % of the machine): figures are perturbed")
    figs = figures(res)
    res["figures"] = figs
    res["pass"] = {k: _check(k, v) for k, v in figs.items() if k in TARGETS}
    print_table(res, figs)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
        log(f"results: {args.json}")
    if history:
        append_history(res, figs, args.note)
        log(f"history: {HISTORY}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
