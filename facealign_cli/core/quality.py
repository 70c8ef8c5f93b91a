"""Face quality: how much a detection looks like a real face, from what the pipeline computes.

With flip averaging (the default) the regressor sees each roi crop twice, as is and mirrored. On a
real face the mirrored prediction, mapped back, lands on (nearly) the same landmarks; on a jacket,
a lamp or a hand the two predictions are unrelated guesses and disagree by several times more
(median over the labelled set, default pipeline: 1.0 % of the crop side for faces). The
**flip disagreement**
(:attr:`facealign_cli.core.regression.CropFit.flip_disagreement`, of the last pass) is therefore
free, and :func:`face_quality` combines it with the detector score in a logistic model.

Fit (``scripts/fit_quality.py``; never AFLW2000-3D): the detections of the default detector
policy ``v2`` and of its 0.4-threshold variant on the 185 AFW photos and the 870 300-W HELEN
training crops (1457 detections, 1388 faces and 69 false, labelled in
``benchmarks/data/detections_labelled.csv``), each fitted by the default pipeline (the shipped
v3 weights, flip averaging, roi crop scale 0.88, second pass, roi rule refitted for ``v2``);
logistic regression of the label on the detector score and log(flip disagreement). ROC AUC of
held-out predictions (5-fold, grouped by photo) against the detector score alone: all
detections 0.985 vs 0.979, AFW detections of the default policy 0.985 vs 0.966. The other cue
tried, the agreement of the 6 BlazeFace keypoints with the fitted landmarks, is weaker alone
(AUC 0.947-0.960 on the AFW default detections) and adds nothing to the pair (0.983-0.984).

At the default threshold :data:`DEFAULT_MIN_QUALITY` = 0.5 (detections of ``v2`` at the
default ``--min-score`` 0.45; these weights, held-out predictions in brackets): AFW photos, 2
of 439 faces dropped (0.5 %; [0.2 %]), none of the 333 annotated faces the detector finds, and
13 of 27 false detections dropped (48 %; [48 %]): 0.076 false detections per photo kept
(0.146 without the filter; the v1 policy without it: 0.254); HELEN crops, 3 of 931 faces
dropped (0.3 %; [0.3 %]) and 9 of 15 false ones (60 %; [53 %]). 0.6 would keep all 333
annotated faces too, with 0.054-0.059 false per photo, but drops 1.4-1.6 % of the AFW faces. The
detector score at ``--min-score 0.7`` keeps 87.5 % of the AFW faces (318 annotated) and none of
the false ones. Measured with ``python scripts/fit_quality.py --weights
weights/facealign_v3.pth --policy v2``.

Refit (after a new regressor or detector policy: the flip disagreement depends on both)::

    PYTHONPATH=$PWD python scripts/fit_quality.py --weights NEW.pth --policy v2

then paste its ``WEIGHTS`` / ``FLIP_MEDIAN_FACE`` line here and update the rates above from its
table (a detection not yet in the labelled set stops it: add it with
``scripts/build_detection_set.py add`` first).
"""

from __future__ import annotations

import math

from facealign_cli.defaults import DEFAULT_MIN_QUALITY

__all__ = ["DEFAULT_MIN_QUALITY", "FLIP_MEDIAN_FACE", "WEIGHTS", "face_quality"]

#: Logistic weights: detector score, log(flip disagreement), intercept (``scripts/fit_quality.py``).
WEIGHTS = (11.247, -1.452, -9.551)

#: Median flip disagreement of the labelled set's real faces at the default ``--min-score``
#: (fraction of the crop side); used when flip averaging is off.
FLIP_MEDIAN_FACE = 0.0100

_FLOOR = 1e-4  # disagreements below 0.01 % of the crop side count as that


def face_quality(score: float, flip_gap: float | None) -> float:
    """Estimated probability that a detection is a real face.

    ``q = 1 / (1 + exp(-(w0 * score + w1 * log(max(flip_gap, 1e-4)) + b)))`` with
    :data:`WEIGHTS`. Without flip averaging (``flip_gap`` ``None``) the flip term takes
    :data:`FLIP_MEDIAN_FACE`, so ``q`` then ranks faces by the detector score alone.

    Args:
        score: detector score in [0, 1].
        flip_gap: the flip disagreement (mean 2D distance between the direct and mirrored-back
            68 landmarks, as a fraction of the crop side; >= 0), or ``None``.

    Returns:
        float in [0, 1] (0.5 = as likely a face as not, on the labelled set's mix).

    Raises:
        ValueError: ``score`` or ``flip_gap`` is not a finite number.
    """
    flip = FLIP_MEDIAN_FACE if flip_gap is None else float(flip_gap)
    s = float(score)
    if not (math.isfinite(s) and math.isfinite(flip)):
        raise ValueError(f"score and flip_gap must be finite, got {score}, {flip_gap}")
    w_s, w_f, b = WEIGHTS
    z = w_s * s + w_f * math.log(max(flip, _FLOOR)) + b
    return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0
