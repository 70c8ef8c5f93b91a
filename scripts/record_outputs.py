"""Record every image command's outputs as sha256 digests, to prove a refactoring unchanged.

Runs ``facealign`` (this tree: ``python -m facealign_cli.cli.main``) with ``detect``,
``landmarks``, ``landmarks --out -`` (NDJSON; photos only), ``pose``, ``mesh`` (obj),
``mesh --texture`` (obj + mtl + png) and ``render --sheet`` on a fixed input folder: 12 AFW
photos (``../shared/data/photos/afw``, the first 12 by name) and one 20-frame video built from
an AFW photo (a 320x240 window on its first annotated face, translating 6 px a frame,
written with ``cv2.VideoWriter``, mp4v). Writes ``{"<run>/<relative path>": sha256}`` as
JSON to ``--out``; ``--compare`` prints the differences to an earlier record.

Normalised before hashing (they change from one run to the next by design):

* ``manifest.jsonl``: each line's ``seconds`` is set to 0;
* ``.facealign/done/**`` and ``.facealign/settings/*``: nothing to normalise (no timing in
  them; two runs of the unchanged tree give identical digests).

Usage: ``PYTHONPATH=$PWD nice -n 19 python scripts/record_outputs.py --out /tmp/rec.json
[--compare /tmp/rec_before.json] [--work /tmp/rec_work]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

#: ``$FACEALIGN_SHARED`` (as the tests read it: a worktree elsewhere) or ``../shared``.
SHARED = Path(os.environ.get("FACEALIGN_SHARED",
                             Path(__file__).resolve().parents[1].parent / "shared"))
AFW = SHARED / "data" / "photos" / "afw"
N_PHOTOS = 12
N_FRAMES = 20

RUNS = {
    "detect": ["detect"],
    "landmarks": ["landmarks"],
    "pose": ["pose"],
    "mesh": ["mesh", "--format", "obj", "--mesh-every", "5"],
    "mesh_texture": ["mesh", "--texture", "--format", "obj", "--mesh-every", "10"],
    "render": ["render", "--sheet"],
}


def build_inputs(work: Path) -> Path:
    """The input folder: the photos (copied) and ``clip.mp4``."""
    import cv2

    src = work / "inputs"
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    photos = sorted(p for p in AFW.iterdir() if p.suffix.lower() == ".jpg")[:N_PHOTOS]
    for p in photos:
        shutil.copyfile(p, src / p.name)
    img = cv2.imread(str(photos[0]))
    ann = json.loads((AFW / "annotations.json").read_text())["photos"][photos[0].stem]
    cx = sum(x for x, _ in ann[0]) / len(ann[0])  # the first annotated face's centre
    cy = sum(y for _, y in ann[0]) / len(ann[0])
    w, h = 320, 240
    vw = cv2.VideoWriter(str(src / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (w, h))
    assert vw.isOpened()
    for i in range(N_FRAMES):  # the face drifts from left of centre to right of it
        x = int(min(max(0, cx - w / 2 + 60 - 6 * i), img.shape[1] - w))
        y = int(min(max(0, cy - h / 2), img.shape[0] - h))
        vw.write(img[y:y + h, x:x + w].copy())
    vw.release()
    return src


def normalise(rel: str, data: bytes) -> bytes:
    if rel.endswith("manifest.jsonl"):
        lines = []
        for ln in data.decode("utf-8").splitlines():
            d = json.loads(ln)
            d["seconds"] = 0
            lines.append(json.dumps(d, sort_keys=False))
        return ("\n".join(lines) + "\n").encode()
    return data


def digest_tree(root: Path, prefix: str, rec: dict) -> None:
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.name.endswith(".lock"):
            rel = p.relative_to(root).as_posix()
            rec[f"{prefix}/{rel}"] = hashlib.sha256(normalise(rel, p.read_bytes())).hexdigest()


def facealign(args: list[str], **kw) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "facealign_cli.cli.main", *args, "--jobs", "1", "-q"]
    return subprocess.run(cmd, capture_output=True, **kw)


def record(work: Path) -> dict:
    src = build_inputs(work)
    rec: dict[str, str] = {}
    for name, args in RUNS.items():
        out = work / "out" / name
        if out.exists():
            shutil.rmtree(out)
        p = facealign([*args, str(src), "--out", str(out)])
        rec[f"{name}/exit"] = str(p.returncode)
        if p.returncode not in (0, 1):
            sys.stderr.write(p.stderr.decode(errors="replace"))
        digest_tree(out, name, rec)
    p = facealign(["landmarks", str(src), "--exclude", "*.mp4", "--out", "-"])
    rec["landmarks_ndjson/exit"] = str(p.returncode)
    rec["landmarks_ndjson/stdout"] = hashlib.sha256(p.stdout).hexdigest()
    return rec


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--compare", default=None)
    ap.add_argument("--work", default="/tmp/rec_work")
    a = ap.parse_args()
    rec = record(Path(a.work))
    Path(a.out).write_text(json.dumps(rec, indent=1, sort_keys=True) + "\n")
    print(f"{len(rec)} entries -> {a.out}")
    if a.compare:
        old = json.loads(Path(a.compare).read_text())
        diff = sorted(k for k in old.keys() | rec.keys() if old.get(k) != rec.get(k))
        for k in diff:
            print(f"DIFF {k}: {old.get(k)} -> {rec.get(k)}")
        print("identical" if not diff else f"{len(diff)} difference(s)")
        return 1 if diff else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
