"""Where the regressor's files are, their checksums, the arch names, and the one message for a
missing torch (no torch import: the ONNX Runtime path and ``facealign --help`` use this without
loading torch).

The shipped model files live in ``weights/`` at the root of the source tree (beside the model
card): ``facealign_<name>.pth`` (the checkpoint, torch) and ``facealign_<name>.onnx`` (its ONNX
export, what the image commands run), ``<name>`` being ``v1``, ``v3``, ... A wheel carries the
ONNX exports only, as the data-only package ``facealign_cli._weights`` (``setup.cfg`` maps that
package onto ``weights/``; the ``.pth`` files stay in the repository and the sdist), so
:func:`weights_dir` looks in both places and a shipped model is known by its name
(:func:`shipped_weights`, :func:`resolve_weights`: ``--weights v1``).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

#: The name of the default shipped weights (``weights/facealign_<name>.onnx`` / ``.pth``): the
#: one place to change when a new version becomes the default.
DEFAULT_WEIGHTS = "v4"
#: File name of the default checkpoint (``facealign_v3.pth``).
DEFAULT_WEIGHTS_NAME = f"facealign_{DEFAULT_WEIGHTS}.pth"
_SHIPPED = re.compile(r"facealign_(v\d+)\.onnx")

#: What to install for the parts that need torch (``train``, ``export-onnx``,
#: ``--runtime torch``, ``--baseline-3ddfa``): the ``[train]`` extra, torch pinned and first.
TORCH_INSTALL = "python3 -m pip install torch==2.13.0 onnx"

#: The arches of :class:`facealign_cli.models.regressor.FaceAlignNet`: (out channels, stride) of
#: each depthwise-separable block after the stem (``stem`` channels, stride 2). Plain data, here
#: so that a training recipe is checked without torch.
ARCHS: dict[str, list[tuple[int, int]]] = {
    "dws_s": [(32, 2), (32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (128, 1), (128, 1),
              (256, 2), (256, 1), (512, 1)],
    "dws_m": [(32, 2), (48, 1), (64, 2), (96, 1), (128, 2), (192, 1), (192, 1), (192, 1),
              (256, 2), (384, 1), (512, 1)],
    # MobileNet-V1 x0.5 (Howard et al. 2017; the layout of 3DDFA-V2's regressor, about 46 M
    # multiply-adds per 120-px face): use with stem = 16
    "mb05": [(32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (256, 1),
             (256, 1), (256, 1), (256, 1), (512, 2), (512, 1)],
}

#: Old arch names of :data:`ARCHS` -> current ones. ``fan_*``
#: collided with FAN (Bulat & Tzimiropoulos 2017), the field's best-known landmark network;
#: checkpoints, ONNX exports and configs that store an old name still load.
ARCH_ALIASES = {"fan_s": "dws_s", "fan_m": "dws_m"}


def canonical_arch(arch: str | None) -> str | None:
    """The current name of an arch (``"fan_m"`` -> ``"dws_m"``); unknown names unchanged."""
    return ARCH_ALIASES.get(arch, arch) if arch is not None else None


class CheckpointError(ValueError):
    """A file given as a regressor checkpoint is not one facealign can load (not a torch file,
    not a dict, a key missing, an unknown arch, weights of another shape). ``str(err)`` is one
    line naming the file. A ``ValueError``: the file is bad input, not a setup problem."""


#: The keys every facealign checkpoint holds
#: (:func:`facealign_cli.models.regressor.read_checkpoint`).
CHECKPOINT_KEYS = ("model", "arch", "param_mean", "param_std")


class TorchMissingError(ImportError):
    """A part of facealign that needs torch was used where torch is not installed. ``str(err)``
    is one line ending with the command that installs it (:data:`TORCH_INSTALL`)."""


def torch_missing(feature: str) -> TorchMissingError:
    """The error for ``feature`` (e.g. ``"--runtime torch"``) needing the missing torch."""
    return TorchMissingError(f"{feature} needs torch, which is not installed; install it with: "
                             f"{TORCH_INSTALL}")


def import_torch(feature: str):
    """``import torch``, or :class:`TorchMissingError` naming ``feature`` and the fix."""
    try:
        import torch
    except ImportError as exc:
        raise torch_missing(feature) from exc
    return torch

#: Values of ``--runtime`` / ``$FACEALIGN_RUNTIME`` (see
#: :func:`facealign_cli.models.regressor_onnx.make_regressor`).
RUNTIMES = ("auto", "onnxruntime", "torch")


def weights_dir() -> Path:
    """The folder of the shipped model files: ``facealign_cli/_weights/`` of an installed wheel,
    else ``weights/`` at the root of the source tree (a checkout or an editable install)."""
    package = Path(__file__).resolve().parents[1]
    installed = package / "_weights"
    if (installed / f"facealign_{DEFAULT_WEIGHTS}.onnx").is_file():
        return installed
    return package.parent / "weights"


def shipped_weights() -> dict[str, Path]:
    """The shipped models by name: ``{"v1": .../facealign_v1.pth, "v3": ...}``, one entry per
    ``facealign_v<N>.onnx`` in :func:`weights_dir`, sorted by N. The path is the checkpoint
    (``.pth``) where it lies beside the export (a source checkout), else the ``.onnx`` (a wheel):
    both are accepted wherever weights are."""
    found = []
    folder = weights_dir()
    for f in folder.glob("facealign_v*.onnx") if folder.is_dir() else ():
        m = _SHIPPED.fullmatch(f.name)
        if m:
            pth = f.with_suffix(".pth")
            found.append((int(m.group(1)[1:]), m.group(1), pth if pth.is_file() else f))
    return {name: path for _, name, path in sorted(found)}


def default_weights_path() -> Path:
    """Where the default shipped weights (:data:`DEFAULT_WEIGHTS`) are: the checkpoint
    ``facealign_v3.pth`` in :func:`weights_dir` where it is there (a source checkout), else its
    ONNX export ``facealign_v3.onnx`` (a wheel). The command line reads ``$FACEALIGN_WEIGHTS``
    and passes it on through :func:`resolve_weights`."""
    folder = weights_dir()
    pth = folder / DEFAULT_WEIGHTS_NAME
    return pth if pth.is_file() else pth.with_suffix(".onnx")


def resolve_weights(spec: str | Path | None) -> Path:
    """The weights file that ``--weights SPEC`` / ``$FACEALIGN_WEIGHTS`` names.

    Args:
        spec: None or ``"default"`` (:func:`default_weights_path`), the name of a shipped model
            (``"v1"``, ``"v3"``: a key of :func:`shipped_weights`), or a path (a ``.pth``
            checkpoint, or an ``.onnx`` export made by ``facealign export-onnx``). An existing
            file of that name wins over a shipped name.

    Raises:
        FileNotFoundError: no such file and no such shipped name (the message lists the
            shipped names).
    """
    if spec is None or str(spec) == "default":
        return default_weights_path()
    path = Path(spec)
    if path.is_file():
        return path
    shipped = shipped_weights()
    if str(spec) in shipped:
        return shipped[str(spec)]
    raise weights_not_found(path)


def weights_not_found(path: str | Path) -> FileNotFoundError:
    """The error for missing weights: names the path, the shipped names and how to give
    another file."""
    names = ", ".join(shipped_weights()) or "none found"
    return FileNotFoundError(
        f"regressor weights not found: {path} (give a shipped name -- {names}; default "
        f"{DEFAULT_WEIGHTS} -- or a checkpoint or ONNX file with --weights or "
        f"$FACEALIGN_WEIGHTS)")


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file (read in 1 MiB chunks).

    Raises:
        OSError: the file cannot be read.
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
