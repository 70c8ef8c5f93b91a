"""Where the regressor's files are, their checksums, the arch names, and the one message for a
missing torch (no torch import: the ONNX Runtime path and ``facealign --help`` use this without
loading torch).

The shipped model files live in ``weights/`` at the root of the source tree (beside the model
card). A wheel carries them as the data-only package ``facealign_cli._weights`` (``setup.cfg``
maps that package onto ``weights/``), so :func:`default_weights_path` looks in both places.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

DEFAULT_WEIGHTS_NAME = "facealign_v3.pth"

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
    if (installed / DEFAULT_WEIGHTS_NAME).is_file():
        return installed
    return package.parent / "weights"


def default_weights_path() -> Path:
    """Where the shipped weights are: ``facealign_v3.pth`` in :func:`weights_dir` (the command
    line reads ``$FACEALIGN_WEIGHTS`` and passes it on as an explicit path)."""
    return weights_dir() / DEFAULT_WEIGHTS_NAME


def weights_not_found(path: str | Path) -> FileNotFoundError:
    """The error for a missing checkpoint: names the path and how to give another one."""
    return FileNotFoundError(
        f"regressor weights not found: {path} (give a checkpoint with --weights PATH or "
        f"$FACEALIGN_WEIGHTS; the shipped ones are {DEFAULT_WEIGHTS_NAME} in "
        f"facealign_cli/_weights of an installed wheel, weights/ of a source checkout)")


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
