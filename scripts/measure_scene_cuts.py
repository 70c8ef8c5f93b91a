#!/usr/bin/env python3
"""The distances :mod:`facealign_cli.core.scene_cuts` sees at cuts and without them, on the AFW
photos (``../shared/data/photos/afw``), to check :data:`~facealign_cli.core.scene_cuts.
CUT_THRESHOLD`.

Pairs of frames: **cut**, each photo followed by the next one (sorted by name: unrelated
photos); **jitter**, a photo rotated by up to 3 degrees, scaled by 0.95-1.05 and shifted by up
to 2 % (the stability benchmark's jitter video), four consecutive such frames; **shift 20 %**, a
photo and the photo shifted by 20 % of its width (fast motion, or ``--frame-step``); **light**,
a photo and the photo with contrast x1.15 and brightness +10 (an abrupt change of exposure).
Prints, for each, the count, min, 5th percentile, median, 95th percentile and max of
:func:`~facealign_cli.core.scene_cuts.content_change`, and how many pairs reach the threshold.

Usage::

    PYTHONPATH=$PWD python scripts/measure_scene_cuts.py [--shared ../shared] [--photos 60]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from facealign_cli.core.scene_cuts import CUT_THRESHOLD, content_change, frame_signature


def _warp(img: np.ndarray, M: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    return cv2.warpAffine(img, M, (w, h), borderMode=cv2.BORDER_REFLECT)


def measure(photos: list[Path], seed: int = 0) -> dict[str, np.ndarray]:
    """Distances of each kind of pair (module docstring)."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[float]] = {"cut": [], "jitter": [], "shift 20 %": [], "light": []}
    sigs = []
    for p in photos:
        img = cv2.imread(str(p))
        h, w = img.shape[:2]
        sig = frame_signature(img)
        sigs.append(sig)
        prev = None
        for _ in range(5):
            M = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-3, 3),
                                        rng.uniform(0.95, 1.05))
            M[:, 2] += rng.uniform(-0.02, 0.02, 2) * (w, h)
            s = frame_signature(_warp(img, M))
            if prev is not None:
                out["jitter"].append(content_change(prev, s))
            prev = s
        shifted = _warp(img, np.float32([[1, 0, 0.2 * w], [0, 1, 0]]))
        out["shift 20 %"].append(content_change(sig, frame_signature(shifted)))
        lit = cv2.convertScaleAbs(img, alpha=1.15, beta=10)
        out["light"].append(content_change(sig, frame_signature(lit)))
    out["cut"] = [content_change(a, b) for a, b in zip(sigs, sigs[1:])]
    return {k: np.asarray(v) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    ap.add_argument("--photos", type=int, default=60, help="first N photos by name")
    args = ap.parse_args()
    photos = sorted((args.shared / "data" / "photos" / "afw").glob("*.jpg"))[:args.photos]
    if len(photos) < 2:
        raise SystemExit(f"no AFW photos under {args.shared}")
    print(f"threshold {CUT_THRESHOLD}; {len(photos)} AFW photos")
    for kind, v in measure(photos).items():
        p5, med, p95 = np.percentile(v, [5, 50, 95])
        print(f"{kind:>11}: {len(v):4d} pairs, min {v.min():.3f}, p5 {p5:.3f}, median "
              f"{med:.3f}, p95 {p95:.3f}, max {v.max():.3f}; at or over the threshold: "
              f"{int(np.sum(v >= CUT_THRESHOLD))}")


if __name__ == "__main__":
    main()
