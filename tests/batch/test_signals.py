"""Stop signals sent again and again to a running command line (fake model, a few hundred tiny
images built here): the first signal decides the exit code, every input is in the manifest."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from facealign_cli.batch.manifest import read_manifest

cv2 = pytest.importorskip("cv2")

from fakes import fake_cli  # noqa: E402

N_IMAGES = 300


def _tiny_jpegs(root: Path, n: int) -> list[str]:
    root.mkdir(parents=True)
    paths = []
    for i in range(n):
        img = np.full((40, 40, 3), 30 + i % 200, np.uint8)
        p = root / f"img{i:04d}.jpg"
        p.write_bytes(cv2.imencode(".jpg", img)[1].tobytes())
        paths.append(str(p))
    return paths


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX signals")
@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.parametrize("signals,code", [
    ([signal.SIGTERM] * 3, 143),
    ([signal.SIGINT] * 4, 130),
    ([signal.SIGTERM, signal.SIGINT, signal.SIGINT, signal.SIGHUP, signal.SIGTERM,
      signal.SIGINT], 143),
    ([signal.SIGHUP] + [signal.SIGTERM] * 7, 143),
])
def test_repeated_stop_signals_end_with_the_first_ones_code_and_a_whole_manifest(
        tmp_path, jobs, signals, code):
    paths = _tiny_jpegs(tmp_path / "in", N_IMAGES)
    out = tmp_path / "out"
    proc = subprocess.Popen(fake_cli(["landmarks", tmp_path / "in", "--out", out, "-v",
                                      "--jobs", jobs], delay=0.03),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        first = proc.stderr.readline()  # one image done: the run is under way
        assert first.startswith(b"ok "), first
        for s in signals:  # a supervisor that insists
            proc.send_signal(s)
            time.sleep(0.03)
        err = proc.stderr.read().decode()
        rc = proc.wait(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert rc == code, err
    assert "Traceback" not in err
    lines = read_manifest(out / "manifest.jsonl")
    assert [m["path"] for m in lines] == paths  # every input, in input order
    assert {m["status"] for m in lines} <= {"ok", "skipped"}
    assert all(m["status"] == "ok" or m["error"] == "Interrupted" for m in lines)
    assert 1 <= sum(m["status"] == "ok" for m in lines) < N_IMAGES
