"""Convert a 3DDFA-V2 MobileNet-V1 checkpoint into a facealign ``mb05`` checkpoint.

3DDFA-V2 (Guo et al. 2020, "Towards Fast, Accurate and Stable 3D Dense Face Alignment", MIT
licence) ships its MobileNet-V1 x0.5 regressor as a torch state dict (``conv1``, ``bn1``,
``dw2_1`` ... ``dw6`` each with ``conv_dw`` / ``bn_dw`` / ``conv_sep`` / ``bn_sep``, ``fc_param``
and an unused ``fc_lm`` head) plus a pickle of the 62 parameters' ``mean`` and ``std``. The
project's :class:`~facealign_cli.models.regressor.FaceAlignNet` with arch ``mb05`` and stem 16
has the same layers in the same order; this module renames the tensors (no value changes),
drops ``fc_lm`` and stores the mean and std as the checkpoint's ``param_mean`` / ``param_std``,
so that the converted network's output equals the teacher's to float32 rounding
(``tests/training/test_convert.py``).

Used by ``facealign train`` when a recipe says ``init_from = "teacher"`` (the v4 fine-tune,
``configs/train_v4.toml``); the teacher file itself is never copied into the repository.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from facealign_cli.models.weights import sha256_of

#: 3DDFA-V2's block names in order: features.3 ... features.15 of ``FaceAlignNet("mb05")``.
TEACHER_BLOCKS = ("dw2_1", "dw2_2", "dw3_1", "dw3_2", "dw4_1", "dw4_2", "dw5_1", "dw5_2",
                  "dw5_3", "dw5_4", "dw5_5", "dw5_6", "dw6")
_SUB = {"conv_dw": "dw", "bn_dw": "bn1", "conv_sep": "pw", "bn_sep": "bn2"}


def teacher_key_map() -> dict[str, str]:
    """3DDFA-V2 state-dict prefix -> facealign ``mb05`` prefix (``"dw2_1.conv_dw"`` ->
    ``"features.3.dw"``); tensor suffixes (``weight``, ``running_mean``, ...) are kept."""
    out = {"conv1": "features.0", "bn1": "features.1", "fc_param": "fc"}
    for i, block in enumerate(TEACHER_BLOCKS):
        for src, dst in _SUB.items():
            out[f"{block}.{src}"] = f"features.{3 + i}.{dst}"
    return out


def convert_state_dict(teacher_state: dict) -> dict:
    """Rename a 3DDFA-V2 MobileNet state dict to ``FaceAlignNet("mb05", stem=16)``'s names.

    Args:
        teacher_state: name -> tensor (a ``module.`` prefix from DataParallel is accepted).

    Returns:
        name -> tensor (the same tensor objects), ``fc_lm.*`` dropped.

    Raises:
        KeyError: a tensor of the teacher is neither mapped nor ``fc_lm``, or a mapped layer is
            missing (not a 3DDFA-V2 MobileNet checkpoint).
    """
    prefixes = teacher_key_map()
    out = {}
    for name, tensor in teacher_state.items():
        name = name.removeprefix("module.")
        if name.startswith("fc_lm."):
            continue
        head, _, tail = name.rpartition(".")
        if head not in prefixes:
            raise KeyError(f"{name!r} is not a tensor of 3DDFA-V2's MobileNet-V1")
        out[f"{prefixes[head]}.{tail}"] = tensor
    missing = sorted({p for p in prefixes.values()} - {k.rpartition(".")[0] for k in out})
    if missing:
        raise KeyError(f"not a 3DDFA-V2 MobileNet-V1 checkpoint: no tensors for {missing[0]}")
    return out


def load_teacher_mean_std(teacher_weights: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's parameter normalisation, read from the ``param_mean_std_62d_120x120.pkl``
    beside its weights.

    Returns:
        ``(mean, std)``: (62,) float32 each; parameters = output * std + mean.

    Raises:
        FileNotFoundError: no ``.pkl`` beside the weights.
    """
    pkl = Path(teacher_weights).with_name("param_mean_std_62d_120x120.pkl")
    with open(pkl, "rb") as f:
        d = pickle.load(f)
    return (np.asarray(d["mean"], dtype=np.float32).reshape(62),
            np.asarray(d["std"], dtype=np.float32).reshape(62))


def convert_teacher(teacher_weights: str | Path, out: str | Path | None = None) -> dict:
    """A facealign checkpoint (the dict :class:`~facealign_cli.models.regressor.Regressor`
    loads) holding 3DDFA-V2's MobileNet-V1 x0.5 weights.

    Args:
        teacher_weights: the teacher's ``.pth`` (its mean/std ``.pkl`` beside it).
        out: when given, the checkpoint is also written there (atomically).

    Returns:
        ``{"model", "arch": "mb05", "stem": 16, "input_size": 120, "param_mean", "param_std",
        "converted_from": {"file", "sha256"}}``.

    Raises:
        FileNotFoundError: the weights or the ``.pkl`` are missing.
        KeyError: the file is not a 3DDFA-V2 MobileNet-V1 state dict.
    """
    import torch

    teacher_weights = Path(teacher_weights)
    state = torch.load(teacher_weights, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    mean, std = load_teacher_mean_std(teacher_weights)
    ck = {"model": convert_state_dict(state), "arch": "mb05", "stem": 16, "input_size": 120,
          "param_mean": mean, "param_std": std,
          "converted_from": {"file": teacher_weights.name,
                             "sha256": sha256_of(teacher_weights)}}
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        torch.save(ck, tmp)
        tmp.replace(out)
    return ck
