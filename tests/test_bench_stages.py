"""``benchmarks/bench.py --only stages`` (issue 24: it crashed with ``'Landmarks' object has no
attribute 'encode'`` once the commands' writers replaced ``encode``): the section runs on real
photos, and the document it times is the one ``facealign landmarks`` writes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture()
def stages(monkeypatch):
    pytest.importorskip("threadpoolctl")
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.delitem(sys.modules, "stages", raising=False)
    import stages

    return stages


def test_stages_section_runs_on_real_photos(stages, afw_photos, mesh_ready):
    lines: list[str] = []
    res = stages.bench_stages(mesh_ready, afw_photos[:2], 1, lines.append)
    assert res["photos"] == 2 and res["faces"] >= 1
    assert res["photo.JSON (landmarks document)"][0] > 0
    assert res["landmarks_photo_ms"][0] > res["photo.JSON (landmarks document)"][0]
    assert lines and "landmarks" in lines[0]


def test_timed_document_is_the_commands_document(stages, afw_photos, mesh_ready, tmp_path):
    from click.testing import CliRunner

    from facealign_cli.batch.commands import get_command
    from facealign_cli.batch.options import RunOptions
    from facealign_cli.cli.main import main
    from facealign_cli.core.pipeline import FaceAligner
    from facealign_cli.io.images import read_image
    from facealign_cli.models.regressor_onnx import make_regressor

    photo = afw_photos[0]
    dec = read_image(photo)
    aligner = FaceAligner(regressor=make_regressor(mesh_ready, num_threads=1), num_threads=1)
    faces = aligner.fit(dec.image, aligner.detect(dec.image))
    got = stages.landmarks_document(get_command("landmarks"), RunOptions("landmarks", "x"),
                                    photo, dec, faces)
    out = tmp_path / "o"
    r = CliRunner().invoke(main, ["landmarks", str(photo), "--out", str(out), "-q",
                                  "--min-quality", "0", "--weights", str(mesh_ready)])
    assert r.exit_code == 0, r.output
    assert got == (out / f"{photo.stem}.json").read_bytes()
