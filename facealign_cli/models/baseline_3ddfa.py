"""The 3DDFA-V2 MobileNet-V1 regressor, run from a weights file the user supplies.

facealign never ships or downloads these weights. They are used (a) as the teacher that
pseudo-labels the training faces (``facealign train``) and (b) as the side-by-side baseline of
``facealign evaluate --baseline-3ddfa PATH``.

Architecture (Howard et al. 2017, MobileNet-V1, as used by 3DDFA-V2 with width multiplier 0.5):
a 3x3 stride-2 convolution, 13 depthwise-separable blocks (strides 1,2,1,2,1,2,1,1,1,1,1,2,1),
global average pooling and a 62-output linear layer (an unused 136-output landmark head is
kept so that the state dict loads). Input: BGR crop 120 x 120, ``(x - 127.5) / 128``. Output
``y * std + mean`` gives the 62 parameters (see :mod:`facealign_cli.core.geometry`).
"""

from __future__ import annotations

import functools
import pickle
from pathlib import Path

import numpy as np

from facealign_cli.models.weights import import_torch

#: What needs this module's torch (shown when torch is missing).
_FEATURE = "the 3DDFA-V2 baseline (--baseline-3ddfa, the teacher of facealign train)"

_BLOCKS = [  # name, in, out, stride (width 1.0 channels; scaled by the width multiplier)
    ("dw2_1", 32, 64, 1), ("dw2_2", 64, 128, 2), ("dw3_1", 128, 128, 1),
    ("dw3_2", 128, 256, 2), ("dw4_1", 256, 256, 1), ("dw4_2", 256, 512, 2),
    ("dw5_1", 512, 512, 1), ("dw5_2", 512, 512, 1), ("dw5_3", 512, 512, 1),
    ("dw5_4", 512, 512, 1), ("dw5_5", 512, 512, 1), ("dw5_6", 512, 1024, 2),
    ("dw6", 1024, 1024, 1),
]


@functools.cache
def _network_class():
    """The torch module class of the network, defined on first use so that importing this
    module needs no torch (torch is the optional ``[train]`` extra).

    Raises:
        TorchMissingError: torch is not installed.
    """
    torch = import_torch(_FEATURE)
    nn = torch.nn

    class _DepthwiseSeparable(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.conv_dw = nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False)
            self.bn_dw = nn.BatchNorm2d(cin)
            self.conv_sep = nn.Conv2d(cin, cout, 1, 1, 0, bias=False)
            self.bn_sep = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x):
            x = self.relu(self.bn_dw(self.conv_dw(x)))
            return self.relu(self.bn_sep(self.conv_sep(x)))

    class MobileNetV1Regressor(nn.Module):
        """3DDFA-V2's MobileNet-V1 (width ``widen``) mapping (B, 3, 120, 120) float32 to
        (B, 62) normalised parameters."""

        def __init__(self, widen: float = 0.5, num_classes: int = 62):
            super().__init__()
            c = lambda n: int(n * widen)  # noqa: E731
            self.conv1 = nn.Conv2d(3, c(32), 3, 2, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(c(32))
            self.relu = nn.ReLU(inplace=True)
            for name, cin, cout, s in _BLOCKS:
                setattr(self, name, _DepthwiseSeparable(c(cin), c(cout), s))
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc_param = nn.Linear(c(1024), num_classes)
            self.fc_lm = nn.Linear(c(1024), 136)

        def forward(self, x):
            x = self.relu(self.bn1(self.conv1(x)))
            for name, *_ in _BLOCKS:
                x = getattr(self, name)(x)
            return self.fc_param(self.avgpool(x).flatten(1))

    return MobileNetV1Regressor


def __getattr__(name: str):
    # ``MobileNetV1Regressor`` stays importable from here; it needs torch, so it is made lazily
    if name == "MobileNetV1Regressor":
        return _network_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Baseline3DDFA:
    """Runs the user-supplied 3DDFA-V2 MobileNet weights on 120x120 BGR crops.

    Args:
        weights: path to ``mb05_120x120.pth`` (a checkpoint with ``state_dict`` whose keys may
            carry a ``module.`` prefix).
        mean_std: path to ``param_mean_std_62d_120x120.pkl`` (dict with ``mean`` and ``std``,
            (62,) each). Default: ``param_mean_std_62d_120x120.pkl`` beside ``weights``.

    Raises:
        FileNotFoundError: a file is missing.
        TorchMissingError: torch is not installed (an ``ImportError`` whose message gives the
            install command).
    """

    input_size = 120

    def __init__(self, weights: str | Path, mean_std: str | Path | None = None,
                 num_threads: int | None = None):
        weights = Path(weights)
        mean_std = Path(mean_std) if mean_std else weights.with_name(
            "param_mean_std_62d_120x120.pkl")
        torch = import_torch(_FEATURE)
        ck = torch.load(weights, map_location="cpu", weights_only=False)
        sd = ck.get("state_dict", ck)
        sd = {k.removeprefix("module."): v for k, v in sd.items()}
        self.net = _network_class()(widen=0.5)
        self.net.load_state_dict(sd)
        self.net.eval()
        with open(mean_std, "rb") as f:
            ms = pickle.load(f)
        self.mean = np.asarray(ms["mean"], dtype=np.float32)
        self.std = np.asarray(ms["std"], dtype=np.float32)
        if num_threads:
            torch.set_num_threads(num_threads)

    def predict(self, crops_bgr: np.ndarray) -> np.ndarray:
        """62 parameters for a batch of crops.

        Args:
            crops_bgr: (B, 120, 120, 3) uint8 BGR crops.

        Returns:
            (B, 62) float32 parameters in the 120-px crop frame.
        """
        import torch  # present: __init__ checked

        from facealign_cli.models.regressor import normalise_crops  # the same input rule

        with torch.inference_mode():
            y = self.net(normalise_crops(crops_bgr)).numpy()
        return y * self.std + self.mean
