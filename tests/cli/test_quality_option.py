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


def test_no_flip_switches_the_quality_filter_off_and_says_so(fake_model, photos, tmp_path):
    """Issue 24: ``--no-flip`` silently switched the quality filter off (the quality's evidence
    is the mirrored pass). Now it is off by definition, with a warning and
    ``quality_filter: false`` in the settings file."""
    out = tmp_path / "o"
    r = invoke(["landmarks", photos, "--out", out, "--min-quality", "0.7"])
    assert "quality filter" not in r.stderr
    settings = json.loads((out / ".facealign/settings/landmarks.json").read_text())["settings"]
    assert settings["quality_filter"] is True and settings["flip"] is True
    assert [f["score"] for f in json.loads((out / "a.json").read_text())["faces"]] == [0.9]

    r = invoke(["landmarks", photos, "--out", out, "--min-quality", "0.7", "--no-flip"])
    assert r.exit_code == 1, r.output
    warning = [ln for ln in r.stderr.splitlines() if "quality filter" in ln]
    assert len(warning) == 1 and "--no-flip" in warning[0] and "0.7" in warning[0]
    settings = json.loads((out / ".facealign/settings/landmarks.json").read_text())["settings"]
    assert settings["quality_filter"] is False and settings["flip"] is False
    # every face the detector keeps is written (the 0.5 face is no longer dropped)
    assert [f["score"] for f in json.loads((out / "a.json").read_text())["faces"]] == [0.9, 0.5]

    # no warning where the filter means nothing: detect, --min-quality 0, --quiet
    for args in (["detect", photos, "--out", tmp_path / "d", "--no-flip"],
                 ["pose", photos, "--out", tmp_path / "p", "--no-flip", "--min-quality", "0"],
                 ["pose", photos, "--out", tmp_path / "q", "--no-flip", "-q"]):
        r = invoke(args)
        assert r.exit_code == 1 and "quality filter" not in r.stderr, args
    settings = json.loads((tmp_path / "p/.facealign/settings/pose.json").read_text())
    assert settings["settings"]["quality_filter"] is False
    assert "quality_filter" not in json.loads(
        (tmp_path / "d/.facealign/settings/detect.json").read_text())["settings"]
