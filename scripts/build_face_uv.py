#!/usr/bin/env python
"""Build the fixed UV unwrapping of the face region (``facealign_cli/data/face_uv.npz``).

The face region of ``facealign_cli/data/face_topology.npz`` was triangulated by
``scripts/build_face_topology.py`` as a Delaunay triangulation of the longitude / latitude of its
mean-face vertices seen from a centre C behind the face (on the mid-sagittal plane). That same
chart is the UV unwrapping: it has no folded triangle by construction (checked here again), it
is symmetric about the mid-sagittal plane (lon = 0), and it covers the sides of the face towards
the ears far better than a frontal orthographic projection would (where the cheeks near the
ears are squeezed to slivers).

UV = the (lon, lat) of every region vertex, each axis scaled to fill [0, 1] up to a margin of
``MARGIN`` (lon symmetric about 0, so u = 0.5 is the mid-sagittal line); ``aspect`` (lon span /
lat span) is stored too, so a texture of width / height = aspect has square texels in angle
(:func:`facealign_cli.core.morphable_model.load_face_uv`); ``u`` grows with the model's x
(the subject's left, the image's right on a frontal face), ``v`` with y (up, OBJ's convention:
v = 0 is the texture's bottom row).

The file also holds ``mirror``: for every region vertex, the region vertex nearest to its mirror
image (x reflected about the mean face's plane of symmetry, the plane of
:func:`facealign_cli.core.symmetry.vertex_mirror_map`), used to fill texels hidden from the camera
from the other side of the face.

Deterministic (no randomness). Usage::

    python scripts/build_face_uv.py [--out PATH]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

sys.path.insert(0, str(Path(__file__).resolve().parent))

from build_face_topology import face_region_mask, lonlat, mean_face, projection_centre  # noqa: E402

from facealign_cli.core.morphable_model import UV_FILE, load_face_topology  # noqa: E402
from facealign_cli.io.records import atomic_open  # noqa: E402

MARGIN = 0.01  # free border of the chart in [0, 1] units (on its longer axis)


def build(out: str | None = None, verbose: bool = True) -> dict:
    """Compute the UVs and the mirror map of the shipped topology and write them to ``out``.

    Raises:
        RuntimeError: a UV triangle is folded or degenerate (the chart is not one-to-one).
    """
    topo = load_face_topology()
    v, kp = mean_face()
    _, info = face_region_mask(v, kp)
    c = projection_centre(v, kp, info["face_height"])
    fv = v[topo.vertex_index]
    ll = lonlat(fv, c)
    lo, hi = ll.min(0), ll.max(0)
    half_lon = np.abs(ll[:, 0]).max()  # symmetric in lon about 0
    half_lat = (hi[1] - lo[1]) / 2
    uv = np.empty_like(ll)
    uv[:, 0] = 0.5 + ll[:, 0] * (0.5 - MARGIN) / half_lon
    uv[:, 1] = 0.5 + (ll[:, 1] - (lo[1] + hi[1]) / 2) * (0.5 - MARGIN) / half_lat
    aspect = half_lon / half_lat
    t = topo.triangles
    a, b, cc = uv[t[:, 0]], uv[t[:, 1]], uv[t[:, 2]]
    area = 0.5 * ((b[:, 0] - a[:, 0]) * (cc[:, 1] - a[:, 1])
                  - (b[:, 1] - a[:, 1]) * (cc[:, 0] - a[:, 0]))
    folded = int((area <= 0).sum())
    if folded:
        raise RuntimeError(f"{folded} UV triangles are folded or degenerate")
    x0 = v[:, 0].mean()  # the full mean face's plane of symmetry (as vertex_mirror_map)
    m = fv.copy()
    m[:, 0] = 2 * x0 - fv[:, 0]
    dist, mirror = cKDTree(fv).query(m)
    out_path = Path(out) if out else UV_FILE
    with atomic_open(out_path, "wb") as fh:
        np.savez_compressed(
            fh, uv=uv.astype(np.float32), mirror=mirror.astype(np.int32),
            aspect=np.float64(aspect),
            meta_rule=np.array("lon/lat of the mean face seen from the topology's projection "
                               "centre, each axis scaled to [0, 1], lon symmetric, margin "
                               f"{MARGIN}; mirror = nearest region vertex to the x-mirrored "
                               "vertex"),
            meta_n_vertices=np.int64(len(uv)))
    stats = {"n_vertices": len(uv), "aspect": float(aspect),
             "u_range": (float(uv[:, 0].min()), float(uv[:, 0].max())),
             "v_range": (float(uv[:, 1].min()), float(uv[:, 1].max())), "folded": folded,
             "mirror_median_distance": float(np.median(dist)),
             "uv_area_covered": float(area.sum())}
    if verbose:
        for key, val in stats.items():
            print(f"{key}: {val}")
        print(f"wrote {out_path}")
    return {"uv": uv, "mirror": mirror, **stats}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help=f"destination (default {UV_FILE})")
    args = ap.parse_args(argv)
    build(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
