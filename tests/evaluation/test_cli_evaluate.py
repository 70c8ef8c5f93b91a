"""``facealign evaluate`` (facealign_cli.cli.evaluate) end to end: reports, two methods, the
detector protocol with a stand-in detector, flip settings and one-line errors. Data tests read
``../shared`` and skip cleanly when it is absent; nothing is written outside pytest's tmp
folders."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from facealign_cli.cli.evaluate import evaluate
from facealign_cli.evaluation import datasets as D
from facealign_cli.evaluation import protocols as P

REPO = Path(__file__).resolve().parents[2]


def test_cli_aflw2000_limit30_with_baseline(tmp_path, monkeypatch, aflw2000_dir,
                                            teacher_weights):
    monkeypatch.setenv("FACEALIGN_WEIGHTS", str(tmp_path / "absent.pth"))
    out = tmp_path / "r.json"
    args = ["aflw2000-3d", str(aflw2000_dir), "--baseline-3ddfa", str(teacher_weights),
            "--limit", "30", "--protocols", "gt-crops,occlusion", "--json", str(out),
            "--markdown", str(tmp_path / "r.md"), "--per-image", "--threads", "1"]
    try:
        import matplotlib  # noqa: F401
        args += ["--plot", str(tmp_path / "r.png")]
    except ImportError:
        pass
    res = CliRunner().invoke(evaluate, args)
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    g = doc["results"]["gt-crops"]["3ddfa-v2"]
    fit = g["nme_2d"]["splits"]["fit"]
    assert sum(fit["counts"]) == 30 and all(c > 0 for c in fit["counts"])
    assert 1.5 < fit["mean"] < 6.0
    assert 1.5 < g["nme_2d"]["splits"]["aflw"]["mean"] < 6.5
    assert g["nme_3d"]["splits"]["fit"]["mean"] > fit["mean"] - 0.5
    assert 0 < g["pose"]["mean"] < 10 and g["pose"]["count"] >= 28
    occ = doc["results"]["occlusion"]["3ddfa-v2"]
    assert occ["clean"]["mean"] == pytest.approx(fit["mean"], abs=1e-3)
    assert occ["column"]["increase"] > 0
    s = doc["settings"]
    assert s["crop_rule"] == P.CROP_RULE and s["layout"] == "3ddfa-protocol"
    assert s["yaw_bins_deg"] == [[0, 30], [30, 60], [60, 90]]
    assert len(doc["methods"]["3ddfa-v2"]["sha256"]) == 64
    assert len(doc["per_image"]["names"]) == 30
    assert "ground-truth crops" in res.output and "| 3DDFA-V2 |" in (tmp_path / "r.md").read_text()
    if "--plot" in args:
        assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_aflw2000_two_methods_and_detector_protocol(tmp_path, monkeypatch, aflw2000_dir,
                                                        teacher_weights, random_checkpoint,
                                                        box_detector):
    """Detector protocol with a stand-in detector (3 images missed on purpose) and a second
    (random) facealign checkpoint: misses are counted per bin, never dropped silently."""
    import facealign_cli.cli.evaluate as C

    data = D.open_aflw2000(aflw2000_dir, limit=12)
    imgs = [data.read_image(i) for i in range(len(data))]
    faces = {box_detector.key(im): [p] for im, p in zip(imgs, data.pts68)}
    miss = {box_detector.key(imgs[i]) for i in (0, 5, 11)}
    monkeypatch.setattr(C, "_load_detector",
                        lambda threads: (box_detector(faces, miss), {"name": "stand-in"}))
    out = tmp_path / "r.json"
    res = CliRunner().invoke(evaluate, [
        "aflw2000-3d", str(aflw2000_dir), "--weights", str(random_checkpoint),
        "--baseline-3ddfa", str(teacher_weights), "--limit", "12",
        "--protocols", "gt-crops,detector", "--json", str(out), "--iou-threshold", "0.1"])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    det = doc["results"]["detector"]
    assert det["detection"]["detected"] == 9 and det["detection"]["misses"] == 3
    assert sum(det["detection"]["misses_by_bin"]["fit"]) == 3
    t = det["3ddfa-v2"]["nme_2d"]
    assert t["n"] == 9 and t["misses"] == 3 and sum(t["splits"]["fit"]["misses"]) == 3
    assert t["all"] < 8.0  # the detector box reproduces the landmark roi box
    assert t["ced"]["fr_10"] >= 3 / 12 - 1e-9  # misses are failures
    diff = doc["results"]["gt-crops"]["difference"]["nme_2d"]["splits"]["fit"]["mean"]
    gt = doc["results"]["gt-crops"]
    assert diff == pytest.approx(gt["facealign"]["nme_2d"]["splits"]["fit"]["mean"]
                                 - gt["3ddfa-v2"]["nme_2d"]["splits"]["fit"]["mean"], abs=2e-4)
    assert doc["methods"]["facealign"]["sha256"] == hashlib.sha256(
        random_checkpoint.read_bytes()).hexdigest()
    assert doc["methods"]["facealign"]["flip"] is True  # the default, as the image commands
    assert "flip" not in doc["methods"]["3ddfa-v2"]  # the baseline runs as its authors ship it
    assert "Δ facealign − 3DDFA-V2" in res.output


def test_cli_flip_flag_changes_only_facealign(tmp_path, aflw2000_dir, real_weights):
    docs = {}
    for flag in ("--flip", "--no-flip"):
        out = tmp_path / f"{flag}.json"
        res = CliRunner().invoke(evaluate, [
            "aflw2000-3d", str(aflw2000_dir), "--weights", str(real_weights), "--limit", "6",
            "--protocols", "gt-crops", "--json", str(out), flag])
        assert res.exit_code == 0, res.output
        docs[flag] = json.loads(out.read_text())
    on, off = (docs[f]["results"]["gt-crops"]["facealign"]["nme_2d"] for f in ("--flip",
                                                                             "--no-flip"))
    assert docs["--flip"]["methods"]["facealign"]["flip"] is True
    assert docs["--no-flip"]["methods"]["facealign"]["flip"] is False
    assert on["all"] != off["all"] and abs(on["all"] - off["all"]) < 1.0


# ------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------

def _invoke_error(args) -> str:
    """A setup error: one message, exit code 2 (as documented in --help), no traceback."""
    res = CliRunner().invoke(evaluate, args)
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and isinstance(res.exception, SystemExit)
    return res.output


def test_folder_layout_errors(tmp_path):
    d = tmp_path / "aflw"
    d.mkdir()
    assert "no AFLW2000-3D files" in _invoke_error(["aflw2000-3d", str(d)])
    (d / "image00002.jpg").write_bytes(b"x")
    (d / "image00004.jpg").write_bytes(b"x")
    (d / "image00004.mat").write_bytes(b"x")
    msg = _invoke_error(["aflw2000-3d", str(d)])
    assert "1 .jpg without .mat: image00002.jpg" in msg
    p = d / "3ddfa-protocol"
    p.mkdir()
    assert "lacks AFLW2000-3D_crop.list" in _invoke_error(["aflw2000-3d", str(d)])
    (p / "AFLW2000-3D_crop.list").write_text("image00002.jpg\nimage00004.jpg\n")
    np.save(p / "AFLW2000-3D_crop.roi_box.npy", np.zeros((3, 4)))
    np.save(p / "AFLW2000-3D.pts68.npy", np.zeros((2, 3, 68)))
    np.save(p / "AFLW2000-3D.pose.npy", np.zeros(2))
    assert "do not match AFLW2000-3D_crop.list (2 names)" in _invoke_error(
        ["aflw2000-3d", str(d)])
    np.save(p / "AFLW2000-3D_crop.roi_box.npy", np.zeros((2, 4)))
    assert "image00002.mat" in _invoke_error(["aflw2000-3d", str(d)])
    (d / "image00002.mat").write_bytes(b"not a mat file")
    assert "cannot read" in _invoke_error(["aflw2000-3d", str(d), "--limit", "1"])
    assert "no .pts files" in _invoke_error(["landmarks68", str(d)])


def test_bad_protocol_and_missing_matplotlib(tmp_path, monkeypatch):
    res = CliRunner().invoke(evaluate, ["aflw2000-3d", str(tmp_path), "--protocols", "nope"])
    assert res.exit_code == 2 and "choose from gt-crops, detector, occlusion" in res.output
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if not installed
    res = CliRunner().invoke(evaluate, ["aflw2000-3d", str(tmp_path), "--plot",
                                        str(tmp_path / "p.png")])
    assert res.exit_code == 2 and "needs matplotlib" in res.output


DEV_CHECKPOINTS = [REPO / "weights" / "facealign_v1.pth", REPO / "runs" / "smoke" / "model.pth"]


@pytest.mark.skipif(not any(p.is_file() for p in DEV_CHECKPOINTS),
                    reason="no facealign checkpoint yet")
def test_cli_runs_with_project_checkpoint(tmp_path, aflw2000_dir):
    ck = next(p for p in DEV_CHECKPOINTS if p.is_file())
    res = CliRunner().invoke(evaluate, ["aflw2000-3d", str(aflw2000_dir), "--weights", str(ck),
                                        "--limit", "10", "--protocols", "gt-crops,occlusion",
                                        "--json", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "r.json").read_text())
    assert math.isfinite(doc["results"]["gt-crops"]["facealign"]["nme_2d"]["all"])


def test_landmarks68_with_a_nan_coordinate_is_a_usage_error(tmp_path, afw_annotated_dir):
    """A NaN in the annotations would score the face as a detector miss: the command refuses
    the file (exit 2) before loading any model, naming the file, the photo and the face."""
    ann = json.loads((afw_annotated_dir / "annotations.json").read_text())["photos"]
    stem = sorted(ann)[0]
    (tmp_path / f"{stem}.jpg").symlink_to(afw_annotated_dir / f"{stem}.jpg")
    faces = ann[stem]
    faces[0][30][1] = float("nan")
    (tmp_path / "labels.json").write_text(json.dumps({"photos": {stem: faces}}))
    msg = _invoke_error(["landmarks68", str(tmp_path), "--annotations",
                         str(tmp_path / "labels.json")])
    assert f"labels.json: photo '{stem}', face 0: point 30 is" in msg
    faces[0][30][1] = "x"
    (tmp_path / "labels.json").write_text(json.dumps({"photos": {stem: faces}}))
    msg = _invoke_error(["landmarks68", str(tmp_path), "--annotations",
                         str(tmp_path / "labels.json")])
    assert f"labels.json: photo '{stem}', face 0: point 30 is" in msg


def test_landmarks68_prints_its_table_on_an_ascii_stdout(tmp_path, afw_annotated_dir,
                                                         real_weights):
    """Under ``LC_ALL=C`` / ``PYTHONIOENCODING=ascii`` the tables (with their Δ, · and
    box-drawing characters) are printed in an ASCII form instead of crashing; the Markdown
    file stays UTF-8."""
    import os
    import subprocess
    import sys

    ann = json.loads((afw_annotated_dir / "annotations.json").read_text())["photos"]
    stem = sorted(ann)[0]
    (tmp_path / f"{stem}.jpg").symlink_to(afw_annotated_dir / f"{stem}.jpg")
    (tmp_path / "labels.json").write_text(json.dumps({"photos": {stem: ann[stem]}}))
    env = {**os.environ, "LC_ALL": "C", "PYTHONIOENCODING": "ascii", "PYTHONUTF8": "0",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run(
        [sys.executable, "-m", "facealign_cli.cli.main", "evaluate", "landmarks68",
         str(tmp_path), "--annotations", str(tmp_path / "labels.json"), "--weights",
         str(real_weights), "--markdown", str(tmp_path / "r.md")],
        env=env, capture_output=True, timeout=300)
    assert res.returncode == 0, res.stderr.decode("ascii", "replace")[-2000:]
    out = res.stdout.decode("ascii")  # fails on any non-ASCII byte
    assert "68-landmark NME (%)" in out and "| facealign " in out
    assert "sqrt(w*h)" in out  # the ASCII form of sqrt(w·h)
    assert "sqrt(w·h)" in (tmp_path / "r.md").read_text(encoding="utf-8")


def test_cli_standard_crop_row_beside_the_default(tmp_path, aflw2000_dir, real_weights):
    """The default row (roi x ROI_CROP_SCALE, second pass) and 'facealign (given crop, one
    pass)'; the given-crop row is what --roi-crop-scale 1 --no-second-pass computes (and then
    shown once)."""
    from facealign_cli.core.geometry import ROI_CROP_SCALE

    docs, outputs = {}, {}
    for name, extra in (("default", []), ("std", ["--roi-crop-scale", "1", "--no-second-pass"])):
        out = tmp_path / f"{name}.json"
        res = CliRunner().invoke(evaluate, [
            "aflw2000-3d", str(aflw2000_dir), "--weights", str(real_weights), "--limit", "6",
            "--protocols", "gt-crops", "--json", str(out), *extra])
        assert res.exit_code == 0, res.output
        docs[name], outputs[name] = json.loads(out.read_text()), res.output
    m = docs["default"]["methods"]
    assert list(m) == ["facealign", "facealign-standard"]
    assert (m["facealign"]["roi_crop_scale"], m["facealign"]["second_pass"]) == (
        ROI_CROP_SCALE, True)
    assert m["facealign-standard"]["label"] == "facealign (given crop, one pass)"
    assert m["facealign-standard"]["crop"] == "standard crop, 1 pass, flip"
    assert f"roi x{ROI_CROP_SCALE:g}, 2 passes" in m["facealign"]["crop"]
    assert "facealign (given crop, one pass)" in outputs["default"]
    assert list(docs["std"]["methods"]) == ["facealign"]
    g, s = docs["default"]["results"]["gt-crops"], docs["std"]["results"]["gt-crops"]
    assert g["facealign-standard"]["nme_2d"] == s["facealign"]["nme_2d"]
    assert g["facealign"]["nme_2d"]["all"] != g["facealign-standard"]["nme_2d"]["all"]


def test_cli_landmarks68_rows_and_crop_notes(tmp_path, afw_annotated_dir, real_weights):
    res = CliRunner().invoke(evaluate, [
        "landmarks68", str(afw_annotated_dir), "--annotations",
        str(afw_annotated_dir / "annotations.json"), "--weights", str(real_weights),
        "--limit", "3", "--markdown", str(tmp_path / "r.md")])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "r.md").read_text()
    assert "| facealign (given crop, one pass) |" in md and "| facealign |" in md
    assert "crops: facealign: roi x" in md and \
        "facealign (given crop, one pass): standard crop, 1 pass" in md


def test_landmarks68_counts_degenerate_annotations_apart(tmp_path, afw_annotated_dir,
                                                         real_weights):
    """Issue 24: an annotation whose points collapse onto a point or a line (or whose outer
    eye corners coincide) was scored as a detector miss. Such faces are now left out of every
    figure, counted in ``detection.degenerate`` with their reasons, and a warning names them."""
    ann = json.loads((afw_annotated_dir / "annotations.json").read_text())["photos"]
    stem = sorted(ann)[0]
    (tmp_path / f"{stem}.jpg").symlink_to(afw_annotated_dir / f"{stem}.jpg")
    good = ann[stem]
    point = [[200.0, 150.0]] * 68
    line = [[100.0 + i, 80.0] for i in range(68)]
    eyes = [list(p) for p in good[0]]
    eyes[45] = list(eyes[36])
    docs = {}
    for name, faces in (("clean", good), ("bad", good + [point, line, eyes])):
        (tmp_path / f"{name}.json").write_text(json.dumps({"photos": {stem: faces}}))
        res = CliRunner().invoke(evaluate, [
            "landmarks68", str(tmp_path), "--annotations", str(tmp_path / f"{name}.json"),
            "--weights", str(real_weights), "--no-second-pass", "--roi-crop-scale", "1",
            "--json", str(tmp_path / f"{name}.out.json"), "--markdown",
            str(tmp_path / f"{name}.md")])
        assert res.exit_code == 0, res.output
        docs[name] = (json.loads((tmp_path / f"{name}.out.json").read_text()), res)
    clean, bad = docs["clean"][0]["results"], docs["bad"][0]["results"]
    det = bad["detection"]
    assert det["faces"] == len(good) + 3 and det["degenerate"] == 3
    assert det["misses"] == clean["detection"]["misses"]  # not counted as misses
    assert det["detected"] == clean["detection"]["detected"]
    reasons = [why for _, why in det["degenerate_faces"]]
    assert "68-point box 0.0 x 0.0 px" in reasons[0] and "x 0.0 px" in reasons[1]
    assert "outer eye corners" in reasons[2]
    assert bad["facealign"] == clean["facealign"]  # the same figures, n and misses included
    warning = docs["bad"][1].stderr
    assert "3 degenerate annotation(s) left out" in warning and "Traceback" not in warning
    assert "3 degenerate annotation(s) left out (not misses)" in (tmp_path / "bad.md").read_text()
