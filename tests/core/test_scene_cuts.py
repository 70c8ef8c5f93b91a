"""Hard cuts (issue 24: track ids carried across a cut to another person): the cut detector on
real photos (a cut between two photos, none when a photo moves), and the tracks that end at a
cut (the command line on a two-shot video: ``tests/cli/test_cli_video_options.py``)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from test_tracking import FakeAligner, face, ids
from videotools import shot_frames

from facealign_cli.core.scene_cuts import CUT_THRESHOLD, CutDetector
from facealign_cli.core.smoothing import FaceSmoother
from facealign_cli.core.tracking import FaceTracker, VideoAligner


def test_cuts_between_real_photos_and_none_when_a_photo_moves(afw_photos):
    a, b = (cv2.imread(str(p)) for p in afw_photos[:2])
    b = cv2.resize(b, (a.shape[1], a.shape[0]))
    det = CutDetector()
    h, w = a.shape[:2]
    for i in range(6):  # a pan with a slight turn and zoom: no cut
        M = cv2.getRotationMatrix2D((w / 2, h / 2), i - 3, 1 + 0.01 * i)
        M[:, 2] += (4 * i, 2 * i)
        assert not det(cv2.warpAffine(a, M, (w, h), borderMode=cv2.BORDER_REFLECT)), i
    assert det(b) and det.last_change >= CUT_THRESHOLD
    assert not det(b)
    assert not CutDetector(None)(a) and not CutDetector(None)(b)
    with pytest.raises(ValueError):
        CutDetector(0.0)


def test_tracker_new_scene_ends_every_track():
    tr = FaceTracker()
    assert ids(tr.update([face([0, 0, 40, 40]), face([100, 0, 140, 40])])) == [0, 1]
    tr.new_scene()
    assert ids(tr.update([face([0, 0, 40, 40])])) == [2]  # same place, new shot: new id
    assert sorted(tr.ended) == [0, 1] and list(tr.tracks) == [2]
    assert ids(tr.update([face([2, 0, 42, 40])])) == [2] and tr.ended == []


@pytest.mark.parametrize("detect_every", [1, 3])
def test_video_aligner_starts_new_tracks_at_a_cut(detect_every):
    """The face stands in the same place in both shots: the gate would carry its track across
    the cut; the cut ends it (the detector runs on the cut frame even between detector
    frames), and the smoother starts the new track from its raw landmarks."""
    frames = shot_frames((200, 120, 40), 4, 0) + shot_frames((40, 90, 210), 4, 1)
    for f in frames:
        f[0, 0, 0] = 0  # FakeAligner's offset: the face does not move
    fa = FakeAligner([[100, 60, 180, 140]])
    va = VideoAligner(fa, detect_every=detect_every, smoother=FaceSmoother())
    seen = []
    for i, img in enumerate(frames):
        faces = va.process(img, i / 25)
        seen.append(ids(faces))
        if i == 4:
            assert not faces[0].carried
            np.testing.assert_array_equal(faces[0].landmarks_3d, faces[0].raw_landmarks_3d)
    assert seen == [[0]] * 4 + [[1]] * 4
    assert va.scene_cuts == 1
    assert fa.detect_calls == (8 if detect_every == 1 else 4)  # frames 0, 3, 4 (the cut), 6
    va = VideoAligner(FakeAligner([[100, 60, 180, 140]]), cut_threshold=None)
    assert [ids(va.process(img, i / 25)) for i, img in enumerate(frames)] == [[0]] * 8
