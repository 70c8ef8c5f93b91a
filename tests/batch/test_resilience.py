"""Batch runs under hostile conditions, end to end through the command line in subprocesses:
a run killed with SIGKILL half-way leaves no partial output and the next run finishes the job
with the outputs an uninterrupted run gives; a second run on the same output folder is refused
while the first goes on; every odd-image case in one run gives exit code 1, a manifest line per
bad file and no traceback (with a bounded memory peak despite a 20000 x 20000 header)."""

from __future__ import annotations

import contextlib
import json
import os
import re
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

from fakes import fake_cli  # noqa: E402
from imgtools import odd_image_corpus  # noqa: E402

#: Hidden temporary names of facealign_cli.io.records.atomic_open (removed by the next run).
TEMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.facealign-tmp$")

def _cli_cmd(args: list, delay: float = 0.0) -> list[str]:
    """A facealign run through the real command line, with the fake model (its speed is set by
    FakeFactory.delay) for this process and its workers; stderr ends with its peak RSS."""
    return fake_cli(args, delay=delay, peak_rss=True)


def _photo(h=90, w=120, seed=0) -> np.ndarray:
    img = np.random.default_rng(seed).integers(0, 200, (h, w, 3), dtype=np.uint8)
    img[h // 3:, : w // 2] = 220
    return img


def _folder_of(n: int, root: Path) -> Path:
    src = root / "in"
    (src / "sub").mkdir(parents=True)
    for i in range(n):
        sub = src / "sub" if i % 3 == 0 else src
        p = sub / f"p{i:02d}.jpg"
        p.write_bytes(cv2.imencode(".jpg", _photo(seed=i))[1].tobytes())
    return src


#: Files of the run state (compared through their rows, not their bytes).
STATE_FILES = re.compile(r"^\.facealign/(lock|state\.sqlite3(-wal|-shm)?)$")


def _tree(out: Path) -> dict[str, bytes]:
    """Files under ``out`` (relative path -> bytes), less the lock, the state database and
    the manifest."""
    return {rel: p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != "manifest.jsonl"
            and not STATE_FILES.match(rel := p.relative_to(out).as_posix())}


def _manifest(out: Path) -> list[dict]:
    return read_manifest(out / "manifest.jsonl")


def _wait_for_done(out: Path, command: str, at_least: int, proc, timeout=90) -> None:
    """Wait until the run has recorded ``at_least`` items (manifest lines)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        with contextlib.suppress(OSError):
            if (out / "manifest.jsonl").read_bytes().count(b"\n") >= at_least:
                return
        if proc.poll() is not None:
            pytest.fail("the run ended before it could be killed: "
                        + proc.stderr.read().decode(errors="replace"))
        time.sleep(0.01)
    proc.kill()
    pytest.fail("the run did not get going")


def _check_killed_state(out: Path, ref: dict[str, bytes], command: str) -> int:
    """After a SIGKILL: every file under an output's name is complete (equal to the
    uninterrupted run's), every item the state records as done points at complete outputs,
    the manifest's lines are whole but perhaps the last, and anything else is a hidden
    temporary file. Returns the number of items recorded done."""
    for p in sorted(out.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(out).as_posix()
        if rel == "manifest.jsonl" or STATE_FILES.match(rel) or TEMP.match(p.name):
            continue
        assert rel in ref, f"unexpected file {rel}"
        assert p.read_bytes() == ref[rel], f"{rel} differs from the uninterrupted run's"
    db = RunDB(out)  # (recovers the write-ahead log of the killed writer)
    rows = list(db.iter_items(command))
    db.close()
    assert all(r.status == "ok" for r in rows)
    for r in rows:
        for o in r.outputs:
            assert (out / o).read_bytes() == ref[o]
    lines = (out / "manifest.jsonl").read_bytes().split(b"\n")
    for ln in lines[:-2]:
        json.loads(ln)
    return len(rows)


@pytest.mark.parametrize("jobs", [1, 2])
def test_sigkill_half_way_then_resume_gives_the_uninterrupted_outputs(tmp_path, jobs):
    n = 30
    src = _folder_of(n, tmp_path)
    ref_out, out = tmp_path / "ref", tmp_path / "out"
    r = subprocess.run(_cli_cmd(["landmarks", src, "--out", ref_out, "-q"]),
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    ref = _tree(ref_out)
    assert sum(1 for k in ref if not k.startswith(".facealign")) == n

    # Killed like the OOM killer or `kill -9` of a cron job's process group: no handler runs.
    args = ["landmarks", src, "--out", out, "-q", "--jobs", jobs]
    proc = subprocess.Popen(_cli_cmd(args, delay=0.1), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for_done(out, "landmarks", 5, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    n_done = _check_killed_state(out, ref, "landmarks")
    assert n_done < n
    # A writer killed inside a write leaves its hidden temporary file (rare to hit by timing,
    # so planted here); it is never taken for an output and the next run removes it.
    (out / ".p04.json.k1ll3d_x.facealign-tmp").write_text('{"path": "half a JS')
    (out / "sub").mkdir(exist_ok=True)
    (out / "sub" / ".p03.json.zz9_ab12.facealign-tmp").write_text("")

    r = subprocess.run(_cli_cmd(["landmarks", src, "--out", out, "-q"]), capture_output=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    man = _manifest(out)
    assert len(man) == n
    statuses = [m["status"] for m in man]
    assert statuses.count("skipped") == n_done and statuses.count("ok") == n - n_done
    assert _tree(out) == ref  # every output, byte for byte
    assert not [p for p in out.rglob("*") if TEMP.match(p.name)]
    db = RunDB(out, readonly=True)  # the state agrees with the outputs
    rows = list(db.iter_items("landmarks"))
    db.close()
    assert len(rows) == n and all(r.status == "ok" for r in rows)
    assert sorted(o for r in rows for o in r.outputs) == sorted(
        k for k in ref if not k.startswith(".facealign"))


def test_sigkill_real_detect_then_resume(afw_photos, tmp_path):
    """The same with the real detector and the installed command, over 30 sample photos."""
    folder = afw_photos[0].parent
    photos = sorted(folder.glob("*.jpg"))[:30]
    src = tmp_path / "photos"
    src.mkdir()
    for p in photos:
        (src / p.name).symlink_to(p)
    cmd = [sys.executable, "-m", "facealign_cli.cli.main", "detect", str(src), "-q", "--out"]
    ref_out, out = tmp_path / "ref", tmp_path / "out"
    r = subprocess.run(cmd + [str(ref_out)], capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    ref = _tree(ref_out)
    proc = subprocess.Popen(cmd + [str(out)], start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    _wait_for_done(out, "detect", 3, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the run finished before the kill landed (machine too fast)")
    n_done = _check_killed_state(out, ref, "detect")
    r = subprocess.run(cmd + [str(out)], capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    assert [m["status"] for m in _manifest(out)].count("skipped") == n_done
    assert _tree(out) == ref


def test_a_second_run_on_the_same_folder_is_refused_while_the_first_goes_on(tmp_path):
    """The lock is held here, as a first run holds it (no race with a real run, whose speed
    would decide whether the second one starts in time): the second run is refused with exit 2
    and writes nothing; a run holds the lock while it processes (checked from inside one)."""
    from fakes import FakeFactory

    from facealign_cli.batch.errors import OutputLockedError
    from facealign_cli.batch.options import RunOptions
    from facealign_cli.batch.runner import run_batch
    from facealign_cli.batch.state import OutputLock
    from facealign_cli.io.inputs import collect_inputs

    src = _folder_of(12, tmp_path)
    out = tmp_path / "out"
    with OutputLock(out):  # the first run, under way
        second = subprocess.run(_cli_cmd(["pose", src, "--out", out]), capture_output=True,
                                timeout=120)
        assert sorted(p.name for p in out.rglob("*")) == [".facealign", "lock"]
    assert second.returncode == 2
    err = second.stderr.decode()
    assert "in use by another facealign run" in err and f"pid {os.getpid()} " in err
    assert "Traceback" not in err

    refused = []

    class LockProbe(FakeFactory):  # builds the model of a run: is its folder locked then?
        def __call__(self, opts, threads):
            try:
                with OutputLock(Path(opts.out)):
                    pass
            except OutputLockedError:
                refused.append(opts.out)
            return super().__call__(opts, threads)

    items = collect_inputs([str(src)], skip_dirs=[str(out)])
    s = run_batch(items, RunOptions.make(command="pose", out=str(out), aligner_factory=LockProbe(),
                                    progress="never", quiet=True))
    assert s.exit_code == 0 and refused == [str(out)]
    assert len(_manifest(out)) == 12 and all(m["status"] == "ok" for m in _manifest(out))
    # a different output folder is independent
    other = subprocess.run(_cli_cmd(["pose", src, "--out", tmp_path / "other", "-q"]),
                           capture_output=True, timeout=120)
    assert other.returncode == 0
    assert (out / "pose.csv").read_bytes() == (tmp_path / "other" / "pose.csv").read_bytes()
    # after the first run ended, the second one goes through (all done already)
    again = subprocess.run(_cli_cmd(["pose", src, "--out", out, "-q"]), capture_output=True,
                           timeout=120)
    assert again.returncode == 0 and {m["status"] for m in _manifest(out)} == {"skipped"}


def _check_corpus_run(expected: dict, out: Path, returncode: int, stderr: str) -> None:
    assert returncode == 1, stderr
    assert "Traceback" not in stderr
    man = {Path(m["path"]).name: m for m in _manifest(out)}
    assert set(man) == set(expected)
    for name, error in expected.items():
        m = man[name]
        if name == "huge_header.jpg":  # refused, or decoded reduced (never at 20000 x 20000)
            assert m["status"] == "failed" or "decoded at 1/" in m["message"], m
            continue
        if error is None:
            assert m["status"] == "ok", m
            assert m["outputs"] and all((out / o).is_file() for o in m["outputs"]), m
        else:
            assert (m["status"], m["error"]) == ("failed", error), m
            assert m["outputs"] == [] and m["message"]
            assert name in stderr  # one line per failure, naming the file
    assert man["dot.png"]["n_faces"] == 0


def test_every_odd_image_in_one_run(tmp_path):
    src = tmp_path / "archive"
    expected = odd_image_corpus(src, _photo(240, 320))
    out = tmp_path / "out"
    r = subprocess.run(_cli_cmd(["landmarks", src, "--out", out]), capture_output=True,
                       timeout=120)
    err = r.stderr.decode("utf-8", errors="replace")
    _check_corpus_run(expected, out, r.returncode, err)
    assert "7 failed" in err  # the summary line
    # The 20000 x 20000 headers were never decoded at that size (1.2 GB for the JPEG's pixels).
    peak = re.search(r"PEAK_RSS_KIB (\w+)", err).group(1)
    if peak != "unknown":  # Linux
        assert int(peak) / 1024 < 700, f"peak RSS {int(peak) / 1024:.0f} MiB"

    # The same corpus streamed as NDJSON: one parseable line per image, in input order.
    r = subprocess.run(_cli_cmd(["detect", src, "--out", "-", "-q"]), capture_output=True,
                       timeout=120)
    assert r.returncode == 1 and b"Traceback" not in r.stderr
    lines = r.stdout.decode("utf-8").splitlines()
    recs = [json.loads(line) for line in lines]
    names = sorted(expected, key=lambda s: s)  # folders are walked in sorted order
    assert [Path(x["path"]).name for x in recs] == names
    for x in recs:
        if expected[Path(x["path"]).name] is not None:
            assert x["status"] == "failed" and x["faces"] == []


def test_every_odd_image_in_one_run_real_model(afw_photos, real_weights, tmp_path):
    photo = cv2.imread(str(afw_photos[0]))
    photo = cv2.resize(photo, (photo.shape[1] // 2, photo.shape[0] // 2),
                       interpolation=cv2.INTER_AREA)
    src = tmp_path / "archive"
    expected = odd_image_corpus(src, photo)
    out = tmp_path / "out"
    env = {**os.environ, "FACEALIGN_WEIGHTS": str(real_weights)}
    r = subprocess.run([sys.executable, "-m", "facealign_cli.cli.main", "landmarks", str(src),
                        "--out", str(out)], capture_output=True, timeout=600, env=env)
    _check_corpus_run(expected, out, r.returncode, r.stderr.decode("utf-8", errors="replace"))
    man = {Path(m["path"]).name: m for m in _manifest(out)}
    for name in ("good.jpg", "gray.png", "rgba.png", "gray_alpha.png", "deep16.png",
                 "exif_rotated.jpg", "фото лица.jpg"):
        assert man[name]["n_faces"] >= 1, name
