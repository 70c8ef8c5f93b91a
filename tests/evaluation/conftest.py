"""Fixtures of the evaluation tests: a stand-in detector, the teacher as an evaluated method and
a random facealign checkpoint (the data-folder fixtures are in ``tests/conftest.py``)."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest

from facealign_cli.core.face import Face


class BoxDetector:
    """A stand-in detector: returns, for known images, a box whose roi (pipeline rule) is the
    3DDFA landmark roi box of the annotated face, plus a far-away distractor; nothing for
    images listed in ``miss``.

    Args:
        faces_by_image: :meth:`key` of an image -> list of (68, 2+) landmarks (image pixels).
        miss: keys of the images on which nothing is detected.
    """

    def __init__(self, faces_by_image: dict[bytes, list[np.ndarray]],
                 miss: frozenset[bytes] | set[bytes] = frozenset()):
        self.faces, self.miss = faces_by_image, miss

    @staticmethod
    def key(img: np.ndarray) -> bytes:
        """SHA-1 of the image bytes."""
        return hashlib.sha1(img.tobytes()).digest()

    def detect(self, img: np.ndarray) -> list[Face]:
        from facealign_cli.core import geometry as G

        k = self.key(img)
        if k in self.miss:
            return []
        out = [Face(box=np.array([0, 0, 8, 8], np.float32), score=0.6)]
        for pts in self.faces.get(k, []):
            sx, sy, ex, ey = G.roi_box_from_landmarks(pts)
            side = (ex - sx) / G.ROI_SCALE
            cx, cy = (sx + ex) / 2, (sy + ey) / 2 - G.ROI_SHIFT_Y * side
            out.append(Face(box=np.array([cx - side / 2, cy - side / 2, cx + side / 2,
                                          cy + side / 2], np.float32), score=0.9))
        return out

    def policy(self) -> dict:
        return {"fake": True}


@pytest.fixture
def box_detector() -> type[BoxDetector]:
    """The :class:`BoxDetector` class."""
    return BoxDetector


@pytest.fixture
def teacher_method(teacher_weights):
    """The 3DDFA-V2 teacher as an evaluated :class:`~facealign_cli.evaluation.protocols.Method`
    (key ``3ddfa-v2``, no flip)."""
    from facealign_cli.evaluation.protocols import Method
    from facealign_cli.models.baseline_3ddfa import Baseline3DDFA

    return Method("3ddfa-v2", "3DDFA-V2", Baseline3DDFA(teacher_weights, num_threads=1), {})


@pytest.fixture
def random_checkpoint(tmp_path, teacher_weights) -> Path:
    """A facealign checkpoint with random weights (exercises the two-method path), written to
    ``tmp_path/rand.pth``; the parameter mean/std are the teacher's."""
    torch = pytest.importorskip("torch")
    from facealign_cli.models.regressor import FaceAlignNet

    with open(teacher_weights.with_name("param_mean_std_62d_120x120.pkl"), "rb") as f:
        ms = pickle.load(f)
    torch.manual_seed(0)
    net = FaceAlignNet("dws_s")
    path = tmp_path / "rand.pth"
    torch.save({"arch": "dws_s", "model": net.state_dict(), "param_mean": ms["mean"],
                "param_std": ms["std"], "input_size": 120}, path)
    return path
