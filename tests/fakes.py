"""A stand-in for FaceAligner so the batch engine can be tested fast and without model files.

The fake "finds" one face in the centre of every image at least 32 px on each side whose
mean brightness is below 250 (a white image has no face), and raises on an all-black image
(to exercise model-side failures). Switches, as fields of :class:`FakeFactory` (they travel to
worker processes with the run's options, unlike environment variables, which reused loky
workers would not see):

* ``delay``: seconds to sleep per image;
* ``noise``: print junk to stdout, from Python and at the file-descriptor level (as a chatty
  native library would);
* ``crash``: kill the process (SIGKILL) on a 33 x 33 image, like a segfault or the
  out-of-memory killer would;
* ``log``: append the process id to this file each time a model is built;
* ``probe_threads``: every face's pose is ``[BLAS threads, OpenCV threads, 0]`` of the process
  that ran it (threadpoolctl, ``cv2.getNumThreads``).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass
from types import SimpleNamespace

import cv2
import numpy as np

from facealign_cli.core.face import Face


def blas_threads() -> int:
    """The thread count of numpy's BLAS in this process (threadpoolctl)."""
    from threadpoolctl import threadpool_info

    return max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")


class FakeAligner:
    topology = SimpleNamespace(triangles=np.array([[0, 1, 2], [0, 2, 3]], dtype=np.int32))

    def __init__(self, max_faces: int = 0, cfg: FakeFactory | None = None):
        self.max_faces = max_faces
        self.cfg = cfg or FakeFactory()

    def detect(self, img):
        if self.cfg.delay:
            time.sleep(self.cfg.delay)
        h, w = img.shape[:2]
        if self.cfg.noise:
            print("noise from python")
            sys.stdout.flush()
            os.write(1, b"noise from a native library\n")
        if self.cfg.crash and (h, w) == (33, 33):
            os.kill(os.getpid(), signal.SIGKILL)
        if img.max() == 0:
            raise RuntimeError("fake model failure on an all-black image")
        if h < 32 or w < 32 or img.mean() >= 250:
            return []
        faces = [Face(box=np.array([w * .25, h * .25, w * .75, h * .75], np.float32), score=0.9,
                      keypoints=np.tile(np.array([[w / 2, h / 2]], np.float32), (6, 1))),
                 Face(box=np.array([0, 0, w * .2, h * .2], np.float32), score=0.5,
                      keypoints=np.zeros((6, 2), np.float32))]
        return faces[: self.max_faces] if self.max_faces else faces

    def __call__(self, img, dense=False):
        faces = self.detect(img)
        for f in faces:
            x1, y1, x2, y2 = f.box
            f.roi_box = f.box.copy()
            lm = np.zeros((68, 3), np.float32)
            lm[:, 0] = np.linspace(x1, x2, 68)
            lm[:, 1] = np.linspace(y1, y2, 68)
            f.landmarks_3d = lm
            f.pose = np.array([10.0, -5.0, 2.5], np.float32)
            if self.cfg.probe_threads:
                f.pose = np.array([blas_threads(), cv2.getNumThreads(), 0], np.float32)
            if dense:
                f.vertices = np.array([[x1, y1, 0], [x2, y1, 0], [x2, y2, 1], [x1, y2, 1]],
                                      np.float32)
        return faces


@dataclass(frozen=True)
class FakeFactory:
    """A picklable ``RunOptions.aligner_factory`` with test switches (module docstring)."""

    delay: float = 0.0
    noise: bool = False
    crash: bool = False
    log: str | None = None
    probe_threads: bool = False

    def __call__(self, opts, threads):
        if self.log:
            with open(self.log, "a") as f:
                f.write(f"{os.getpid()}\n")
        return FakeAligner(max_faces=opts.max_faces, cfg=self)


fake_factory = FakeFactory()


def broken_factory(opts, threads):
    raise FileNotFoundError("regressor weights not found: /nowhere/model.pth")
