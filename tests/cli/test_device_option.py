"""``--device`` on the image commands and ``facealign evaluate`` (issue 26, item 2), with the
real model on a photo of the AFW archive. This machine's ONNX Runtime has the CPU provider
only: ``--device cuda`` is a one-line setup error (exit 2) before ``--out`` is touched; ``cpu``
and ``auto`` run, the settings file records the provider, and a change of device redoes
nothing (the outputs do not depend on it)."""

from __future__ import annotations

import json

import onnxruntime
import pytest
from cli_helpers import invoke, read_manifest
from click.testing import CliRunner

from facealign_cli.cli.evaluate import evaluate


def _settings(out):
    return json.loads((out / ".facealign/settings/landmarks.json").read_text())["settings"]


def _error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.strip()]


@pytest.mark.parametrize("command", ["detect", "landmarks"])
def test_device_cuda_here_is_a_one_line_exit_2_error(command, afw_photos, tmp_path):
    out = tmp_path / "o"
    r = invoke([command, afw_photos[0], "--out", out, "--device", "cuda"])
    assert r.exit_code == 2, r.output
    (line,) = _error_lines(r.stderr)
    assert line.startswith("facealign: error: --device cuda: this ONNX Runtime has no "
                           "CUDAExecutionProvider (it has: ")
    assert "pip install onnxruntime-gpu" in line and not out.exists()


def test_cpu_and_auto_run_and_the_settings_file_records_the_provider(afw_photos, tmp_path,
                                                                      real_weights):
    out = tmp_path / "o"
    r = invoke(["landmarks", afw_photos[0], "--out", out, "--device", "cpu", "-q"])
    assert r.exit_code == 0, r.stderr
    first = (out / f"{afw_photos[0].stem}.json").read_text()
    assert json.loads(first)["faces"]
    s = _settings(out)
    assert (s["device"], s["execution_provider"]) == ("cpu", "CPUExecutionProvider")
    # auto (the default) picks the CPU here; same fingerprint: the photo is not redone
    r = invoke(["landmarks", afw_photos[0], "--out", out, "-q"])
    assert r.exit_code == 0, r.stderr
    assert [m["status"] for m in read_manifest(out)] == ["skipped"]
    s = _settings(out)
    assert (s["device"], s["execution_provider"]) == ("auto", "CPUExecutionProvider")
    r = invoke(["landmarks", afw_photos[0], "--out", out, "--device", "AUTO", "--overwrite",
                "-q"])
    assert r.exit_code == 0 and (out / f"{afw_photos[0].stem}.json").read_text() == first


def test_a_listed_provider_that_does_not_start_stops_the_run(monkeypatch, afw_photos, tmp_path,
                                                              real_weights):
    """A GPU build whose CUDA libraries are missing lists CUDA; ONNX Runtime would then run on
    the CPU. Here it is one setup error, exit 2, and no image is done."""

    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    out = tmp_path / "o"
    r = invoke(["landmarks", afw_photos[0], "--out", out, "--jobs", "1"])
    assert r.exit_code == 2, r.output
    assert ("facealign: error: --device auto: ONNX Runtime did not start "
            "CUDAExecutionProvider") in r.stderr
    assert "Traceback" not in r.stderr
    (rec,) = read_manifest(out)
    assert rec["status"] == "skipped"
    assert rec["message"] == "not processed: the run stopped on an error"
    assert not (out / f"{afw_photos[0].stem}.json").exists()


def test_evaluate_device_cuda_here_is_a_one_line_exit_2_error(afw_photos, real_weights):
    r = CliRunner().invoke(evaluate, ["stability", str(afw_photos[0].parent), "--limit", "1",
                                      "--device", "cuda"])
    assert r.exit_code == 2, r.output
    (line,) = _error_lines(r.stderr)
    assert line.startswith("Error: --device cuda: this ONNX Runtime has no ")
    assert "onnxruntime-gpu" in line
