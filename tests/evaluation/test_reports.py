"""facealign_cli.evaluation.reports: JSON, Markdown, tables and the missing-matplotlib error."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from facealign_cli.evaluation import metrics as M
from facealign_cli.evaluation import reports as R


def test_reports_json_and_markdown(tmp_path):
    doc = {"settings": {"a": 1}, "methods": {}, "x": [np.float32(1.23456), np.nan, np.int64(3)]}
    R.write_json(tmp_path / "a.json", doc)
    assert json.loads((tmp_path / "a.json").read_text())["x"] == [1.2346, None, 3]
    t = R.Table("T", ["a", "b"], [["x", "1"]], ["note"])
    md = R.markdown(doc, [t], "Title")
    assert "| a | b |" in md and "| x | 1 |" in md and "- a: 1" in md


def test_aflw2000_tables_from_figures():
    yaw = np.array([5.0, 40.0, 70.0, 10.0])
    nme = np.array([2.0, 3.0, 4.0, np.nan])
    fig = {"nme_2d": M.nme_figures(nme, {"fit": yaw}), "nme_3d": M.nme_figures(nme, {"fit": yaw}),
           "pose": M.pose_figures(np.zeros((4, 3)), np.ones((4, 3)))}
    doc = {"settings": {"yaw_splits": ["fit"]}, "methods": {"facealign": {"label": "facealign"}},
           "results": {"gt-crops": {"facealign": fig}}}
    tables = R.aflw2000_tables(doc)
    assert tables and "ground-truth crops" in tables[0].title
    row = tables[0].rows[0]
    assert row[0] == "facealign" and "3.00" in row  # mean of the bins 2, 3, 4


def test_plot_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if not installed
    with pytest.raises(R.PlotUnavailableError, match=r"facealign-cli\[plot\]"):
        R.check_plot_available()


def test_ced_legend_counts_misses():
    # one face at 3.5 % and one miss: AUC@7 = 0.5 / 2, both FR = 1 / 2
    assert R.ced_legend("m", np.array([3.5, np.nan])) == "m (AUC@7 0.250, FR>7 50.0%, FR>10 50.0%)"
