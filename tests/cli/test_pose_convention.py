"""``--pose-convention`` (issue 24, item 9): the convention of the angles is the run's choice,
written in every output that holds angles and in the settings file, and part of the resume
fingerprint. The fast fake model (``fake_model``) honours the option as the real aligner does;
the real model runs on a profile photo of the AFW sample (skipped without ../shared)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from cli_helpers import invoke, read_manifest
from scipy.spatial.transform import Rotation

from facealign_cli.core.geometry import rotation_from_pose


def _rows(out) -> list[dict]:
    with open(out / "pose.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _settings(out, command: str) -> dict:
    return json.loads((out / ".facealign" / "settings" / f"{command}.json").read_text())[
        "settings"]


def _check_quaternions(rows) -> None:
    """Each row's angles, composed in the row's convention, are its quaternion's rotation."""
    for row in rows:
        q = [float(row[k]) for k in ("qw", "qx", "qy", "qz")]
        R = Rotation.from_quat(q, scalar_first=True).as_matrix()
        want = rotation_from_pose([float(row[k]) for k in ("yaw", "pitch", "roll")],
                                  row["pose_convention"])
        np.testing.assert_allclose(R, want, atol=1e-3)


def test_pose_convention_is_written_and_redoes_the_images(fake_model, photos, tmp_path):
    out = tmp_path / "p"
    assert invoke(["pose", photos, "--out", out]).exit_code == 1  # (bad.jpg)
    rows = _rows(out)
    assert {r["pose_convention"] for r in rows} == {"yaw-first"} and len(rows) == 4
    assert _settings(out, "pose")["pose_convention"] == "yaw-first"
    _check_quaternions(rows)
    # the same convention: done; the other one: redone, and the whole table says so
    invoke(["pose", photos, "--out", out])
    assert [m["status"] for m in read_manifest(out)][:2] == ["skipped", "skipped"]
    invoke(["pose", photos, "--out", out, "--pose-convention", "aflw2000"])
    assert [m["status"] for m in read_manifest(out)][:2] == ["ok", "ok"]
    rows = _rows(out)
    assert {r["pose_convention"] for r in rows} == {"aflw2000"} and len(rows) == 4
    assert _settings(out, "pose")["pose_convention"] == "aflw2000"
    _check_quaternions(rows)
    invoke(["pose", photos, "--out", out, "--pose-convention", "aflw2000"])
    assert [m["status"] for m in read_manifest(out)][:2] == ["skipped", "skipped"]
    invoke(["pose", photos, "--out", out])
    assert [m["status"] for m in read_manifest(out)][:2] == ["ok", "ok"]
    r = invoke(["pose", photos, "--out", out, "--pose-convention", "euler"])
    assert r.exit_code == 2 and "--pose-convention" in r.output


def test_pose_convention_in_json_streams_and_sheet(fake_model, photos, tmp_path):
    for conv in ("yaw-first", "aflw2000"):
        r = invoke(["landmarks", photos / "a.jpg", "--out", "-", "--pose-convention", conv])
        assert r.exit_code == 0, r.output
        (doc,) = [json.loads(ln) for ln in r.stdout.splitlines()]
        assert doc["pose_convention"] == conv and "pose" in doc["faces"][0]
        r = invoke(["pose", photos / "a.jpg", "--out", "-", "--pose-convention", conv])
        (doc,) = [json.loads(ln) for ln in r.stdout.splitlines()]
        assert doc["pose_convention"] == conv
        assert {f["pose_convention"] for f in doc["faces"]} == {conv}
    out = tmp_path / "lm"
    invoke(["landmarks", photos / "a.jpg", "--out", out])
    assert json.loads((out / "a.json").read_text())["pose_convention"] == "yaw-first"
    assert _settings(out, "landmarks")["pose_convention"] == "yaw-first"
    # render: the sheet states the convention; without a sheet no angle is written
    out = tmp_path / "r"
    invoke(["render", photos / "a.jpg", "--out", out, "--sheet", "--pose-convention",
            "aflw2000"])
    page = (out / "index.html").read_text()
    assert "convention aflw2000 (R = Rx(-pitch) Ry(-yaw) Rz(-roll))" in page
    assert _settings(out, "render")["pose_convention"] == "aflw2000"
    invoke(["render", photos / "a.jpg", "--out", out, "--sheet"])
    assert read_manifest(out)[0]["status"] == "ok"  # redone: the sheet's angles change
    assert "convention yaw-first (R = Ry(-yaw) Rx(-pitch) Rz(-roll))" in \
        (out / "index.html").read_text()
    # commands without angles neither write nor depend on a convention
    for cmd in ("detect", "mesh"):
        out = tmp_path / cmd
        invoke([cmd, photos / "a.jpg", "--out", out])
        assert "pose_convention" not in _settings(out, cmd)
        assert invoke([cmd, photos / "a.jpg", "--out", out, "--pose-convention",
                       "aflw2000"]).exit_code == 2  # no such option
    assert "pose_convention" not in json.loads((tmp_path / "detect" / "a.json").read_text())


def test_render_without_sheet_is_not_redone(fake_model, photos, tmp_path):
    out = tmp_path / "r"
    invoke(["render", photos / "a.jpg", "--out", out])
    assert "pose_convention" not in _settings(out, "render")
    invoke(["render", photos / "a.jpg", "--out", out, "--pose-convention", "aflw2000"])
    assert read_manifest(out)[0]["status"] == "skipped"  # the overlays draw the rotation


def test_old_records_are_aflw2000(fake_model, photos, tmp_path):
    """Records written before the option existed (no ``pose_convention`` in the fingerprint,
    rows without the column) were AFLW2000-3D's: reused by ``--pose-convention aflw2000``
    with the column filled, redone by default."""
    from facealign_cli.batch.record_types import DoneRecord
    from facealign_cli.batch.run_db import RunDB
    from facealign_cli.io import records

    out = tmp_path / "p"
    invoke(["pose", photos, "--out", out, "--pose-convention", "aflw2000"])
    db = RunDB(out, readonly=True)
    rows = [r for r in db.iter_items("pose") if r.rows is not None]
    (doc,) = {d for (d,) in db.con.execute("SELECT doc FROM fingerprints WHERE digest = ?",
                                            (rows[0].fingerprint,))}
    db.close()
    # the run's settings as the done records of issue 23's time held them (weights by name)
    fp = {**json.loads(doc)["settings"], "weights": "default"}
    assert "pose_convention" not in fp
    for path in (out / ".facealign").glob("state.sqlite3*"):  # an --out of issue 23's time
        path.unlink()
    for r in rows:
        assert [x.pose_convention for x in r.rows] == ["aflw2000"] * 2
        old = DoneRecord(fp, r.path, r.n_faces, r.outputs, r.width, r.height,  # as written
                         rows=tuple(x._replace(pose_convention=None) for x in r.rows))  # < 24
        records.write_json(out / ".facealign" / "done" / "pose" / (r.key + ".json"),
                           old.to_json(), indent=None)
    assert len(rows) == 2
    invoke(["pose", photos, "--out", out, "--pose-convention", "aflw2000"])
    assert [m["status"] for m in read_manifest(out)][:2] == ["skipped", "skipped"]
    assert {r["pose_convention"] for r in _rows(out)} == {"aflw2000"}
    invoke(["pose", photos, "--out", out])
    assert [m["status"] for m in read_manifest(out)][:2] == ["ok", "ok"]


def test_real_profile_photo_pose_csv(afw_annotated_dir, real_weights, tmp_path):
    """The issue's photo: by default no profile (|yaw| > 60) row has |pitch| or |roll| > 45;
    with --pose-convention aflw2000 the same faces have AFLW2000-3D's angles, some of them
    above 45; both tables' angles give back their quaternions."""
    photo = afw_annotated_dir / "1587030290.jpg"
    if not photo.is_file():
        pytest.skip(f"{photo} not found")
    env = {"FACEALIGN_WEIGHTS": str(real_weights)}
    tables = {}
    for conv in ("yaw-first", "aflw2000"):
        out = tmp_path / conv
        r = invoke(["pose", photo, "--out", out, "--pose-convention", conv], env=env)
        assert r.exit_code == 0, r.output
        tables[conv] = _rows(out)
        _check_quaternions(tables[conv])
    yf, af = tables["yaw-first"], tables["aflw2000"]
    assert len(yf) == len(af) >= 2
    angles = {c: np.array([[float(r[k]) for k in ("yaw", "pitch", "roll")] for r in t])
              for c, t in tables.items()}
    profile = np.abs(angles["yaw-first"][:, 0]) > 60
    assert profile.sum() >= 2
    assert np.abs(angles["yaw-first"][profile, 1:]).max() <= 45
    assert (np.abs(angles["aflw2000"][profile, 1:]) > 45).any(axis=1).sum() >= 2
    for a, b in zip(yf, af):  # the same faces, the same rotations
        assert [a[k] for k in ("qw", "qx", "qy", "qz")] == [b[k] for k in ("qw", "qx", "qy",
                                                                          "qz")]
