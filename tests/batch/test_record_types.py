"""The typed records (``facealign_cli.batch.record_types``): done records written by the code
before they were typed are read, resumed from and written back byte for byte; pose rows and
frame counts keep their JSON; what does not validate is redone, never crashes the run."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from fakes import FakeFactory, broken_factory  # noqa: E402
from videotools import write_bar_clip  # noqa: E402

from facealign_cli.batch.commands import POSE_COLUMNS  # noqa: E402
from facealign_cli.batch.options import RunOptions  # noqa: E402
from facealign_cli.batch.record_types import DoneRecord, FrameCounts, PoseRow  # noqa: E402
from facealign_cli.batch.run_db import RunDB  # noqa: E402
from facealign_cli.batch.runner import run_batch  # noqa: E402
from facealign_cli.io.inputs import collect_inputs  # noqa: E402

# Done records as the code before typed records (commit a391b23) wrote them, run with the
# fake model (tests/fakes.py) on the inputs of _inputs(); {IN} is the input folder.
OLD_POSE_PHOTO = (
    '{"fingerprint":{"command":"pose","max_faces":0,"weights":"default","roi_crop_scale":0.88,'
    '"second_pass":true,"first_pass_flip":false,"second_pass_min_change":0.04},'
    '"path":"{IN}/a.jpg","n_faces":2,"outputs":["pose.csv"],"width":80,"height":60,"rows":['
    '["{IN}/a.jpg",0,10.0,-5.0,2.5,20.0,15.0,60.0,45.0,0.9,0.994927,0.045343,-0.086104,'
    '-0.025512,null,null,null,0.9],'
    '["{IN}/a.jpg",1,10.0,-5.0,2.5,0.0,0.0,16.0,12.0,0.5,0.994927,0.045343,-0.086104,'
    '-0.025512,null,null,null,0.5]]}')
OLD_POSE_VIDEO = (
    '{"fingerprint":{"command":"pose","max_faces":0,"weights":"default","roi_crop_scale":0.88,'
    '"second_pass":true,"first_pass_flip":false,"second_pass_min_change":0.04,"video":'
    '{"frame_step":1,"max_fps":null,"detect_every":1,"smooth":false}},'
    '"path":"{IN}/clip.avi","n_faces":2,"outputs":["pose.csv"],"width":64,"height":48,'
    '"video":{"frames":3,"frames_failed":0,"frames_decoded":3,"frames_declared":3,'
    '"frames_lost":0,"complete":true,"fps":25.0,"width":64,"height":48},"rows":['
    + ",".join(f'["{{IN}}/clip.avi",{k},10.0,-5.0,2.5,{box},{score},0.994927,0.045343,'
               f'-0.086104,-0.025512,{i},{t},{k},{score}]'
               for i, t in enumerate(("0.0", "0.04", "0.08"))
               for k, box, score in ((0, "16.0,12.0,48.0,36.0", "0.9"),
                                     (1, "0.0,0.0,12.8,9.6", "0.5")))
    + ']}')
OLD_RENDER_VIDEO = (
    '{"fingerprint":{"command":"render","max_faces":0,"weights":"default",'
    '"roi_crop_scale":0.88,"second_pass":true,"first_pass_flip":false,'
    '"second_pass_min_change":0.04,"draw":["box","landmarks","pose"],"sheet":true,"video":'
    '{"frame_step":1,"max_fps":null,"detect_every":1,"smooth":false,"codec":"h264"}},'
    '"path":"{IN}/clip.avi","n_faces":2,"outputs":["clip.mp4",".thumbs/clip.jpg"],'
    '"width":64,"height":48,"video":{"frames":3,"frames_failed":0,"frames_decoded":3,'
    '"frames_declared":3,"frames_lost":0,"complete":true,"fps":25.0,"width":64,"height":48,'
    '"codec":"h264"},"faces":[{"score":0.9,"quality":0.9,"pose":[10.0,-5.0,2.5]},'
    '{"score":0.5,"quality":0.5,"pose":[10.0,-5.0,2.5]}]}')
# a row recorded before the video and quality columns existed (14 values)
OLD_SHORT_ROW = ["{IN}/gone.jpg", 0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 0.8, 1.0, 0.0, 0.0, 0.0]


def _dumps(doc) -> str:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))  # as records.dumps


@pytest.mark.parametrize("text", [OLD_POSE_PHOTO, OLD_POSE_VIDEO, OLD_RENDER_VIDEO])
def test_an_old_done_record_is_read_typed_and_written_back_identically(text):
    rec = DoneRecord.from_json(json.loads(text))
    assert _dumps(rec.to_json()) == text
    if rec.rows is not None:
        assert all(isinstance(r, PoseRow) for r in rec.rows)
        assert rec.rows[0].path == rec.path and rec.rows[0].quality == 0.9
    if rec.video is not None:
        assert rec.video.frames == 3 and rec.video.complete is True
        assert rec.video.codec == ("h264" if text is OLD_RENDER_VIDEO else None)


def _inputs(root: Path) -> Path:
    src = root / "in"
    src.mkdir(parents=True)
    img = np.full((60, 80, 3), 100, np.uint8)
    img[20:, :40] = 160
    cv2.imwrite(str(src / "a.jpg"), img)
    write_bar_clip(src / "clip.avi", 3)
    return src


def _pose_run(src: Path, out: Path, factory=None, **settings):
    items = collect_inputs([str(src)], videos=True, skip_dirs=[out])
    opts = RunOptions.make("pose", str(out), aligner_factory=factory or FakeFactory(),
                           progress="never", **settings)
    return run_batch(items, opts, stderr=io.StringIO())


def test_a_run_resumes_from_done_records_the_old_code_wrote(tmp_path):
    """Old records (a photo, a video, and one of an input no longer given whose row has only
    the 14 columns of the oldest ``pose.csv``): the photo and the video are skipped as done
    (nothing is run: a model that cannot be built would stop the run), their manifest lines
    keep the old frame counts, and ``pose.csv`` is rebuilt from the old rows, the short one
    padded with empty columns, the convention column filled with the run's."""
    src = _inputs(tmp_path)
    out = tmp_path / "out"
    done = out / ".facealign" / "done" / "pose"
    done.mkdir(parents=True)
    (done / "a.json").write_text(OLD_POSE_PHOTO.replace("{IN}", str(src)))
    (done / "clip.json").write_text(OLD_POSE_VIDEO.replace("{IN}", str(src)))
    gone = json.loads(OLD_POSE_PHOTO.replace("{IN}", str(src)))
    gone["path"] = str(src / "gone.jpg")
    gone["rows"] = [[str(src / "gone.jpg"), *OLD_SHORT_ROW[1:]]]
    (done / "gone.json").write_text(json.dumps(gone))

    # records from before --pose-convention hold AFLW2000-3D's angles: a run of that
    # convention reuses them (the default, yaw-first, redoes them: tests/cli/
    # test_pose_convention.py)
    s = _pose_run(src, out, broken_factory, pose_convention="aflw2000")  # nothing is run
    assert (s.exit_code, s.skipped, s.ok) == (0, 2, 0)
    man = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert [(m["status"], m["error"], m["n_faces"]) for m in man] == [("skipped", None, 2)] * 2
    assert man[1]["video"] == json.loads(OLD_POSE_VIDEO)["video"]
    rows = list(csv.reader(io.StringIO((out / "pose.csv").read_text("utf-8"))))
    assert tuple(rows[0]) == POSE_COLUMNS
    old_rows = [*json.loads(OLD_POSE_PHOTO)["rows"], *json.loads(OLD_POSE_VIDEO)["rows"]]
    expected = [["" if v is None else str(v) for v in r] + ["aflw2000"] for r in old_rows]
    expected = [[r[0].replace("{IN}", str(src)), *r[1:]] for r in expected]
    short = [str(src / "gone.jpg"), *map(str, OLD_SHORT_ROW[1:])] + [""] * 4 + ["aflw2000"]
    assert rows[1:] == expected + [short]

    # the same run from scratch writes the same table (the old rows were this code's own)
    fresh = tmp_path / "fresh"
    assert _pose_run(src, fresh, pose_convention="aflw2000").exit_code == 0
    fresh_rows = list(csv.reader(io.StringIO((fresh / "pose.csv").read_text("utf-8"))))
    assert fresh_rows == rows[:-1]


@pytest.mark.parametrize("change", [
    lambda d: d.pop("outputs"),
    lambda d: d.update(fingerprint="pose"),
    lambda d: d.update(outputs=["pose.csv", 3]),
    lambda d: d.update(n_faces="2"),
    lambda d: d.update(rows=[["x.jpg", 0, 1.0]]),                  # too short
    lambda d: d.update(rows=[[7, *OLD_SHORT_ROW[1:]]]),            # a path that is a number
    lambda d: d.update(rows=[[*OLD_SHORT_ROW[:2], "ten", *OLD_SHORT_ROW[3:]]]),
    lambda d: d.update(video={"frames": "3"}),
    lambda d: d.update(video=[3]),
    lambda d: d.update(faces=["face"]),
])
def test_a_record_that_does_not_validate_is_redone(tmp_path, change):
    """A damaged or hand-edited done record raises ValueError in ``from_json``; the run then
    redoes that item (status ok) instead of crashing or trusting it."""
    doc = json.loads(OLD_POSE_PHOTO)
    change(doc)
    with pytest.raises(ValueError):
        DoneRecord.from_json(doc)
    src = _inputs(tmp_path)
    out = tmp_path / "out"
    done = out / ".facealign" / "done" / "pose"
    done.mkdir(parents=True)
    (done / "a.json").write_text(json.dumps(doc).replace("{IN}", str(src)))
    s = _pose_run(src, out)
    assert (s.exit_code, s.ok) == (0, 2)
    assert not done.exists()  # the records folder was imported into the run state
    db = RunDB(out, readonly=True)
    row = db.lookup("pose", ["a"])["a"]
    db.close()
    assert (row.status, row.n_faces, len(row.rows)) == ("ok", 2, 2)


def test_frame_counts_keep_their_json():
    """A finished video's counts and a failed one's (no ``frames_lost``, ``fps``, size) as
    the manifest has always written them; unknown keys of a later version are ignored."""
    full = {"frames": 3, "frames_failed": 1, "frames_decoded": 3, "frames_declared": 4,
            "frames_lost": 1, "complete": True, "fps": 25.0, "width": 64, "height": 48}
    failed = {"frames": 0, "frames_failed": 0, "frames_decoded": 0, "frames_declared": 9,
              "complete": False}
    for doc in (full, failed, {**full, "codec": "mp4v"}):
        assert list(FrameCounts.from_json(doc).to_json().items()) == list(doc.items())
    assert FrameCounts.from_json({**failed, "future": 1}).to_json() == failed
    assert FrameCounts.of_reader(None).to_json() == {"frames": 0, "frames_failed": 0,
                                                     "frames_decoded": 0,
                                                     "frames_declared": 0, "complete": False}


def test_pose_rows_are_named_columns():
    row = PoseRow.from_json(OLD_SHORT_ROW)
    assert row.frame is row.time is row.track is row.quality is None
    assert (row.yaw, row.pitch, row.roll, row.score) == (1.0, 2.0, 3.0, 0.8)
    assert row._replace(frame=4).to_json() == [*OLD_SHORT_ROW, 4, None, None, None]
    assert list(row.columns()) == list(POSE_COLUMNS[1:])
