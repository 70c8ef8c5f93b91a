"""``--min-quality`` and the ``quality`` field of the outputs (issue 20), with the fake model
(its two faces per image have quality 0.9 and 0.5, :mod:`fakes`); every run has one failed
image (exit code 1), ``bad.jpg``."""

from __future__ import annotations

import csv
import json

from cli_helpers import invoke  # noqa: E402


def test_min_quality_drops_faces_and_quality_is_written(fake_model, photos, tmp_path):
    out = tmp_path / "o"
    assert invoke(["landmarks", photos, "--out", out]).exit_code == 1
    doc = json.loads((out / "a.json").read_text())
    assert [f["quality"] for f in doc["faces"]] == [0.9, 0.5]  # the default 0.5 keeps both
    settings = json.loads((out / ".facealign/settings/landmarks.json").read_text())
    assert settings["settings"]["min_quality"] == 0.5
    # a stricter threshold is a new fingerprint (not skipped) and drops the 0.5 face
    assert invoke(["landmarks", photos, "--out", out, "--min-quality", "0.7"]).exit_code == 1
    doc = json.loads((out / "a.json").read_text())
    assert [f["quality"] for f in doc["faces"]] == [0.9]
    assert invoke(["landmarks", photos, "--out", out, "--min-quality", "2"]).exit_code == 2


def test_quality_in_pose_csv_and_ndjson(fake_model, photos, tmp_path):
    out = tmp_path / "p"
    assert invoke(["pose", photos, "--out", out, "--min-quality", "0.6"]).exit_code == 1
    with open(out / "pose.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [float(r["quality"]) for r in rows] == [0.9, 0.9]  # one face per photo kept
    r = invoke(["pose", photos, "--out", "-"])
    recs = [json.loads(ln) for ln in r.output.splitlines() if ln.startswith("{")]
    assert sorted(f["quality"] for rec in recs for f in rec["faces"]) == [0.5, 0.5, 0.9, 0.9]
