"""The command line as a process among others: closed standard streams with worker processes,
repeated stop signals, float options and environment values that are not numbers, and nothing
written outside --out (ONNX Runtime telemetry)."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")

from cli_helpers import image_folder as _folder  # noqa: E402
from cli_helpers import invoke  # noqa: E402
from cli_helpers import read_manifest as _manifest  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _sh(args, redirect: str, **kw) -> subprocess.CompletedProcess:
    """``python -m facealign_cli.cli.main ARGS REDIRECT`` under ``sh`` (the real model)."""
    cmd = " ".join(shlex.quote(str(a)) for a in
                   [sys.executable, "-m", "facealign_cli.cli.main", *args])
    return subprocess.run(["sh", "-c", f"{cmd} {redirect}"], capture_output=True, timeout=300,
                          cwd=REPO, **kw)


# ------------------------------------------------- worker processes and closed standard streams

@pytest.mark.parametrize("redirect", ["2>&-", "2>&- <&-", ">&-", "<&- >&- 2>&-"])
def test_workers_run_whatever_standard_streams_the_parent_has_closed(tmp_path, redirect):
    """``--jobs 2`` with stdin / stdout / stderr closed: every image is processed by the
    workers (they used to start without the closed descriptors and die: WorkerCrashed for
    every image, or a traceback in loky with stdout closed)."""
    src = _folder(tmp_path / "in", 4)
    out = tmp_path / "out"
    r = _sh(["detect", src, "--out", out, "--jobs", "2"], redirect)
    assert r.returncode == 0, r.stderr.decode()
    assert [m["status"] for m in _manifest(out)] == ["ok"] * 4
    assert b"Traceback" not in r.stderr


def test_closed_stdout_with_out_dash_and_workers_is_exit_3(tmp_path):
    src = _folder(tmp_path / "in", 3)
    r = _sh(["detect", src, "--out", "-", "--jobs", "2"], ">&-")
    err = r.stderr.decode()
    assert r.returncode == 3, err
    assert err.count("facealign: error:") == 1 and "stdout" in err and "Traceback" not in err


# ------------------------------------------- float options and environment values: one check

@pytest.mark.parametrize("command", ["detect", "landmarks", "pose", "mesh", "render"])
def test_every_float_option_of_the_image_commands_refuses_nan(tmp_path, fake_model, command):
    """The float options of every image command, found from the command itself: each one
    refuses nan (the one validator, FiniteFloatRange)."""
    import click

    from facealign_cli.cli.main import main

    cmd = main.get_command(click.Context(main), command)
    floats = [p for p in cmd.params if isinstance(p.type, click.FloatRange)]
    assert {p.opts[0] for p in floats} >= {"--min-score", "--max-megapixels"}
    src = _folder(tmp_path / "in", 1)
    for p in floats:
        r = invoke([command, src, "--out", tmp_path / "out", p.opts[0], "nan"])
        assert r.exit_code == 2 and p.opts[0] in r.stderr, (p.opts[0], r.output)


def test_a_scheduler_address_of_an_unknown_scheme_is_one_error_at_once(tmp_path):
    pytest.importorskip("distributed")
    src = _folder(tmp_path / "in", 1)
    r = _sh(["landmarks", src, "--out", tmp_path / "out", "--backend", "dask",
             "--scheduler", "http://127.0.0.1:8786"], "")
    err = r.stderr.decode()
    assert r.returncode == 2, err
    assert "unknown address scheme 'http'" in err and "Traceback" not in err
    assert err.count("facealign: error:") == 1


# ------------------------------------------------------- nothing stored outside --out (telemetry)

@pytest.mark.parametrize("jobs", [1, 2])
def test_a_run_stores_nothing_in_home_or_tmpdir(tmp_path, afw_photos, real_weights, jobs):
    """ONNX Runtime's telemetry is off: with it on, each process wrote ``$TMPDIR/.ses`` and a
    device id under ``~/.cache/Microsoft/`` (and may upload events)."""
    import os

    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("ORT_DISABLE_TELEMETRY", "XDG_CACHE_HOME", "XDG_CONFIG_HOME",
                        "XDG_DATA_HOME")}
    env.update(HOME=str(home), TMPDIR=str(tmp), PYTHONPATH=str(REPO))
    src = tmp_path / "in"
    src.mkdir()
    for p in afw_photos:
        (src / p.name).symlink_to(p)
    out = tmp_path / "out"
    r = _sh(["landmarks", src, "--out", out, "--runtime", "onnxruntime", "--jobs", jobs,
             "--weights", real_weights], "", env=env)
    assert r.returncode == 0, r.stderr.decode()
    assert [m["status"] for m in _manifest(out)] == ["ok"] * len(afw_photos)
    assert sum(m["n_faces"] for m in _manifest(out)) > 0  # the regressor ran
    assert sorted(home.rglob("*")) == [] and sorted(tmp.rglob("*")) == []
