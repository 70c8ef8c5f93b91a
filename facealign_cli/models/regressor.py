"""The project's 3DMM parameter regressor: a compact CNN from a 120 x 120 roi crop to 62
parameters, and the object that loads the shipped weights and runs it.

Architecture ("FaceAlignNet", arches ``dws_s`` / ``dws_m`` "depthwise-separable", and ``mb05``;
the old names ``fan_s`` / ``fan_m`` are aliases, :data:`ARCH_ALIASES`): a MobileNet-style stack of
depthwise-separable blocks (Howard et al. 2017), narrower and shallower at low resolution
than 3DDFA-V2's MobileNet-V1, global average pooling and one linear layer to the 62
normalised parameters. The network's output ``y`` maps to parameters with
``y * param_std + param_mean`` (both stored in the checkpoint). Input: the roi crop, BGR
uint8, normalised as ``(x - 127.5) / 128``.

Needs torch (the ``[train]`` extra): importing this module without it raises
:class:`~facealign_cli.models.weights.TorchMissingError` with the install command. The image
commands run the ONNX export instead (:mod:`facealign_cli.models.regressor_onnx`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facealign_cli.models.weights import (  # noqa: F401 - DEFAULT_WEIGHTS_NAME, sha256_of: re-exported
    ARCH_ALIASES,
    ARCHS,
    CHECKPOINT_KEYS,
    DEFAULT_WEIGHTS_NAME,
    CheckpointError,
    canonical_arch,
    default_weights_path,
    import_torch,
    sha256_of,
    weights_not_found,
)

torch = import_torch("the torch regressor (--runtime torch, train, export-onnx)")
nn = torch.nn


class _DWBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False)
        self.bn1 = nn.BatchNorm2d(cin)
        self.pw = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.act(self.bn1(self.dw(x)))
        return self.act(self.bn2(self.pw(x)))


class FaceAlignNet(nn.Module):
    """CNN mapping (B, 3, S, S) float32 normalised crops to (B, 62) normalised parameters.

    Args:
        arch: key of :data:`ARCHS` or an old name of :data:`ARCH_ALIASES`.
        stem: channels of the first (3x3, stride 2) convolution.
        n_out: number of outputs (62).
    """

    def __init__(self, arch: str = "dws_s", stem: int = 16, n_out: int = 62):
        super().__init__()
        if canonical_arch(arch) not in ARCHS:
            raise KeyError(f"unknown arch {arch!r}; expected one of {sorted(ARCHS)} "
                           f"(or an old name: {sorted(ARCH_ALIASES)})")
        layers: list[nn.Module] = [nn.Conv2d(3, stem, 3, 2, 1, bias=False), nn.BatchNorm2d(stem),
                                   nn.ReLU(inplace=True)]
        c = stem
        for cout, s in ARCHS[canonical_arch(arch)]:
            layers.append(_DWBlock(c, cout, s))
            c = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def normalise_crops(crops_bgr: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(B, S, S, 3) uint8 BGR crops to the (B, 3, S, S) float32 network input."""
    x = torch.as_tensor(np.ascontiguousarray(crops_bgr)).permute(0, 3, 1, 2).float()
    return (x - 127.5) / 128.0


def _brief(exc: BaseException) -> str:
    """``Type: message`` on one line (a multi-line message joined, at most 240 characters)."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return f"{type(exc).__name__}: {text[:240]}"


def read_checkpoint(path: str | Path) -> dict:
    """Load a facealign checkpoint (``torch.save`` of a dict) and check its layout.

    Args:
        path: the ``.pth`` file.

    Returns:
        The checkpoint dict: at least :data:`~facealign_cli.models.weights.CHECKPOINT_KEYS`
        (``model``: the state dict; ``arch``: a name of ``ARCHS`` or ``ARCH_ALIASES``;
        ``param_mean`` / ``param_std``: (62,) float), optionally ``stem`` and ``input_size``.

    Raises:
        CheckpointError: the file cannot be unpickled by torch (a text file, a plain pickle),
            holds something other than a dict, lacks a key, or names an unknown arch.
    """
    try:
        ck = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # UnpicklingError, "Invalid magic number", EOFError, ...
        raise CheckpointError(f"{path} is not a facealign checkpoint: torch.load cannot read "
                              f"it ({_brief(exc)})") from None
    if not isinstance(ck, dict):
        raise CheckpointError(f"{path} is not a facealign checkpoint: it holds a "
                              f"{type(ck).__name__}, not a dict with the keys "
                              f"{', '.join(CHECKPOINT_KEYS)}")
    missing = [k for k in CHECKPOINT_KEYS if k not in ck]
    if missing:
        keys = ", ".join(repr(k) for k in list(ck)[:8]) + (", ..." if len(ck) > 8 else "")
        raise CheckpointError(f"{path} is not a facealign checkpoint: it lacks "
                              f"{', '.join(repr(k) for k in missing)} (its keys: "
                              f"{keys or 'none'}; facealign train writes checkpoints)")
    if canonical_arch(ck["arch"]) not in ARCHS:
        raise CheckpointError(f"{path}: unknown arch {ck['arch']!r}; expected one of "
                              f"{sorted(ARCHS)} (or an old name: {sorted(ARCH_ALIASES)})")
    return ck


class Regressor:
    """Loads a facealign checkpoint and regresses 3DMM parameters from roi crops.

    Args:
        weights: checkpoint path (default :func:`default_weights_path`).
        num_threads: torch intra-op threads (``None`` keeps torch's default).

    Raises:
        FileNotFoundError: the checkpoint is missing.
        CheckpointError: the file is not a facealign checkpoint (:func:`read_checkpoint`), or
            its weights do not fit its arch.

    See :func:`facealign_cli.models.regressor_onnx.make_regressor` for the faster ONNX Runtime path
    the CLI uses by default.
    """

    runtime = "torch"

    def __init__(self, weights: str | Path | None = None, num_threads: int | None = None):
        path = Path(weights) if weights else default_weights_path()
        if not path.is_file():
            raise weights_not_found(path)
        ck = read_checkpoint(path)
        self.path = path
        self.arch = canonical_arch(ck["arch"])  # "fan_m" of older checkpoints -> "dws_m"
        self.input_size = int(ck.get("input_size", 120))
        self.net = FaceAlignNet(ck["arch"], stem=ck.get("stem", 16))
        try:
            self.net.load_state_dict(ck["model"])
        except (RuntimeError, TypeError, AttributeError) as exc:  # other shapes or names
            raise CheckpointError(f"{path}: its weights do not fit arch {self.arch!r} "
                                  f"({_brief(exc)})") from None
        self.net.eval()
        # channels-last (NHWC) memory is several times faster for depthwise convolutions on CPU
        self.net = self.net.to(memory_format=torch.channels_last)
        try:
            self.param_mean = np.asarray(ck["param_mean"], dtype=np.float32).reshape(-1)
            self.param_std = np.asarray(ck["param_std"], dtype=np.float32).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: param_mean / param_std are not numbers "
                                  f"({_brief(exc)})") from None
        n_out = self.net.fc.out_features
        if self.param_mean.shape != (n_out,) or self.param_std.shape != (n_out,):
            raise CheckpointError(f"{path}: param_mean / param_std have shapes "
                                  f"{self.param_mean.shape} / {self.param_std.shape}, "
                                  f"expected ({n_out},)")
        self.meta = {k: v for k, v in ck.items() if k not in ("model",)}
        if num_threads:
            torch.set_num_threads(num_threads)

    @torch.inference_mode()
    def predict(self, crops_bgr: np.ndarray) -> np.ndarray:
        """62 parameters for a batch of roi crops.

        Args:
            crops_bgr: (B, S, S, 3) uint8 BGR crops, S = ``self.input_size`` (120).

        Returns:
            (B, 62) float32 parameters (camera in the S-px crop frame, 40 shape, 10 expression).
        """
        if len(crops_bgr) == 0:
            return np.zeros((0, 62), dtype=np.float32)
        x = normalise_crops(crops_bgr).contiguous(memory_format=torch.channels_last)
        y = self.net(x).numpy()
        return y * self.param_std + self.param_mean
