"""Two runs in one process (threads) do not interfere: each has its own stop flag and its own
model cache (fake model, tiny images built here); the file permissions of outputs follow the
umask of the moment (no umask captured at import)."""

from __future__ import annotations

import io
import json
import os
import stat
import threading
import time
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from fakes import FakeFactory  # noqa: E402

from facealign_cli.batch.options import RunOptions  # noqa: E402
from facealign_cli.batch.runner import run_batch  # noqa: E402
from facealign_cli.batch.stopping import StopFlag  # noqa: E402
from facealign_cli.io.inputs import collect_inputs  # noqa: E402


def _photos(root: Path, n: int) -> Path:
    root.mkdir(parents=True)
    for i in range(n):
        img = np.full((48, 64, 3), 40 + i % 150, np.uint8)
        (root / f"p{i:03d}.jpg").write_bytes(cv2.imencode(".jpg", img)[1].tobytes())
    return root


def _manifest(out: Path) -> list[dict]:
    return [json.loads(s) for s in (out / "manifest.jsonl").read_text("utf-8").splitlines()]


class _Run(threading.Thread):
    """``run_batch`` of ``command`` over ``src`` in a thread of its own."""

    def __init__(self, src: Path, out: Path, factory: FakeFactory, stop: StopFlag | None = None,
                 command: str = "landmarks", **kw):
        super().__init__(daemon=True)
        self.items = collect_inputs([str(src)])
        self.opts = RunOptions.make(command, str(out), aligner_factory=factory,
                                    progress="never", **kw)
        self.stop, self.summary, self.error = stop, None, None

    def run(self):
        try:
            self.summary = run_batch(self.items, self.opts, stderr=io.StringIO(),
                                     stop=self.stop)
        except BaseException as exc:  # reported by the test
            self.error = exc


def _lines(path: Path) -> int:
    return path.read_text().count("\n") if path.is_file() else 0


@pytest.mark.parametrize("jobs", [1, 2])
def test_one_run_stopped_the_other_completes(tmp_path, jobs):
    """Run A is stopped through its flag from another thread after a few images; run B, in
    the same process at the same time (the same worker pool with ``jobs=2``), completes every
    image and exits 0. A records every input: its images done, the rest not run, exit 130."""
    n = 40
    src_a, src_b = _photos(tmp_path / "a", n), _photos(tmp_path / "b", n)
    trace_a, trace_b = tmp_path / "trace_a.txt", tmp_path / "trace_b.txt"
    stop = StopFlag()
    a = _Run(src_a, tmp_path / "out_a", FakeFactory(delay=0.05, trace=str(trace_a)), stop,
             jobs=jobs, chunk_size=1)
    b = _Run(src_b, tmp_path / "out_b", FakeFactory(delay=0.02, trace=str(trace_b)),
             jobs=jobs, chunk_size=1)
    a.start()
    b.start()
    deadline = time.time() + 120
    while _lines(trace_a) < 3 or _lines(trace_b) < 1:  # both under way
        assert time.time() < deadline and a.is_alive(), (a.error, _lines(trace_a))
        time.sleep(0.01)
    stop.set()
    a.join(120)
    b.join(120)
    assert not a.is_alive() and not b.is_alive()
    assert a.error is None and b.error is None, (a.error, b.error)
    assert b.summary.exit_code == 0 and b.summary.ok == n and b.summary.not_run == 0
    man_b = _manifest(tmp_path / "out_b")
    assert len(man_b) == n and all(m["status"] == "ok" for m in man_b)
    assert a.summary.exit_code == 130
    man_a = _manifest(tmp_path / "out_a")
    assert len(man_a) == n  # every input, done or not run
    done = [m for m in man_a if m["status"] == "ok"]
    assert 1 <= len(done) < n // 2 and a.summary.not_run == n - len(done)
    assert all(m["error"] == "Interrupted" for m in man_a if m["status"] != "ok")


def test_the_model_cache_of_one_run_does_not_leak_into_the_other(tmp_path):
    """Two runs of one process at the same time with different model settings
    (``max_faces`` 1 and 0 = all, different factories): each builds its model once and keeps
    it, and every output of each has its own run's faces (the fake finds two per image)."""
    n = 12
    src = _photos(tmp_path / "in", n)
    log_a, log_b = tmp_path / "built_a.txt", tmp_path / "built_b.txt"
    a = _Run(src, tmp_path / "out_a", FakeFactory(delay=0.03, log=str(log_a)), max_faces=1)
    b = _Run(src, tmp_path / "out_b", FakeFactory(delay=0.02, log=str(log_b)), max_faces=0)
    a.start()
    b.start()
    a.join(120)
    b.join(120)
    assert a.error is None and b.error is None, (a.error, b.error)
    assert a.summary.exit_code == 0 and b.summary.exit_code == 0
    assert _lines(log_a) == 1 and _lines(log_b) == 1  # one model per run, never swapped
    for out, faces in ((tmp_path / "out_a", 1), (tmp_path / "out_b", 2)):
        docs = [json.loads((out / f"p{i:03d}.json").read_text()) for i in range(n)]
        assert [len(d["faces"]) for d in docs] == [faces] * n


def test_a_flag_set_before_the_run_runs_nothing(tmp_path):
    src = _photos(tmp_path / "in", 3)
    stop = StopFlag()
    stop.set()
    r = _Run(src, tmp_path / "out", FakeFactory(), stop)
    r.run()
    assert r.summary.exit_code == 130 and r.summary.not_run == 3 and r.summary.ok == 0
    assert [m["error"] for m in _manifest(tmp_path / "out")] == ["Interrupted"] * 3


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_outputs_follow_the_umask_of_the_moment(tmp_path, monkeypatch):
    """The umask in force when a file is written decides its permissions (not one read when
    the module was imported), and writing never changes the umask."""
    from facealign_cli.io import records

    for mask, mode in ((0o022, 0o644), (0o077, 0o600), (0o002, 0o664)):
        old = os.umask(mask)
        try:
            with monkeypatch.context() as m:
                m.setattr(os, "umask", lambda *a: pytest.fail("the umask was read or changed"))
                records.write_json(tmp_path / f"x{mask:o}.json", {"a": 1})
        finally:
            os.umask(old)
        assert stat.S_IMODE((tmp_path / f"x{mask:o}.json").stat().st_mode) == mode
    assert not [p for p in tmp_path.iterdir() if records.is_temp_name(p.name)]
