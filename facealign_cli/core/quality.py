"""Face quality: how much a detection looks like a real face, from what the pipeline computes.

With flip averaging (the default) the regressor sees each roi crop twice, as is and mirrored. On a
real face the mirrored prediction, mapped back, lands on (nearly) the same landmarks; on a jacket,
a lamp or a hand the two predictions are unrelated guesses and disagree by several times more
(median over the labelled set: 0.9 % of the crop side for faces, 7.1 % for false detections).
The **flip disagreement** (:attr:`facealign_cli.core.regression.CropFit.flip_disagreement`) is
therefore free, and :func:`face_quality` combines it with the detector score in a logistic model.

Fit (``scripts/fit_quality.py``, on ``benchmarks/data/detections_labelled.csv``: 1723 detections
of the default detector policy and of a 0.4-threshold variant on the 185 AFW photos and the 870
300-W HELEN training crops, 1361 faces and 362 false; never AFLW2000-3D): logistic regression of
the label on the detector score and log(flip disagreement). ROC AUC of held-out predictions
(5-fold, grouped by photo) against the detector score alone: all detections 0.987 vs 0.981, AFW
detections of the default policy 0.979 vs 0.961. The other cue tried, the agreement of the 6
BlazeFace keypoints with the fitted landmarks, is weaker alone (AUC 0.903 on the AFW default
detections) and adds nothing to the pair (0.979).

At the default threshold :data:`DEFAULT_MIN_QUALITY` = 0.5 (held-out predictions, default policy):
AFW photos, 418 of 431 faces kept (97.0 %; with the full fit, 2 of the 333 annotated faces are
dropped) and 16 of 47
false detections kept (34 %, so 66 % dropped); HELEN crops, 884 of 890 faces kept (99.3 %), 0 of
5 false kept. The detector score at ``--min-score 0.7`` keeps 93.5 % of the AFW faces and 25.5 %
of the false ones.
"""

from __future__ import annotations

import math

from facealign_cli.defaults import DEFAULT_MIN_QUALITY

__all__ = ["DEFAULT_MIN_QUALITY", "FLIP_MEDIAN_FACE", "WEIGHTS", "face_quality"]

#: Logistic weights: detector score, log(flip disagreement), intercept (``scripts/fit_quality.py``).
WEIGHTS = (10.036, -2.332, -13.771)

#: Median flip disagreement of the labelled set's real faces (fraction of the crop side); used
#: when flip averaging is off.
FLIP_MEDIAN_FACE = 0.0089

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
