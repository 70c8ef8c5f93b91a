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
* ``trace``: append a line to this file each time the detector runs (once per image, or per
  processed video frame).
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

    def __init__(self, max_faces: int = 0, cfg: FakeFactory | None = None,
                 pose_convention: str = "yaw-first"):
        self.max_faces = max_faces
        self.cfg = cfg or FakeFactory()
        self.pose_convention = pose_convention

    def detect(self, img):
        if self.cfg.trace:
            with open(self.cfg.trace, "a") as f:
                f.write(f"{os.getpid()}\n")
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
        return self.fit(img, self.detect(img), dense=dense)

    def fit(self, img, faces, *, dense=False):
        """The "regression" of given detections (as :meth:`FaceAligner.fit`)."""
        for f in faces:
            x1, y1, x2, y2 = f.box
            f.roi_box = f.box.copy()
            lm = np.zeros((68, 3), np.float32)
            lm[:, 0] = np.linspace(x1, x2, 68)
            lm[:, 1] = np.linspace(y1, y2, 68)
            f.landmarks_3d = lm
            f.pose = np.array([10.0, -5.0, 2.5], np.float32)
            f.pose_convention = self.pose_convention  # (as FaceAligner: the run's)
            f.quality = f.score  # (0.9 and 0.5: both kept at the default --min-quality)
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
    trace: str | None = None
    probe_threads: bool = False

    def __call__(self, opts, threads):
        if self.log:
            with open(self.log, "a") as f:
                f.write(f"{os.getpid()}\n")
        return FakeAligner(max_faces=opts.aligner.max_faces, cfg=self,
                           pose_convention=opts.aligner.pose_convention)


fake_factory = FakeFactory()


def fake_run_options(factory):
    """A stand-in for ``facealign_cli.batch.options.RunOptions`` whose ``aligner_factory``
    defaults to ``factory``: put in its place (the command line makes its options there), the
    commands run the fake model, in this process and in the workers (the options carry the
    factory to them)."""
    import facealign_cli.batch.options as options

    real = options.RunOptions

    class FakeRunOptions:
        """``RunOptions(...)`` and ``RunOptions.make(...)`` with the fake factory."""

        def __new__(cls, *args, **kw):
            kw.setdefault("aligner_factory", factory)
            return real(*args, **kw)

        @staticmethod
        def make(*args, **kw):
            kw.setdefault("aligner_factory", factory)
            return real.make(*args, **kw)

    return FakeRunOptions


def broken_factory(opts, threads):
    raise FileNotFoundError("regressor weights not found: /nowhere/model.pth")


_FAKE_CLI = """
import sys
sys.path.insert(0, {tests!r})
import facealign_cli.batch.options as options
from facealign_cli.cli.main import main
from fakes import FakeFactory, fake_run_options
options.RunOptions = fake_run_options(FakeFactory(delay={delay}))
try:
    main({args!r})
finally:
    if {peak_rss!r}:
        # this process's peak RSS (VmHWM, KiB): unlike getrusage's ru_maxrss it is not
        # inherited from the (large) pytest process across fork + exec
        try:
            with open("/proc/self/status") as f:
                peak = [ln.split()[1] for ln in f if ln.startswith("VmHWM:")][0]
        except (OSError, IndexError):
            peak = "unknown"
        sys.stderr.write(f"PEAK_RSS_KIB {{peak}}\\n")
"""


def fake_cli(args, delay: float = 0.0, peak_rss: bool = False) -> list[str]:
    """The command line of ``facealign ARGS`` run with the fake model (``FakeFactory(delay)``)
    in a new Python process and its workers (for ``subprocess``); ``peak_rss``: it ends by
    writing ``PEAK_RSS_KIB <KiB>`` to stderr."""
    tests = os.path.dirname(os.path.abspath(__file__))
    return [sys.executable, "-c", _FAKE_CLI.format(tests=tests, delay=delay, peak_rss=peak_rss,
                                                   args=[str(a) for a in args])]
