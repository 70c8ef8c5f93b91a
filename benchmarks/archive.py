"""The cost of rerunning a finished run over a large archive (issue 25): CPU per item and peak
RSS of the rerun, files under ``<out>/.facealign/`` and the run-state database's size.

For each N of ``--n``:

1. **The archive**: N hard links (no copies) of the AFW photos of ``$FACEALIGN_SHARED``
   (``data/photos/afw``, cycled), ``in/d0000/p0000000.jpg`` ..., 1,000 to a folder.
2. **A finished run of** ``detect``: the real CLI on the first ``S`` = min(N, number of AFW
   photos) items (the *seed*); then each other item gets its seed's output (a hard link of the
   seed item's JSON) and its row in the run state written with
   :meth:`RunDB.put <facealign_cli.batch.run_db.RunDB.put>` (the runner's own write path,
   batched commits): the seed's row with the item's key, path, input size, mtime and outputs.
   The manifest gets no lines for these items (the rerun appends its own).
3. **The timed reruns**, the real CLI in a subprocess (``os.wait4``: user + system CPU and
   peak RSS of that process): once over the seed alone (before the other items exist: the
   fixed cost of a run) and once over all N items (everything done: nothing is detected).
   ``cpu_us_per_item`` is the whole rerun's CPU over N; ``marginal_us_per_item`` is
   ``(cpu(N) - cpu(S)) / (N - S)``, the cost of one more done item (issue 25's target: ≤ 20 µs).

Usage (from the repository root)::

    PYTHONPATH=$PWD python benchmarks/archive.py --n 10000,100000 --json /tmp/archive.json

The archives are built under ``--workdir`` (default: a temporary folder, removed at the end
unless ``--keep``); at N = 1,000,000 they take 2 × 10⁶ directory entries (links of photos and
outputs) and a few hundred MB for the database.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMAND = "detect"
PER_DIR = 1000


def afw_photos() -> list[Path]:
    """The AFW photos (sorted) of ``$FACEALIGN_SHARED`` (default ``/work/shared``)."""
    root = Path(os.environ.get("FACEALIGN_SHARED", "/work/shared")) / "data/photos/afw"
    photos = sorted(p for p in root.iterdir() if p.suffix.lower() == ".jpg")
    if not photos:
        raise SystemExit(f"no AFW photos in {root}")
    return photos


def item_rel(i: int) -> str:
    """The archive path of item ``i``, relative to ``in/`` (its output key without ``.jpg``)."""
    return f"d{i // PER_DIR:04d}/p{i:07d}.jpg"


def link_items(src: list[Path], inp: Path, start: int, stop: int) -> None:
    """Hard-link items ``start`` .. ``stop - 1`` into ``inp`` (photo ``i % len(src)``)."""
    for i in range(start, stop):
        dst = inp / item_rel(i)
        if i % PER_DIR == 0 or i == start:
            dst.parent.mkdir(parents=True, exist_ok=True)
        os.link(src[i % len(src)], dst)


def run_cli(args: list[str]) -> dict:
    """Run ``facealign ARGS`` with this checkout first on ``sys.path``: exit code, wall
    seconds, CPU seconds (user + system) and peak RSS (MiB) of the process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    code = "import sys; from facealign_cli.cli.main import main; sys.exit(main())"
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # read stderr before waiting (a full pipe would block the child)
    err = proc.stderr.read().decode("utf-8", "replace")
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    return {"exit": proc.returncode, "wall_s": round(wall, 3),
            "cpu_s": round(ru.ru_utime + ru.ru_stime, 3),
            "peak_rss_mib": round(ru.ru_maxrss / 1024, 1), "stderr": err.strip()[-300:]}


def prefill(out: Path, inp: Path, seed: int, n: int) -> None:
    """Give items ``seed`` .. ``n - 1`` the outputs and rows of their seed item (see the
    module docstring), through :meth:`RunDB.put <facealign_cli.batch.run_db.RunDB.put>`."""
    from facealign_cli.batch.run_db import RunDB

    db = RunDB(out)
    try:
        keys = [item_rel(i)[:-4] for i in range(seed)]
        rows = db.lookup(COMMAND, keys)
        base = [rows[k] for k in keys]  # KeyError: a seed item that the real run failed
        for i in range(seed, n):
            row = base[i % seed]
            rel = item_rel(i)
            key = rel[:-4]
            outputs = tuple(f"{key}.json" for _ in row.outputs[:1])
            dst = out / outputs[0] if outputs else None
            if dst is not None:
                if i % PER_DIR == 0 or i == seed:
                    dst.parent.mkdir(parents=True, exist_ok=True)
                os.link(out / row.outputs[0], dst)
            path = str(inp / rel)
            st = os.stat(path)
            db.put(dataclasses.replace(row, key=key, path=path, outputs=outputs,
                                       size=st.st_size, mtime_ns=st.st_mtime_ns,
                                       finished=time.time()))
    finally:
        db.close()


def state_files(out: Path) -> tuple[int, int]:
    """Files under ``out/.facealign`` and the bytes of the run-state database (with its WAL)."""
    n = sum(len(files) for _, _, files in os.walk(out / ".facealign"))
    db = sum(p.stat().st_size for p in (out / ".facealign").glob("state.sqlite3*"))
    return n, db


def bench_one(n: int, work: Path, src: list[Path]) -> dict:
    """Build the archive of ``n`` items under ``work`` and time its reruns (a dict of figures)."""
    inp, out = work / f"n{n}" / "in", work / f"n{n}" / "out"
    shutil.rmtree(inp.parent, ignore_errors=True)
    seed = min(n, len(src))
    link_items(src, inp, 0, seed)
    first = run_cli([COMMAND, str(inp), "--out", str(out)])
    if first["exit"] != 0:
        raise SystemExit(f"the seed run failed: {first}")
    fixed = run_cli([COMMAND, str(inp), "--out", str(out)])
    t0 = time.perf_counter()
    link_items(src, inp, seed, n)
    prefill(out, inp, seed, n)
    fill_s = time.perf_counter() - t0
    rerun = run_cli([COMMAND, str(inp), "--out", str(out)])
    if rerun["exit"] != 0:
        raise SystemExit(f"the rerun failed: {rerun}")
    files, db_bytes = state_files(out)
    marginal = ((rerun["cpu_s"] - fixed["cpu_s"]) / (n - seed) * 1e6) if n > seed else None
    return {
        "n": n, "seed": seed, "prefill_s": round(fill_s, 1),
        "rerun_cpu_s": rerun["cpu_s"], "rerun_wall_s": rerun["wall_s"],
        "cpu_us_per_item": round(rerun["cpu_s"] / n * 1e6, 1),
        "marginal_us_per_item": None if marginal is None else round(marginal, 1),
        "fixed_cpu_s": fixed["cpu_s"], "fixed_peak_rss_mib": fixed["peak_rss_mib"],
        "peak_rss_mib": rerun["peak_rss_mib"],
        "state_files": files, "db_mib": round(db_bytes / 2**20, 2),
        "rerun_summary": rerun["stderr"].splitlines()[-1] if rerun["stderr"] else "",
    }


def print_table(results: list[dict]) -> None:
    """The figures as a Markdown table on stdout."""
    cols = ["n", "rerun_cpu_s", "cpu_us_per_item", "marginal_us_per_item", "fixed_cpu_s",
            "peak_rss_mib", "fixed_peak_rss_mib", "state_files", "db_mib"]
    print("| " + " | ".join(cols) + " |")
    print("|" + " --- |" * len(cols))
    for r in results:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", default="2000",
                    help="comma-separated archive sizes (default 2000), e.g. 10000,100000,1000000")
    ap.add_argument("--workdir", type=Path, help="where to build the archives (default: a "
                    "temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the archives")
    ap.add_argument("--json", type=Path, help="write the figures here (JSON)")
    args = ap.parse_args(argv)
    sizes = [int(s.replace("_", "")) for s in args.n.split(",") if s.strip()]
    src = afw_photos()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="facealign-archive-"))
    work.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for n in sizes:
            r = bench_one(n, work, src)
            results.append(r)
            print(json.dumps(r), file=sys.stderr, flush=True)
            if not args.keep:
                shutil.rmtree(work / f"n{n}", ignore_errors=True)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    print_table(results)
    if args.json:
        doc = {"command": "python benchmarks/archive.py " + " ".join(sys.argv[1:] if argv is None
                                                                      else argv),
               "date": time.strftime("%Y-%m-%d"), "results": results}
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
