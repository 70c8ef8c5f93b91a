"""The measured figures live in one file (``facealign_cli/data/figures.json``): the documents'
generated spans, ``--help``, the docstrings and the code's constants agree with it, and the
measuring scripts write it."""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from facealign_cli import figures
from facealign_cli.cli.main import main

REPO = Path(__file__).resolve().parents[1]

#: The spans each document must hold (a span dropped from a document fails here).
EXPECTED_SPANS = {
    "README.md": ["quality-readme", "detector-readme"],
    "docs/batch.md": ["detector-docs", "quality-docs"],
    "benchmarks/README.md": ["table"],
}


def _script(name: str):
    path = REPO / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_figures_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _flat(text: str) -> str:
    """Whitespace folded, hyphenated line breaks joined (click wraps help at hyphens)."""
    return re.sub(r"- ", "-", re.sub(r"\s+", " ", text))


def _outside_spans(text: str) -> str:
    return re.sub(r"<!-- figures:([\w-]+) -->.*?<!-- /figures:\1 -->", " ", text, flags=re.S)


def test_documents_agree_with_the_figures_file():
    figs = figures.load()
    assert set(EXPECTED_SPANS) == set(figures.DOCUMENTS)
    for rel, names in EXPECTED_SPANS.items():
        text = (REPO / rel).read_text(encoding="utf-8")
        assert figures.span_names(text) == names, rel
        assert figures.regenerate(text, figs) == text, (
            f"{rel} is out of date: run PYTHONPATH=$PWD python scripts/update_figures.py")
    assert figures.update_documents(REPO, write=False) == []


def test_spans_follow_the_file(tmp_path):
    """A refit's figures reach every span: change the file, regenerate, the new numbers are
    stated and the old ones gone; write_section records the command and the date."""
    path = tmp_path / "figures.json"
    path.write_text(figures.FIGURES.read_text())
    q = copy.deepcopy(figures.load(path)["quality"])
    q["afw"].update(false=31, false_dropped=17, faces=450, faces_dropped=4)
    cmd = "PYTHONPATH=$PWD python scripts/fit_quality.py --weights weights/facealign_v9.pth"
    figs = figures.write_section("quality", {k: v for k, v in q.items()
                                             if k not in ("command", "date")}, cmd, path,
                                 when=date(2027, 1, 2))
    assert figures.load(path) == figs
    assert figs["quality"]["command"] == cmd and figs["quality"]["date"] == "2027-01-02"
    old = figures.load()
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    docs = (REPO / "docs/batch.md").read_text(encoding="utf-8")
    new_readme, new_docs = figures.regenerate(readme, figs), figures.regenerate(docs, figs)
    assert "drops 17 of the 31 false faces (55 %) and 4 of the 450 real ones (0.9 %)" in new_readme
    assert "17 of the 31 false faces (55 %)" in _flat(new_docs) and "2027-01-02" in new_docs
    oa = old["quality"]["afw"]
    assert f"drops {oa['false_dropped']} of the {oa['false']} false" not in new_readme
    # regenerating again changes nothing; the text outside the spans is untouched
    assert figures.regenerate(new_docs, figs) == new_docs
    assert _outside_spans(new_docs) == _outside_spans(docs)


def test_help_states_the_files_figures():
    from click.testing import CliRunner

    a = figures.load()["quality"]["afw"]
    figures.quality_help.cache_clear()
    sentence = figures.quality_help()
    assert f"drops {a['false_dropped']} of the {a['false']} false faces" in sentence
    for command in ("landmarks", "pose", "mesh", "render"):
        out = CliRunner().invoke(main, [command, "--help"]).output
        assert _flat(sentence) in _flat(out), command
    assert figures.quality_help(Path("/nonexistent/figures.json")) == ""


def test_code_constants_equal_the_files():
    from facealign_cli.core import quality
    from facealign_cli.defaults import DEFAULT_MIN_QUALITY, DEFAULT_MIN_SCORE
    from facealign_cli.models.detector import DEFAULT_POLICY
    from facealign_cli.models.weights import DEFAULT_WEIGHTS

    figs = figures.load()
    q = figs["quality"]
    assert tuple(q["model"]["weights"]) == quality.WEIGHTS
    assert q["model"]["flip_median_face"] == pytest.approx(quality.FLIP_MEDIAN_FACE, abs=5e-5)
    assert (q["min_score"], q["min_quality"]) == (DEFAULT_MIN_SCORE, DEFAULT_MIN_QUALITY)
    assert q["policy"] == figs["detector"]["default"] == DEFAULT_POLICY
    # the rates are for the shipped default weights: a new default needs a refit
    assert q["weights"] == DEFAULT_WEIGHTS, (
        f"the quality figures are for {q['weights']}, the default weights are "
        f"{DEFAULT_WEIGHTS}: run scripts/fit_quality.py --write-figures")


def test_every_section_names_its_command_and_date():
    for sec in figures.load().values():
        if not isinstance(sec, dict):
            continue
        date.fromisoformat(sec["date"])
        m = re.match(r"PYTHONPATH=\$PWD python (scripts/\w+\.py)", sec["command"])
        assert m, sec["command"]
        assert "--write-figures" in (REPO / m.group(1)).read_text(), m.group(1)


def test_no_measured_rates_outside_the_spans():
    """The paragraphs that state the detector's and the quality filter's rates do so only in
    generated spans; core/quality.py's docstring states none."""
    from facealign_cli.core import quality

    rate = re.compile(r"\d+ of (the )?\d+|\d ?%|\d+\.\d+ ms|0\.\d{3}")
    docs = (REPO / "docs/batch.md").read_text(encoding="utf-8")
    for title in ("### Detector score threshold", "### Face quality"):
        section = _outside_spans(docs.split(title, 1)[1].split("\n#", 1)[0])
        assert not rate.search(section), (title, rate.search(section))
    readme = _outside_spans((REPO / "README.md").read_text(encoding="utf-8"))
    option = readme.split("`--min-quality Q`", 1)[1].split("`--weights", 1)[0]
    assert not rate.search(option), option
    assert not re.search(r"\d ?%|\d+ of \d+", quality.__doc__)


def _features():
    """Built features (fit_quality.features' layout): 4 AFW photos with 5 annotated faces and
    3 HELEN crops; faces and false detections with chosen scores and flips."""
    #           score  flip  label default afw gt
    rows = [(0.95, 0.01, 1, 1, 1, 0), (0.90, 0.01, 1, 1, 1, 1), (0.60, 0.30, 1, 1, 1, 2),
            (0.80, 0.01, 1, 1, 1, 3), (0.50, 0.20, 0, 1, 1, -1), (0.65, 0.01, 0, 1, 1, -1),
            (0.46, 0.05, 0, 1, 1, -1), (0.40, 0.01, 1, 0, 1, 4),
            (0.97, 0.01, 1, 1, 0, -1), (0.92, 0.02, 1, 1, 0, -1), (0.55, 0.25, 0, 1, 0, -1)]
    a = np.array(rows, float)
    return {"score": a[:, 0], "flip": a[:, 1], "label": a[:, 2].astype(bool),
            "default": a[:, 3].astype(bool), "afw": a[:, 4].astype(bool),
            "group": np.arange(len(a)) % 5, "gt": a[:, 5].astype(int),
            "n_afw": np.asarray(4), "n_gt_afw": np.asarray(5)}


def test_fit_quality_writes_the_quality_section(tmp_path):
    fq = _script("fit_quality")
    feat = _features()
    full = np.array([0.99, 0.98, 0.40, 0.97, 0.10, 0.70, 0.30, 0.9, 0.99, 0.98, 0.05])
    held = full.copy()
    held[1] = 0.45  # one face dropped by the held-out prediction only
    out = fq.quality_figures(feat, full, held, (11.0, -1.5, -9.5), policy="v2",
                             weights_name="v9", min_score=0.45, min_quality=0.5)
    a, h = out["afw"], out["helen"]
    assert (a["faces"], a["faces_dropped"], a["faces_dropped_held_out_pct"]) == (4, 1, 50.0)
    assert (a["false"], a["false_dropped"], a["false_dropped_held_out_pct"]) == (3, 2, 67)
    assert (a["annotated"], a["annotated_found"], a["annotated_found_kept"]) == (5, 4, 3)
    assert (a["false_per_photo"], a["false_per_photo_kept"]) == (0.75, 0.25)
    assert (a["false_score_min"], a["false_score_max"], a["false_score_median"]) == (
        0.46, 0.65, 0.5)
    assert (h["faces"], h["faces_dropped"], h["false"], h["false_dropped"]) == (2, 0, 1, 1)
    assert out["min_score_0.7"] == {"afw_faces_kept_pct": 75.0, "annotated_found_kept": 3,
                                    "false_kept": 0}
    assert out["model"] == {"weights": [11.0, -1.5, -9.5], "flip_median_face": 0.01}
    assert out["labelled"] == {"detections": 11, "faces": 7, "false": 4}
    # what the script writes regenerates the documents' spans
    path = tmp_path / "figures.json"
    path.write_text(figures.FIGURES.read_text())
    figs = figures.write_section("quality", out, "PYTHONPATH=$PWD python scripts/fit_quality.py",
                                 path)
    readme = figures.regenerate((REPO / "README.md").read_text(encoding="utf-8"), figs)
    assert "drops 2 of the 3 false faces (67 %) and 1 of the 4 real ones (25 %)" in readme
    assert json.loads(path.read_text())["quality"]["date"] == date.today().isoformat()


def test_tune_detector_writes_the_detector_section():
    td = _script("tune_detector")

    def res(found, ms, ms1024, false):
        return {"found": found, "faces": 10, "images": 4, "cpu_ms_per_image": ms,
                "cpu_ms_per_1024px_image": ms1024, "false": false}
    sets = {"afw": {"v1": res(9, 12.0, 14.84, 2), "v2": res(9, 6.0, 6.94, 1)},
            "helen_groups": {"v1": res(7, 15.04, None, None), "v2": res(8, 7.0, None, None)}}
    out = td.detector_figures(sets)
    assert out["sets"]["afw"]["v1"] == {"found": 9, "faces": 10, "cpu_ms": 14.8,
                                        "false_per_image": 0.5}
    assert out["sets"]["afw"]["v2"]["cpu_ms"] == 6.9
    assert out["sets"]["helen_groups"]["v2"] == {"found": 8, "faces": 10, "cpu_ms": 7.0}
    figs = {**figures.load(), "detector": {"command": "c", "date": "2027-01-01", **out}}
    text = figures.regenerate((REPO / "README.md").read_text(encoding="utf-8"), figs)
    assert "9 of 10 annotated faces at 6.9 ms CPU per 1024-px photo" in text
