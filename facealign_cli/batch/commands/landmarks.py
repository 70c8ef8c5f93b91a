"""``landmarks``: every regressed value of each face (:mod:`.json_docs` for the files); a video
goes through :class:`~facealign_cli.core.tracking.VideoAligner`."""

from __future__ import annotations

from facealign_cli.batch.commands.json_docs import JsonCommand


class Landmarks(JsonCommand):
    """``<out>/<key>.json`` = ``{path, width, height, params_info, faces: [Face.to_dict()]}``
    (per face: box, score, keypoints, roi_box, landmarks_2d (68x2), landmarks_3d (68x3), pose,
    rotation (3x3), camera scale and translation, the 62 params and their crop;
    ``params_info``, once per document: what the params refer to,
    :data:`facealign_cli.core.face.PARAMS_INFO`; ``pose_convention``, once per document: the
    convention of the pose angles)."""

    name = "landmarks"
    writes_pose = True

    def header(self):
        from facealign_cli.core.face import PARAMS_INFO

        return {"params_info": PARAMS_INFO}
