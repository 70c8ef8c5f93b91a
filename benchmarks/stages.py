"""The cost of every stage of a photo and of whole runs in CPU time (issue 20), for
``benchmarks/bench.py`` (sections ``stages`` and ``cli_cpu``).

``stages``: in this process, one thread everywhere (OpenCV, numpy's BLAS, ONNX Runtime), CPU
time (``time.process_time``) of each stage over the AFW photos: decode
(``read_image``), each detector pass (``BlazeFaceDetector._run_pass`` timed per pass name; the
rest of ``detect`` — the shared downscale, NMS, group boxes — as "detector, other"), the
regressor passes (``regressor.predict`` calls: the crop and, with flip averaging, its mirror),
the 3DMM fit of the 68 landmarks, the dense vertices (``fit(dense=True)`` less the landmark
fit), the vertex colours, the mesh encodings (OBJ, PLY, GLB; viewer frame, with colours) and
the ``landmarks`` JSON document. Per photo or per face, and the ratio of a whole ``landmarks``
or ``mesh`` photo to the **floor**: decode + one detector pass (the first pass of the plan,
the whole image) + one regressor pass.

``cli_cpu``: the real CLI in a subprocess on the AFW photos, wall time and CPU time of the
whole process tree (``RUSAGE_CHILDREN``; the loky workers are reaped by the CLI before it
exits, so their CPU is counted) for ``landmarks --jobs 2``, ``landmarks --jobs 1 --threads
1`` and ``mesh --jobs 2``. With ``--baseline SRC`` (a checkout of another version, e.g.
``git worktree add /tmp/base main``) the same runs are made with ``PYTHONPATH=SRC``,
alternating with this checkout's in every repeat, and the paired ratios are reported.
"""

from __future__ import annotations

import collections
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: The CLI runs of ``cli_cpu``: label -> arguments.
CLI_RUNS = {
    "landmarks.j2": ["landmarks", "--jobs", "2"],
    "landmarks.j1t1": ["landmarks", "--jobs", "1", "--threads", "1"],
    "mesh.j2": ["mesh", "--jobs", "2"],
}
MESH_FORMATS = ("obj", "ply", "glb")


def _one_thread() -> None:
    import cv2
    from threadpoolctl import threadpool_limits

    cv2.setNumThreads(1)
    threadpool_limits(limits=1)


class _Timer:
    """CPU seconds and calls per stage name."""

    def __init__(self):
        self.cpu = collections.defaultdict(float)
        self.calls = collections.defaultdict(int)

    def wrap(self, name_of, fn):
        """``fn`` with each call's CPU time added to ``name_of(*args)``."""

        def timed(*args, **kw):
            t0 = time.process_time()
            try:
                return fn(*args, **kw)
            finally:
                name = name_of(*args)
                self.cpu[name] += time.process_time() - t0
                self.calls[name] += 1

        return timed

    def run(self, name: str, fn, *args, **kw):
        return self.wrap(lambda *a: name, fn)(*args, **kw)


def landmarks_document(cmd, opts, path: Path, dec, faces) -> bytes:
    """The bytes of the ``landmarks`` document of one photo, made by the command's own writer
    (:meth:`Command.open_writer <facealign_cli.batch.commands.base.Command.open_writer>`), as a
    run makes it. ``faces`` stay in the pixels of ``dec.image`` (the frame is given scale 1:
    the AFW photos are never decoded reduced, and the faces are reused by the next stages)."""
    from types import SimpleNamespace

    from facealign_cli.batch.sources import Frame
    from facealign_cli.batch.spools import MemorySink

    sink = MemorySink()
    writer = cmd.open_writer(item=SimpleNamespace(path=str(path), key=path.stem),
                             source=SimpleNamespace(many=False, sink=sink), aligner=None,
                             opts=opts)
    writer.add(Frame(dec.image, None, None, dec.width, dec.height), faces)
    ((_rel, data),) = writer.close().files
    return data


def bench_stages(weights: Path, photos: list[Path], repeats: int, log) -> dict:
    """CPU ms per photo / face of every stage (module docstring), ``repeats`` passes over
    ``photos``; one list entry per repeat."""
    _one_thread()
    from facealign_cli.batch.commands import get_command
    from facealign_cli.batch.options import RunOptions
    from facealign_cli.core.pipeline import FaceAligner
    from facealign_cli.io.images import read_image
    from facealign_cli.io.meshes import mesh_bytes
    from facealign_cli.models.detector import BlazeFaceDetector
    from facealign_cli.models.regressor_onnx import make_regressor
    from facealign_cli.render.texture import sample_vertex_colors

    det = BlazeFaceDetector(num_threads=1)
    aligner = FaceAligner(detector=det, regressor=make_regressor(weights, num_threads=1),
                          num_threads=1)
    tris = aligner.topology.triangles
    lm_cmd, opts = get_command("landmarks"), RunOptions("landmarks", "unused")  # JSON bytes
    warm = read_image(photos[0]).image  # load the 3DMM, the topology and both fitters first
    aligner.fit(warm, aligner.detect(warm), dense=True)
    aligner.fit(warm, aligner.detect(warm))
    out: dict = collections.defaultdict(list)
    first_pass = None
    for _ in range(repeats):
        tm = _Timer()
        # per-pass timers on this instance only (the detector's own policy is untouched)
        if hasattr(det, "_run_pass"):
            det._run_pass = tm.wrap(lambda base, k, p, rw, rh: f"detector pass {p.name}",
                                    type(det)._run_pass.__get__(det))
        aligner.regressor.predict = tm.wrap(lambda *a: "regressor passes",
                                            type(aligner.regressor).predict.__get__(
                                                aligner.regressor))
        n_faces = 0
        for path in photos:
            dec = tm.run("decode", read_image, path)
            img = dec.image
            if first_pass is None and hasattr(det, "_plan"):
                plan = det._plan(*img.shape[:2])
                first_pass = f"detector pass {plan[0][0].name}" if plan else None
            faces = tm.run("detector", aligner.detect, img)
            tm.run("fit", aligner.fit, img, faces)
            tm.run("JSON (landmarks document)", landmarks_document, lm_cmd, opts, path, dec,
                   faces)
            tm.run("fit dense", aligner.fit, img, faces, dense=True)
            n_faces += len(faces)
            for f in faces:
                cols = tm.run("vertex colours", sample_vertex_colors, img, f.vertices)
                for fmt in MESH_FORMATS:
                    tm.run(f"encode {fmt}", mesh_bytes, f.vertices, tris, cols, fmt,
                           image_height=dec.height)
        if hasattr(det, "_run_pass"):
            del det._run_pass
        del aligner.regressor.predict
        n = len(photos)
        passes = {k: v for k, v in tm.cpu.items() if k.startswith("detector pass ")}
        per_photo = {"decode": tm.cpu["decode"], "detector": tm.cpu["detector"],
                     **passes, "detector, other": tm.cpu["detector"] - sum(passes.values())}
        # the regressor runs inside both fits: split it in halves (the same crops twice)
        reg = tm.cpu["regressor passes"]
        per_photo["regressor passes"] = reg / 2
        per_photo["3DMM fit, 68 landmarks"] = tm.cpu["fit"] - reg / 2
        per_photo["dense vertices"] = tm.cpu["fit dense"] - tm.cpu["fit"]
        per_photo["JSON (landmarks document)"] = tm.cpu["JSON (landmarks document)"]
        for k, v in per_photo.items():
            out[f"photo.{k}"].append(1000.0 * v / n)
        for k in ["vertex colours"] + [f"encode {fmt}" for fmt in MESH_FORMATS]:
            out[f"face.{k}"].append(1000.0 * tm.cpu[k] / max(1, n_faces))
        out["face.dense vertices"].append(1000.0 * per_photo["dense vertices"] / max(1, n_faces))
        calls = tm.calls["regressor passes"] / 2 / n  # per photo, per fit
        one_reg = per_photo["regressor passes"] / max(calls * n, 1)  # s per regressor call
        floor = (per_photo["decode"] + per_photo.get(first_pass, 0.0)) / n + one_reg
        out["floor_ms"].append(1000.0 * floor)
        lm = sum(per_photo[k] for k in ("decode", "detector", "regressor passes",
                                        "3DMM fit, 68 landmarks",
                                        "JSON (landmarks document)")) / n
        mesh = (sum(per_photo[k] for k in ("decode", "detector", "regressor passes",
                                           "3DMM fit, 68 landmarks", "dense vertices")) / n
                + (tm.cpu["vertex colours"] + tm.cpu["encode obj"]) / n)
        out["landmarks_photo_ms"].append(1000.0 * lm)
        out["mesh_photo_ms"].append(1000.0 * mesh)
        out["landmarks_over_floor"].append(lm / floor)
        out["mesh_over_floor"].append(mesh / floor)
        out["regressor_calls_per_photo"] = calls
        out["photos"], out["faces"] = n, n_faces
        out["floor_pass"] = first_pass
        log(f"  {n} photos, {n_faces} faces: landmarks {1000 * lm:.1f} CPU ms/photo = "
            f"{lm / floor:.2f}x the floor ({1000 * floor:.1f} ms: decode + {first_pass} + one "
            f"regressor pass); mesh (OBJ) {1000 * mesh:.1f} ms/photo = {mesh / floor:.2f}x")
    return dict(out)


def _run_tree(args: list[str], env: dict, cwd: Path) -> tuple[float, float, int]:
    """``facealign ARGS`` in a subprocess: (wall s, CPU s of the process tree, exit code)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "facealign_cli.cli.main", *args], env=env,
                          cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"facealign {' '.join(args[:3])} failed ({proc.returncode}): "
                         f"{proc.stderr.decode(errors='replace')[-2000:]}")
    return wall, cpu, proc.returncode


def bench_cli_cpu(photo_dir: Path, weights: Path, repeats: int, log,
                  baseline: Path | None = None, baseline_weights: Path | None = None) -> dict:
    """Wall and CPU seconds of :data:`CLI_RUNS` over ``photo_dir`` (photos and faces from the
    manifest), for this checkout and (``baseline``) another one, alternating; the baseline
    tree runs ``baseline_weights`` (default ``weights``)."""
    from bench import _manifest_counts  # noqa: PLC0415 - the sibling module's helper

    trees = {"new": REPO}
    if baseline is not None:
        trees["old"] = baseline.resolve()
    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="facealign-bench-cpu-") as tmp:
        for label, args in CLI_RUNS.items():
            for _ in range(repeats):
                for tree, src in trees.items():
                    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEALIGN_")}
                    env["PYTHONPATH"] = str(src)
                    o = Path(tmp) / f"{tree}-{label}"
                    w = baseline_weights if tree == "old" and baseline_weights else weights
                    wall, cpu, _ = _run_tree([args[0], str(photo_dir), "--out", str(o),
                                              *args[1:], "--weights", str(w),
                                              "--overwrite", "--quiet"], env, src)
                    ok, faces, _ = _manifest_counts(o)
                    rec = out.setdefault(f"{tree}.{label}", {"wall_s": [], "cpu_s": []})
                    rec["wall_s"].append(wall)
                    rec["cpu_s"].append(cpu)
                    rec.update(photos=ok, faces=faces)
                    shutil.rmtree(o)
            for tree in trees:
                r = out[f"{tree}.{label}"]
                log(f"  {tree} {label}: wall {_mid(r['wall_s']):.1f} s, CPU "
                    f"{_mid(r['cpu_s']):.1f} s ({r['photos']} photos, {r['faces']} faces)")
    return out


def _mid(v):
    return sorted(v)[len(v) // 2]


def stage_figures(res: dict, figs: dict) -> None:
    """Add the figures of ``stages`` and ``cli_cpu`` to ``figs``."""
    st = res.get("stages")
    if st:
        for k, v in st.items():
            if isinstance(v, list):
                figs[f"stages.{k}"] = v
    cc = res.get("cli_cpu")
    if cc:
        for key, rec in cc.items():
            n_photos, n_faces = max(rec["photos"], 1), max(rec["faces"], 1)
            figs[f"cli_cpu.{key}.wall_s"] = rec["wall_s"]
            figs[f"cli_cpu.{key}.cpu_ms_per_photo"] = [1000 * c / n_photos for c in rec["cpu_s"]]
            figs[f"cli_cpu.{key}.photos_per_s"] = [n_photos / w for w in rec["wall_s"]]
            figs[f"cli_cpu.{key}.faces_per_s"] = [n_faces / w for w in rec["wall_s"]]
        for label in CLI_RUNS:
            new, old = cc.get(f"new.{label}"), cc.get(f"old.{label}")
            if new and old:  # paired: repeat i of one with repeat i of the other
                figs[f"cli_cpu.{label}.speedup_wall"] = [
                    o / n for o, n in zip(old["wall_s"], new["wall_s"])]
                figs[f"cli_cpu.{label}.cpu_ratio"] = [
                    o / n for o, n in zip(old["cpu_s"], new["cpu_s"])]


def stage_rows(res: dict, add) -> None:
    """Table rows of ``stages`` and ``cli_cpu`` through bench.py's ``add(label, key, unit)``."""
    st = res.get("stages")
    if st:
        add(f"stages ({st['photos']} AFW photos, {st['faces']} faces, 1 thread), CPU per "
            "photo: decode", "stages.photo.decode", "ms")
        for k in sorted(k for k in st if k.startswith("photo.detector")):
            add(f"  {k[len('photo.'):]}", f"stages.{k}", "ms")
        rows = [(f"  regressor passes ({st['regressor_calls_per_photo']:.0f} per photo)",
                 "photo.regressor passes", "ms"),
                ("  3DMM fit, 68 landmarks", "photo.3DMM fit, 68 landmarks", "ms"),
                ("  JSON (landmarks document)", "photo.JSON (landmarks document)", "ms"),
                ("  dense vertices", "photo.dense vertices", "ms"),
                ("CPU per face: dense vertices", "face.dense vertices", "ms"),
                ("  vertex colours", "face.vertex colours", "ms")]
        rows += [(f"  encoding {fmt.upper()} (viewer frame, colours)", f"face.encode {fmt}",
                  "ms") for fmt in MESH_FORMATS]
        rows += [(f"floor per photo: decode + {st.get('floor_pass')} + one regressor pass",
                  "floor_ms", "ms"),
                 ("landmarks photo, CPU", "landmarks_photo_ms", "ms"),
                 ("  over the floor", "landmarks_over_floor", "x"),
                 ("mesh photo (OBJ), CPU", "mesh_photo_ms", "ms"),
                 ("  over the floor", "mesh_over_floor", "x")]
        for label, key, unit in rows:
            add(label, f"stages.{key}", unit)
    cc = res.get("cli_cpu")
    if cc:
        for label, args in CLI_RUNS.items():
            for tree in ("new", "old"):
                if f"{tree}.{label}" not in cc:
                    continue
                name = "this checkout" if tree == "new" else "baseline"
                add(f"{' '.join(args)} ({name}): wall", f"cli_cpu.{tree}.{label}.wall_s", "s")
                add("  CPU per photo (process tree)",
                    f"cli_cpu.{tree}.{label}.cpu_ms_per_photo", "ms")
                add("  photos/s", f"cli_cpu.{tree}.{label}.photos_per_s")
                add("  faces/s", f"cli_cpu.{tree}.{label}.faces_per_s")
            add("  baseline / this checkout: wall (paired)", f"cli_cpu.{label}.speedup_wall",
                "x")
            add("  baseline / this checkout: CPU (paired)", f"cli_cpu.{label}.cpu_ratio", "x")
