"""``detect``: boxes, scores and keypoints, no regressor (:mod:`.json_docs` for the files).
A photo: ``<key>.json`` = ``{path, width, height, faces: [{box, score, keypoints}]}``; a video:
``<key>.jsonl``, the detector run on every processed frame (``--detect-every`` is for the
regressing commands), faces tracked by their boxes."""

from __future__ import annotations

from facealign_cli.batch.commands.base import require
from facealign_cli.batch.commands.json_docs import JsonCommand


class Detect(JsonCommand):
    """``<out>/<key>.json`` = ``{path, width, height, faces: [{box, score, keypoints}]}``."""

    name = "detect"
    uses_regressor = False

    def check(self, opts):
        k = opts.video.detect_every
        require(k == 1, "--detect-every",
                f"--detect-every {k}: detect runs the detector on every processed frame (it "
                "has no landmarks to carry faces with between detector frames); use "
                f"--frame-step {k} to process one frame in {k} (--detect-every is for "
                "landmarks, pose, mesh and render)")

    def faces_json(self, faces):
        return [{k: v for k, v in f.to_dict(with_landmarks=False).items()
                 if k in ("box", "score", "keypoints")} for f in faces]
