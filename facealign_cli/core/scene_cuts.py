"""Hard cuts between the processed frames of a video: where one shot ends and another begins,
face tracks end and new ones start (:class:`~facealign_cli.core.tracking.FaceTracker`'s
``new_scene``), and the smoothing forgets its past, so that a face of the next shot never
continues a track of the previous one because it stands where the other person stood.

Measure: the **hue-saturation histogram** of each frame (:func:`frame_signature`: the frame
scaled so that its long side is :data:`SIGNATURE_SIDE` px, ``cv2.INTER_AREA``, converted to HSV,
a 2D histogram of H (:data:`HIST_BINS` [0] bins over 0-180) and S ([1] bins over 0-256), summed
to 1) and the **Bhattacharyya distance** of two such histograms (:func:`content_change`,
``cv2.compareHist(..., cv2.HISTCMP_BHATTACHARYYA)``, 0 = the same colours, 1 = none in common).
A frame whose distance to the previous processed frame is at least :data:`CUT_THRESHOLD`
starts a new shot (:class:`CutDetector`). A colour histogram ignores where things are, so
camera and face motion, a zoom or the subsampling of ``--frame-step`` move it little, while a
cut changes the colours of the whole frame (the idea of PySceneDetect's histogram detector;
brightness, the V channel, is left out because a change of exposure moves it without a cut).

:data:`CUT_THRESHOLD` = 0.35, checked with ``PYTHONPATH=$PWD python
scripts/measure_scene_cuts.py`` on the 185 AFW photos: a cut is two different photos one after
the other; no cut is a photo and the same photo moved (rotated by up to 3 degrees, scaled by up
to 5 % and shifted by up to 2 %, the stability benchmark's jitter; or shifted by 20 % of its
width, fast motion or ``--frame-step``) or lit differently (contrast x1.15, brightness +10).
When written, it saw 183 of the 184 cuts, none of the 925 moved pairs and 12 of the 185
relit ones. So a cut between two shots of the same colours (the same room and light, another
person) can be missed, and an abrupt change of the light of a whole frame (a flash) can be
taken for a cut (its tracks then get new ids).
"""

from __future__ import annotations

import numpy as np

#: Long side, in pixels, of the frame the histogram is taken from.
SIGNATURE_SIDE = 128
#: Bins of the hue (0-180, OpenCV's range) and saturation (0-256) axes.
HIST_BINS = (16, 8)
#: Bhattacharyya distance of consecutive processed frames' histograms at which a cut is seen.
CUT_THRESHOLD = 0.35


def frame_signature(image_bgr: np.ndarray) -> np.ndarray:
    """The hue-saturation histogram of a frame (module docstring).

    Args:
        image_bgr: (H, W, 3) uint8 BGR frame.

    Returns:
        (HIST_BINS[0], HIST_BINS[1]) float32, summing to 1 (all zero for an empty frame).
    """
    import cv2

    h, w = image_bgr.shape[:2]
    k = min(1.0, SIGNATURE_SIDE / max(h, w, 1))
    small = image_bgr if k == 1.0 else cv2.resize(
        image_bgr, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(np.ascontiguousarray(small), cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, list(HIST_BINS), [0, 180, 0, 256])
    return cv2.normalize(hist, None, 1.0, 0.0, cv2.NORM_L1)


def content_change(a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya distance of two :func:`frame_signature` histograms, in [0, 1]."""
    import cv2

    return float(min(max(cv2.compareHist(a, b, cv2.HISTCMP_BHATTACHARYYA), 0.0), 1.0))


class CutDetector:
    """Says, frame after frame, whether a frame starts a new shot.

    Args:
        threshold: the distance (:func:`content_change`) at which a cut is seen, in (0, 1];
            ``None`` sees none.

    Usage: ``cut = detector(frame)`` for each processed frame in order (the first frame of a
    video is never a cut); :meth:`reset` between videos.
    """

    def __init__(self, threshold: float | None = CUT_THRESHOLD):
        if threshold is not None and not 0 < threshold <= 1:
            raise ValueError(f"threshold must lie in (0, 1] or be None, got {threshold!r}")
        self.threshold = threshold
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame (a new video)."""
        self._last: np.ndarray | None = None
        self.last_change: float | None = None

    def __call__(self, image_bgr: np.ndarray) -> bool:
        """Whether ``image_bgr`` ((H, W, 3) uint8 BGR) starts a new shot; ``last_change`` is
        then its distance to the previous frame (None for the first)."""
        if self.threshold is None:
            return False
        sig = frame_signature(image_bgr)
        prev, self._last = self._last, sig
        if prev is None:
            self.last_change = None
            return False
        self.last_change = content_change(prev, sig)
        return self.last_change >= self.threshold
