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


@pytest.mark.parametrize("encoding", ["ascii", "latin-1", "utf-8"])
def test_tables_print_on_a_stdout_of_any_encoding(monkeypatch, encoding):
    """print_tables writes what stdout's encoding holds: ° stays on latin-1, Δ and − become
    ASCII forms there; UTF-8 keeps everything."""
    import io

    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding=encoding, errors="strict", write_through=True)
    monkeypatch.setattr(sys, "stdout", stream)
    t = R.Table("yaw 30°–60° × 2", ["Method", "NME"], [["Δ a − b", "±1.0"]], ["sqrt(w·h)"])
    R.print_tables([t])
    out = raw.getvalue().decode(encoding)
    if encoding == "utf-8":
        assert "yaw 30°–60° × 2" in out and "Δ a − b" in out and "sqrt(w·h)" in out
    elif encoding == "latin-1":
        assert "yaw 30°-60° × 2" in out and "d a - b" in out and "±1.0" in out
    else:
        assert "yaw 30 deg-60 deg x 2" in out and "d a - b" in out and "+-1.0" in out
        assert "sqrt(w*h)" in out
