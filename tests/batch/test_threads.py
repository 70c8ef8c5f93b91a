"""Threads per worker: one by default, and numpy's BLAS (and OpenCV) kept within the worker's
thread count in every process, in-process and in worker processes."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
threadpoolctl = pytest.importorskip("threadpoolctl")

from fakes import FakeFactory, blas_threads  # noqa: E402

from facealign_cli.batch.options import RunOptions  # noqa: E402
from facealign_cli.batch.runner import run_batch  # noqa: E402
from facealign_cli.io.inputs import collect_inputs  # noqa: E402


@pytest.fixture()
def blas_restored():
    """This process's BLAS raised to a thread per CPU core (an earlier in-process run of the
    session may have limited it) and its BLAS and OpenCV thread counts restored after the test
    (a run with ``jobs=1`` limits the process it runs in); skips on a one-core machine."""
    blas, ocv = blas_threads(), cv2.getNumThreads()
    threadpoolctl.threadpool_limits(limits=os.cpu_count() or 1, user_api="blas")
    if blas_threads() < 2:
        pytest.skip("numpy's BLAS runs one thread on this machine")
    yield blas
    threadpoolctl.threadpool_limits(limits=blas, user_api="blas")
    cv2.setNumThreads(ocv)


def _probe(tmp_path, **kw) -> list[list[float]]:
    """``[BLAS threads, OpenCV threads]`` of the process that handled each of 4 photos."""
    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        cv2.imwrite(str(src / f"p{i}.png"), np.full((64, 64, 3), 60 + 20 * i, np.uint8))
    out = tmp_path / "out"
    opts = RunOptions.make(command="landmarks", out=str(out), progress="never",
                      aligner_factory=FakeFactory(probe_threads=True), **kw)
    summary = run_batch(collect_inputs([str(src)], skip_dirs=[out]), opts,
                        stdout=io.BytesIO(), stderr=io.StringIO())
    assert summary.ok == 4
    return [json.loads((out / f"p{i}.json").read_text())["faces"][0]["pose"]
            for i in range(4)]


@pytest.mark.parametrize("jobs", [1, 2])
def test_one_thread_per_worker_by_default_blas_included(tmp_path, blas_restored, jobs):
    for pose in _probe(tmp_path, jobs=jobs):
        assert (pose["yaw"], pose["pitch"]) == (1, 1)  # BLAS, OpenCV


def test_threads_option_sets_the_blas_threads(tmp_path, blas_restored):
    for pose in _probe(tmp_path, jobs=1, threads=2):
        assert (pose["yaw"], pose["pitch"]) == (2, 2)
