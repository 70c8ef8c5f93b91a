"""``--backend dask``: the same batch on a Dask distributed cluster (a two-worker LocalCluster
on loopback here) gives byte-for-byte the outputs of a local run; the model is built once per
worker process; a missing scheduler is a clean setup error (exit 2)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facealign_cli.batch.manifest import read_manifest

cv2 = pytest.importorskip("cv2")

from click.testing import CliRunner  # noqa: E402
from fakes import FakeFactory  # noqa: E402

from facealign_cli.batch.options import RunOptions  # noqa: E402
from facealign_cli.batch.runner import run_batch  # noqa: E402
from facealign_cli.cli.main import main  # noqa: E402
from facealign_cli.io.inputs import collect_inputs  # noqa: E402

TESTS = Path(__file__).resolve().parents[1]  # tests/: fakes.py


@pytest.fixture(scope="module")
def cluster():
    """Two single-threaded worker processes and a scheduler, all on 127.0.0.1.

    ``allowed-failures: 0`` makes a task that kills its worker fail at once (Dask would
    otherwise retry it on three more workers before giving up)."""
    pytest.importorskip("distributed")
    import dask
    import distributed

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      host="127.0.0.1", dashboard_address=None,
                                      worker_dashboard_address=None) as c:
            yield c


def invoke(args, **kw):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, **kw)


def _tree(out: Path) -> dict[str, bytes]:
    """Every file under ``out`` (relative path -> bytes) except the lock file, the run state
    and the manifest (whose timing fields differ between runs); in the settings files, the
    execution provider is left out (a local run records this process's, a Dask run null: each
    worker chooses its own)."""
    tree = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name not in ("lock", "manifest.jsonl")
            and not p.name.startswith("state.sqlite3")}
    for k in tree:
        if k.startswith(".facealign/settings/"):
            doc = json.loads(tree[k])
            assert doc["settings"].pop("execution_provider") in (None, "CPUExecutionProvider")
            tree[k] = json.dumps(doc).encode()
    return tree


def _manifest(out: Path, timing=False) -> list[dict]:
    recs = read_manifest(out / "manifest.jsonl")
    if not timing:
        for r in recs:
            r.pop("seconds")
    return recs


def _photo_folder(tmp_path: Path, photos, n: int) -> Path:
    """``n`` of the sample photos linked into a folder (a symlink is read like the file)."""
    src = tmp_path / "photos"
    src.mkdir()
    for p in photos[:n]:
        (src / p.name).symlink_to(p)
    return src


def _corpus_with_a_bad_file(src: Path) -> None:
    (src / "zz_broken.jpg").write_text("not an image")


def test_detect_on_dask_equals_local_byte_for_byte(cluster, afw_photos, tmp_path):
    src = _photo_folder(tmp_path, afw_photos, 3)
    _corpus_with_a_bad_file(src)
    local, remote = tmp_path / "local", tmp_path / "dask"
    r = invoke(["detect", src, "--out", local, "-q"])
    assert r.exit_code == 1, r.stderr
    r = invoke(["detect", src, "--out", remote, "-q", "--backend", "dask",
                "--scheduler", cluster.scheduler_address])
    assert r.exit_code == 1, r.stderr
    assert "Traceback" not in r.stderr
    a, b = _tree(local), _tree(remote)
    assert sum(k.endswith(".json") and "/" not in k for k in a) == 3  # 3 outputs, none for the bad
    assert a == b
    assert _manifest(local) == _manifest(remote)
    assert _manifest(remote)[-1]["error"] == "NotAnImageError"
    settings = [json.loads((o / ".facealign/settings/detect.json").read_text())["settings"]
                for o in (local, remote)]
    assert [s["execution_provider"] for s in settings] == ["CPUExecutionProvider", None]
    # resume: with nothing left to do the scheduler is not even contacted
    r = invoke(["detect", src, "--out", remote, "--exclude", "zz_*", "--backend", "dask",
                "--scheduler", "tcp://127.0.0.1:9"], env={"FACEALIGN_DASK_TIMEOUT": "1"})
    assert r.exit_code == 0, r.stderr
    assert [m["status"] for m in _manifest(remote)] == ["skipped"] * 3


def test_landmarks_pose_mesh_on_dask_equal_local(cluster, afw_photos, mesh_ready, tmp_path):
    src = _photo_folder(tmp_path, afw_photos, 2)
    env = {"FACEALIGN_WEIGHTS": str(mesh_ready)}
    for command, extra in (("landmarks", []), ("pose", []), ("mesh", ["--max-faces", "1"])):
        local, remote = tmp_path / f"{command}_local", tmp_path / f"{command}_dask"
        r = invoke([command, src, "--out", local, "-q", *extra], env=env)
        assert r.exit_code == 0, r.stderr
        r = invoke([command, src, "--out", remote, "-q", *extra, "--backend", "dask",
                    "--scheduler", cluster.scheduler_address], env=env)
        assert r.exit_code == 0, r.stderr
        a, b = _tree(local), _tree(remote)
        assert len(a) >= 2 and a == b, command  # outputs (or pose.csv) + settings
        assert _manifest(local) == _manifest(remote)


def test_ndjson_stream_on_dask(cluster, afw_photos, tmp_path):
    src = _photo_folder(tmp_path, afw_photos, 2)
    local = invoke(["detect", src, "--out", "-", "-q"])
    remote = invoke(["detect", src, "--out", "-", "-q", "--backend", "dask",
                     "--scheduler", cluster.scheduler_address])
    assert local.exit_code == remote.exit_code == 0, remote.stderr
    lines = remote.stdout.splitlines()
    assert len(lines) == 2 and all(json.loads(ln)["status"] == "ok" for ln in lines)
    assert remote.stdout == local.stdout


def _synthetic(src: Path, n: int) -> None:
    src.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = np.full((60, 80, 3), 30 + 15 * i, np.uint8)
        img[20:, :40] = 200
        (src / f"s{i:02d}.png").write_bytes(cv2.imencode(".png", img)[1].tobytes())


def _run(src, out, **kw):
    items = collect_inputs([str(src)])
    err = io.StringIO()
    s = run_batch(items, RunOptions.make(command="landmarks", out=str(out), progress="never", **kw),
                  stderr=err)
    return s, err.getvalue()


def test_model_built_once_per_worker_and_order_kept(cluster, tmp_path):
    src = tmp_path / "in"
    _synthetic(src, 12)
    log = tmp_path / "builds.log"
    s, err = _run(src, tmp_path / "dask", backend="dask", scheduler=cluster.scheduler_address,
                  chunk_size=1, aligner_factory=FakeFactory(log=str(log)))
    assert (s.ok, s.exit_code) == (12, 0), err
    pids = log.read_text().split()
    import distributed

    with distributed.Client(cluster) as client:
        worker_pids = set(client.run(os.getpid).values())
    assert 1 <= len(pids) <= 2 and len(set(pids)) == len(pids)  # once per worker process
    assert {int(p) for p in pids} <= worker_pids
    paths = [r["path"] for r in _manifest(tmp_path / "dask")]
    assert [Path(p).name for p in paths] == [f"s{i:02d}.png" for i in range(12)]
    s2, _ = _run(src, tmp_path / "local", aligner_factory=FakeFactory())
    assert _tree(tmp_path / "local") == _tree(tmp_path / "dask")


def test_worker_crash_fails_only_its_image(cluster, tmp_path):
    src = tmp_path / "in"
    _synthetic(src, 6)
    img = np.full((33, 33, 3), 90, np.uint8)  # the fake model kills its process on 33 x 33
    (src / "s03.png").write_bytes(cv2.imencode(".png", img)[1].tobytes())
    s, err = _run(src, tmp_path / "o", backend="dask", scheduler=cluster.scheduler_address,
                  chunk_size=2, aligner_factory=FakeFactory(crash=True))
    by = {Path(r["path"]).name: r for r in _manifest(tmp_path / "o")}
    assert by["s03.png"]["error"] == "WorkerCrashed", err
    assert (s.exit_code, s.ok, s.failed) == (1, 5, 1)
    cluster.wait_for_workers(2, timeout=30)  # the nanny restarts the killed workers


def test_unreachable_scheduler_is_exit_2_and_writes_nothing(tmp_path):
    pytest.importorskip("distributed")
    src = tmp_path / "in"
    _synthetic(src, 1)
    out = tmp_path / "o"
    code = ("import sys\nfrom facealign_cli.cli.main import main\n"
            f"main(['detect', {str(src)!r}, '--out', {str(out)!r}, '--backend', 'dask', "
            "'--scheduler', 'tcp://127.0.0.1:9'])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "FACEALIGN_DASK_TIMEOUT": "1"})
    assert r.returncode == 2, r.stderr
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (out / "manifest.jsonl").exists() and not list(out.glob("*.json"))
    r = invoke(["detect", src, "--out", out, "--backend", "dask", "--scheduler", "nonsense"])
    assert r.exit_code == 2 and "not a Dask scheduler address" in r.stderr


@pytest.mark.parametrize("address,message", [
    ("tls://127.0.0.1:9", "needs a TLS configuration"),
    ("inproc://127.0.0.1/1/1", "inproc:// scheduler lives inside one Python process"),
    ("ucx://127.0.0.1:9", "cannot connect over ucx://"),
])
def test_unusable_scheme_fails_fast_without_a_traceback(tmp_path, address, message):
    """Issue 24: these addresses once gave the right message, then a hang of twice the
    timeout and a ``Client.__del__`` traceback (a half-started Client). Now refused before a
    Client is made: exit 2, one line, well within the timeout."""
    pytest.importorskip("distributed")
    import time

    src = tmp_path / "in"
    _synthetic(src, 1)
    out = tmp_path / "o"
    code = ("from facealign_cli.cli.main import main\n"
            f"main(['detect', {str(src)!r}, '--out', {str(out)!r}, '--backend', 'dask', "
            f"'--scheduler', {address!r}])\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**env, "FACEALIGN_DASK_TIMEOUT": "20"})
    elapsed = time.monotonic() - t0
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and address in r.stderr
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert elapsed < 20, elapsed  # no wait for the timeout (the hang was 2 x 20 s)
    assert not (out / "manifest.jsonl").exists()


def test_dask_options_usage_errors(tmp_path):
    src = tmp_path / "in"
    _synthetic(src, 1)
    out = tmp_path / "o"
    r = invoke(["detect", src, "--out", out, "--backend", "dask"])
    assert r.exit_code == 2 and "--scheduler" in r.stderr
    assert invoke(["detect", src, "--out", out, "--scheduler", "tcp://h:1"]).exit_code == 2
    assert invoke(["detect", src, "--out", out, "--backend", "spark"]).exit_code == 2
    assert not out.exists()


def test_dask_not_installed_is_exit_2(tmp_path):
    src = tmp_path / "in"
    _synthetic(src, 1)
    code = ("import sys\nsys.modules['distributed'] = None  # as if not installed\n"
            "from facealign_cli.cli.main import main\n"
            f"main(['detect', {str(src)!r}, '--out', {str(tmp_path / 'o')!r}, "
            "'--backend', 'dask', '--scheduler', 'tcp://127.0.0.1:9'])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "pip install 'facealign-cli[dask]'" in r.stderr and "Traceback" not in r.stderr


def test_help_does_not_import_dask():
    code = ("import sys\nfrom facealign_cli.cli.main import main\n"
            "for args in (['--help'], ['detect', '--help']):\n"
            "    try:\n        main(args)\n"
            "    except SystemExit as e:\n        assert e.code == 0\n"
            "bad = [m for m in ('dask', 'distributed', 'joblib') if m in sys.modules]\n"
            "assert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
