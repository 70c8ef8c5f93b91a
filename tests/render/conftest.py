"""Real faces for the render tests: the dense fits of the first sample photos (skipped cleanly
when ../shared is absent)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def afw_faces(afw_photos, mesh_ready):
    """``(triangles, [(path, image_bgr, faces), ...])`` for the three first AFW sample photos
    (the first holds a frontal face and a profile), ``FaceAligner()(image, dense=True)``."""
    from facealign_cli.core.pipeline import FaceAligner
    from facealign_cli.io.images import load_image

    fa = FaceAligner(num_threads=1)
    out = []
    for p in afw_photos:
        img = load_image(p)
        out.append((p, img, fa(img, dense=True)))
    return fa.topology.triangles, out
