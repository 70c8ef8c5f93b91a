"""facealign_cli.evaluation.datasets: the AFLW2000-3D loader (both layouts), the 68-point
folder loader and the ``.pts`` reader / writer. Data tests read ``../shared`` and skip cleanly
when it is absent."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from facealign_cli.evaluation import datasets as D


def test_select_indices_spread():
    np.testing.assert_array_equal(D.select_indices(10, 0), np.arange(10))
    np.testing.assert_array_equal(D.select_indices(10, 3), [0, 4, 9])  # 4.5 rounds to even
    np.testing.assert_array_equal(D.select_indices(5, 50), np.arange(5))


def test_read_dataset_image_error(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(D.DatasetLayoutError, match="cannot read image"):
        D.read_dataset_image(tmp_path / "bad.jpg")


def test_pts_round_trip_and_errors(tmp_path):
    pts = np.arange(136, dtype=np.float64).reshape(68, 2) / 3
    D.write_pts(tmp_path / "a.pts", pts)
    np.testing.assert_allclose(D.read_pts(tmp_path / "a.pts"), pts, atol=1e-3)
    (tmp_path / "b.pts").write_text("version: 1\nn_points: 68\n{\n1 2\n}\n")
    with pytest.raises(D.DatasetLayoutError, match="n_points is 68 but 1"):
        D.read_pts(tmp_path / "b.pts")
    (tmp_path / "c.pts").write_text("hello\n")
    with pytest.raises(D.DatasetLayoutError, match="not a .pts file"):
        D.read_pts(tmp_path / "c.pts")


def test_aflw2000_protocol_layout(aflw2000_dir):
    full = D.open_aflw2000(aflw2000_dir)
    assert len(full) == full.n_total == 2000 and full.layout == "3ddfa-protocol"
    assert full.pts68.shape == (2000, 68, 3) and full.roi_boxes.shape == (2000, 4)
    assert full.pose.shape == (2000, 3) and set(full.yaw_splits) == {"fit", "aflw"}
    # the bin sizes of the published protocol (README of the data folder)
    from facealign_cli.evaluation.metrics import yaw_bin_index

    for split, sizes in (("fit", [1312, 383, 305]), ("aflw", [1306, 462, 232])):
        assert np.bincount(yaw_bin_index(full.yaw_splits[split])).tolist() == sizes
    # fit yaw is Pose_Para yaw; 1,969 faces have all angles within +-99 degrees
    np.testing.assert_allclose(full.yaw_splits["fit"], full.pose[:, 0], atol=1e-3)
    assert int((np.abs(full.pose) <= 99).all(axis=1).sum()) == 1969
    sub = D.open_aflw2000(aflw2000_dir, limit=7)
    np.testing.assert_array_equal(sub.indices, D.select_indices(2000, 7))
    assert sub.names == [full.names[i] for i in sub.indices]
    np.testing.assert_array_equal(sub.pts68, full.pts68[sub.indices])
    assert sub.read_image(0).shape == (450, 450, 3)
    out = sub.pts68_output_frame()
    np.testing.assert_array_equal(out[..., 2], -sub.pts68[..., 2])


def test_aflw2000_official_layout(aflw2000_dir, tmp_path):
    data = D.open_aflw2000(aflw2000_dir, limit=6)
    for n in data.names:
        for suf in (".jpg", ".mat"):
            (tmp_path / (Path(n).stem + suf)).symlink_to(aflw2000_dir / (Path(n).stem + suf))
    off = D.open_aflw2000(tmp_path)
    assert off.layout == "official" and list(off.yaw_splits) == ["fit"]
    assert sorted(off.names) == sorted(data.names)
    assert "roi_box_from_landmarks" in off.roi_source
    order = [data.names.index(n) for n in off.names]
    np.testing.assert_allclose(off.roi_boxes, data.roi_boxes[order], atol=1.5)
    np.testing.assert_allclose(off.yaw_splits["fit"], data.yaw_splits["fit"][order], atol=1e-3)
    np.testing.assert_allclose(off.pts68, data.pts68[order], atol=1e-3)
    np.testing.assert_allclose(off.pose, data.pose[order])


def test_aflw2000_layout_errors(tmp_path):
    with pytest.raises(D.DatasetLayoutError, match="is not a folder"):
        D.open_aflw2000(tmp_path / "absent")
    with pytest.raises(D.DatasetLayoutError, match="no AFLW2000-3D files"):
        D.open_aflw2000(tmp_path)
    (tmp_path / "image00002.jpg").write_bytes(b"x")
    (tmp_path / "image00004.jpg").write_bytes(b"x")
    (tmp_path / "image00004.mat").write_bytes(b"x")
    with pytest.raises(D.DatasetLayoutError, match="1 .jpg without .mat: image00002.jpg"):
        D.open_aflw2000(tmp_path)


def test_landmarks68_reader_on_real_pts(tmp_path, w300_afw_dir):
    z = np.load(w300_afw_dir / "labels.npz")
    names, pts = list(z["names"][:3]), z["pts68"][:3].astype(np.float64)
    for n, p in zip(names, pts):
        (tmp_path / n).symlink_to(w300_afw_dir / "images" / n)
        D.write_pts(tmp_path / (Path(n).stem + ".pts"), p + 1.0)  # 300-W files are 1-based
    # 300-W multi-face naming: photo_1.pts + photo_2.pts belong to photo.jpg
    (tmp_path / "photo.jpg").symlink_to(w300_afw_dir / "images" / names[0])
    D.write_pts(tmp_path / "photo_1.pts", pts[0] + 1.0)
    D.write_pts(tmp_path / "photo_2.pts", pts[1] + 1.0)
    items = D.open_landmarks68(tmp_path)
    by_name = {it.path.name: it for it in items}
    assert len(items) == 4 and len(by_name["photo.jpg"].faces) == 2
    assert by_name["photo.jpg"].sources == ["photo_1.pts", "photo_2.pts"]
    for n, p in zip(names, pts):
        np.testing.assert_allclose(by_name[n].faces[0], p, atol=2e-3)
    zero = D.open_landmarks68(tmp_path, pts_one_based=False)
    np.testing.assert_allclose(zero[0].faces[0], items[0].faces[0] + 1.0, atol=1e-9)
    assert len(D.open_landmarks68(tmp_path, limit=2)) == 2
    (tmp_path / "orphan.pts").write_text((tmp_path / "photo_1.pts").read_text())
    with pytest.raises(D.DatasetLayoutError, match="orphan.pts"):
        D.open_landmarks68(tmp_path)


def test_landmarks68_reader_on_annotations_json(tmp_path, afw_annotated_dir):
    ann_file = afw_annotated_dir / "annotations.json"
    items = D.open_landmarks68(afw_annotated_dir, ann_file)
    assert len(items) == 185 and sum(len(it.faces) for it in items) == 337
    assert all(f.shape == (68, 2) for it in items for f in it.faces)
    # the same form, written by hand, for two photos of which one is absent
    ann = json.loads(ann_file.read_text())["photos"]
    stem = sorted(ann)[0]
    (tmp_path / f"{stem}.jpg").symlink_to(afw_annotated_dir / f"{stem}.jpg")
    (tmp_path / "a.json").write_text(json.dumps({"photos": {stem: ann[stem]}}))
    one = D.open_landmarks68(tmp_path, tmp_path / "a.json")
    np.testing.assert_allclose(one[0].faces[0], np.asarray(ann[stem][0]))
    assert one[0].sources[0] == f"a.json:{stem}#0"
    (tmp_path / "b.json").write_text(json.dumps({"photos": {stem: ann[stem], "nope": []}}))
    with pytest.raises(D.DatasetLayoutError, match="no image"):
        D.open_landmarks68(tmp_path, tmp_path / "b.json")
    (tmp_path / "c.json").write_text(json.dumps({"faces": []}))
    with pytest.raises(D.DatasetLayoutError, match="not an annotations file"):
        D.open_landmarks68(tmp_path, tmp_path / "c.json")


@pytest.mark.parametrize("point", ["12.5", "abc", float("nan"), float("inf"), -float("inf"),
                                   True, None, [1.0], [1.0, 2.0, 3.0], {"x": 1, "y": 2},
                                   pytest.param(10 ** 400, id="int-beyond-float")])
def test_annotations_json_with_a_bad_coordinate_names_the_file_photo_and_face(
        tmp_path, afw_annotated_dir, point):
    """A corrupt label (a string, NaN or an infinity as a coordinate, a point that is not
    [x, y]) is a layout error naming the file, the photo and the face: never a traceback, and
    never a face scored as a detector miss."""
    ann = json.loads((afw_annotated_dir / "annotations.json").read_text())["photos"]
    stem = next(s for s in sorted(ann) if len(ann[s]) >= 2)
    (tmp_path / f"{stem}.jpg").symlink_to(afw_annotated_dir / f"{stem}.jpg")
    faces = json.loads(json.dumps(ann[stem]))
    if isinstance(point, list | dict):
        faces[1][17] = point
    else:
        faces[1][17][0] = point
    (tmp_path / "bad.json").write_text(json.dumps({"photos": {stem: faces}}))
    with pytest.raises(D.DatasetLayoutError) as err:
        D.open_landmarks68(tmp_path, tmp_path / "bad.json")
    msg = str(err.value)
    assert "bad.json" in msg and repr(stem) in msg and "face 1" in msg and "point 17" in msg


@pytest.mark.parametrize("face", [[], [[1.0, 2.0]] * 67, [[1.0, 2.0]] * 69, "68 points",
                                  {"x": []}, 3.5])
def test_annotations_json_with_a_face_of_the_wrong_form_is_refused(tmp_path, afw_annotated_dir,
                                                                   face):
    ann = json.loads((afw_annotated_dir / "annotations.json").read_text())["photos"]
    stem = sorted(ann)[0]
    (tmp_path / f"{stem}.jpg").symlink_to(afw_annotated_dir / f"{stem}.jpg")
    (tmp_path / "bad.json").write_text(json.dumps({"photos": {stem: [ann[stem][0], face]}}))
    with pytest.raises(D.DatasetLayoutError, match=f"bad.json: photo '{stem}', face 1"):
        D.open_landmarks68(tmp_path, tmp_path / "bad.json")
    (tmp_path / "bad.json").write_text(json.dumps({"photos": {stem: ann[stem][0][0]}}))
    with pytest.raises(D.DatasetLayoutError, match=f"photo '{stem}'"):  # [x, y], not faces
        D.open_landmarks68(tmp_path, tmp_path / "bad.json")
    (tmp_path / "bad.json").write_text(json.dumps({"photos": {stem: "x"}}))
    with pytest.raises(D.DatasetLayoutError, match=f"photo '{stem}': want a list of faces"):
        D.open_landmarks68(tmp_path, tmp_path / "bad.json")


@pytest.mark.parametrize("line", ["nan 4.0", "3.0 inf", "-inf 2", "abc 4.0", "3.0",
                                  "3.0 4.0 5.0", "3,0 4,0"])
def test_pts_file_with_a_bad_number_names_the_file_and_point(tmp_path, line):
    pts = np.arange(136, dtype=np.float64).reshape(68, 2) + 1.0
    img = np.full((200, 200, 3), 128, np.uint8)
    import cv2

    cv2.imwrite(str(tmp_path / "photo.jpg"), img)
    D.write_pts(tmp_path / "photo_2.pts", pts)
    assert len(D.open_landmarks68(tmp_path)[0].faces) == 1
    text = (tmp_path / "photo_2.pts").read_text().splitlines()
    text[3 + 40] = line  # header lines: version, n_points, {
    (tmp_path / "photo_2.pts").write_text("\n".join(text) + "\n")
    with pytest.raises(D.DatasetLayoutError, match="photo_2.pts: point 40 is"):
        D.read_pts(tmp_path / "photo_2.pts")
    with pytest.raises(D.DatasetLayoutError, match=r"photo_2.pts: point 40 is .*\(face 0 of "
                                                   r"photo.jpg\)"):
        D.open_landmarks68(tmp_path)
