#!/usr/bin/env python3
"""Soak test of the batch engine: throughput and memory of a long `facealign` run.

Builds a corpus of N images (default 2000) by cycling through the sample photos
(``$FACEALIGN_SHARED/data/photos/afw``, else ``../shared/data/photos/afw`` beside the
repository), then runs ``facealign <command> CORPUS --out OUT --jobs J -q`` once per ``--jobs``
value (default 1 and 2) and reports, per run:

* ``images_per_s``: N / wall-clock seconds of the whole command (model loading included);
* ``peak_rss_mib``: the largest sum of resident set sizes (MiB) over the command's process
  tree (the parent and its worker processes), sampled from ``/proc`` every ``--interval``
  seconds (0.2); shared pages are counted once per process, so this overestimates slightly;
* ``peak_proc_rss_mib``: the largest single process;
* ``rss_mib_at``: the tree's RSS at 10 %, 50 % and 90 % of the run, to see that memory stays
  flat (bounded by chunking) instead of growing with the number of images done.

The corpus files are hard links to the photos where the file system allows it, else copies:
not symbolic links, because ``facealign`` counts a file reached twice (same real path) once.
Every file of the corpus is a distinct path, so all N are processed.

Linux only (reads ``/proc``). Heavy: run it niced on a shared machine::

    nice -n 10 python scripts/batch_soak.py --n 2000 --jobs 1 --jobs 2
    nice -n 10 python scripts/batch_soak.py --n 50 --json soak.json

Exit status: 0 when every run exits 0, else 1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGE = os.sysconf("SC_PAGE_SIZE")


def default_photos() -> Path:
    shared = os.environ.get("FACEALIGN_SHARED")
    base = Path(shared) if shared else REPO.parent / "shared"
    return base / "data" / "photos" / "afw"


def build_corpus(photos: list[Path], n: int, dest: Path) -> Path:
    """``n`` files ``dest/dXX/imgNNNNN.jpg`` cycling through ``photos`` (hard links, or copies
    across file systems), 100 per sub-folder."""
    dest.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        src = photos[i % len(photos)]
        d = dest / f"d{i // 100:03d}"
        d.mkdir(exist_ok=True)
        target = d / f"img{i:05d}{src.suffix.lower()}"
        try:
            os.link(src, target)
        except OSError:
            shutil.copyfile(src, target)
    return dest


def _children_map() -> dict[int, list[int]]:
    """ppid -> [pid] for every process visible in /proc."""
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(name))
    return kids


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return 0


def tree_rss(root: int) -> tuple[int, int, int]:
    """(sum of RSS in bytes, largest single RSS, number of processes) of ``root``'s tree."""
    kids = _children_map()
    todo, seen = [root], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo.extend(kids.get(p, []))
    sizes = [_rss_bytes(p) for p in seen]
    return sum(sizes), max(sizes, default=0), len(seen)


def run_one(command: str, corpus: Path, out: Path, jobs: int, n: int, interval: float,
            env: dict, extra: list[str]) -> dict:
    """Run one ``facealign`` command, sampling its process tree; returns the figures."""
    exe = shutil.which("facealign")
    cmd = ([exe] if exe else [sys.executable, "-m", "facealign_cli.cli.main"]) + [
        command, str(corpus), "--out", str(out), "--jobs", str(jobs), "-q", *extra]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    samples: list[tuple[float, int]] = []
    peak = peak_proc = max_procs = 0
    while proc.poll() is None:
        total, biggest, nproc = tree_rss(proc.pid)
        samples.append((time.perf_counter() - t0, total))
        peak, peak_proc = max(peak, total), max(peak_proc, biggest)
        max_procs = max(max_procs, nproc)
        time.sleep(interval)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace")
    man = out / "manifest.jsonl"
    statuses: dict[str, int] = {}
    if man.is_file():
        for line in man.read_text("utf-8").splitlines():
            st = json.loads(line)["status"]
            statuses[st] = statuses.get(st, 0) + 1

    def at(frac: float) -> float | None:
        if not samples:
            return None
        t = frac * wall
        return round(min(samples, key=lambda s: abs(s[0] - t))[1] / 2**20, 1)

    return {"command": command, "jobs": jobs, "images": n, "exit_code": proc.returncode,
            "seconds": round(wall, 2), "images_per_s": round(n / wall, 3),
            "peak_rss_mib": round(peak / 2**20, 1),
            "peak_proc_rss_mib": round(peak_proc / 2**20, 1),
            "max_processes": max_procs,
            "rss_mib_at": {"10%": at(0.1), "50%": at(0.5), "90%": at(0.9)},
            "samples": len(samples), "statuses": statuses,
            "stderr_tail": err.strip().splitlines()[-3:]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="images in the corpus (default 2000)")
    ap.add_argument("--jobs", type=int, action="append",
                    help="a --jobs value to run (repeatable; default: 1 and 2)")
    ap.add_argument("--command", default="landmarks",
                    choices=["detect", "landmarks", "pose", "mesh"])
    ap.add_argument("--photos", type=Path, default=None,
                    help="folder of sample photos (default: the AFW photos of the data folder)")
    ap.add_argument("--weights", default=None,
                    help="regressor checkpoint (default: $FACEALIGN_WEIGHTS, else the shipped "
                         "weights)")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="where corpus and outputs go (default: a new temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--interval", type=float, default=0.2, help="RSS sampling period, s")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    jobs_list = args.jobs or [1, 2]

    photos_dir = args.photos or default_photos()
    photos = sorted(p for p in photos_dir.glob("*")
                    if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not photos:
        print(f"batch_soak: no photos in {photos_dir}", file=sys.stderr)
        return 2
    env = dict(os.environ)
    extra: list[str] = []
    if args.weights:
        extra = ["--weights", args.weights]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="facealign_soak_"))
    try:
        t = time.perf_counter()
        corpus = build_corpus(photos, args.n, work / "corpus")
        print(f"corpus: {args.n} images from {len(photos)} photos in {corpus} "
              f"({time.perf_counter() - t:.1f} s)", file=sys.stderr)
        results = []
        for j in jobs_list:
            out = work / f"out_{args.command}_j{j}"
            shutil.rmtree(out, ignore_errors=True)
            r = run_one(args.command, corpus, out, j, args.n, args.interval, env, extra)
            results.append(r)
            print(f"{args.command} --jobs {j}: {r['images_per_s']:.2f} images/s "
                  f"({r['seconds']:.0f} s), peak RSS {r['peak_rss_mib']:.0f} MiB "
                  f"(largest process {r['peak_proc_rss_mib']:.0f} MiB, "
                  f"{r['max_processes']} processes), RSS at 10/50/90 %: "
                  f"{r['rss_mib_at']['10%']}/{r['rss_mib_at']['50%']}/"
                  f"{r['rss_mib_at']['90%']} MiB, exit {r['exit_code']}, {r['statuses']}",
                  file=sys.stderr)
        report = {"cpu_count": os.cpu_count(), "photos": str(photos_dir), "runs": results}
        print(json.dumps(report, indent=1))
        if args.json:
            args.json.write_text(json.dumps(report, indent=1) + "\n")
        return 0 if all(r["exit_code"] == 0 for r in results) else 1
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
