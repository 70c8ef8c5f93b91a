"""Face quality: how much a detection looks like a real face, from what the pipeline computes.

With flip averaging (the default) the regressor sees each roi crop twice, as is and mirrored. On a
real face the mirrored prediction, mapped back, lands on (nearly) the same landmarks; on a jacket,
a lamp or a hand the two predictions are unrelated guesses and disagree several times more. The
**flip disagreement**
(:attr:`facealign_cli.core.regression.CropFit.flip_disagreement`, of the last pass) is therefore
free, and :func:`face_quality` combines it with the detector score in a logistic model.

Fit (``scripts/fit_quality.py``; never AFLW2000-3D): the detections of the default detector
policy and of its 0.4-threshold variant on the 185 AFW photos and the 870 300-W HELEN training
crops (labelled face / not face in ``benchmarks/data/detections_labelled.csv``), each fitted by
the default pipeline (the shipped weights, the default test-time settings) as ``facealign``
does; logistic regression of the label on the detector score and log(flip disagreement).
The script also gives the ROC AUC of held-out predictions (5-fold, grouped by photo) against the
detector score alone, of the other cue tried (the agreement of the 6 BlazeFace keypoints with
the fitted landmarks, weaker alone and adding nothing to the pair), and, per threshold, the
faces and false detections kept on the AFW photos and the HELEN crops.

Measured figures (the rates at :data:`DEFAULT_MIN_QUALITY`, the AUCs, the weights and
detector they were measured with, the command and the date): the ``quality`` section of
``facealign_cli/data/figures.json``, shown in ``benchmarks/README.md`` ("Measured figures") and
cited by ``--min-quality``'s help, the README and ``docs/batch.md``.

Refit (after a new regressor or detector policy: the flip disagreement depends on both)::

    PYTHONPATH=$PWD python scripts/fit_quality.py --weights NEW.pth --policy v2 --write-figures

then paste its ``WEIGHTS`` / ``FLIP_MEDIAN_FACE`` line here (``tests/test_figures.py`` checks
that they equal the file's); ``--write-figures`` rewrites the figures file and the documents'
generated spans. A detection not yet in the labelled set stops it: add it with
``scripts/build_detection_set.py add`` first.
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
