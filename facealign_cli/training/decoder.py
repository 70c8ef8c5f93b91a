"""The differentiable 3DMM of training: (B, 62) parameters to crop-frame vertices (torch),
shared by the training loss and the label refit."""

from __future__ import annotations

import numpy as np
import torch

from facealign_cli.core.geometry import CROP_SIZE as SIZE


class VertexDecoder(torch.nn.Module):
    """Differentiable 3DMM: (B, 62) parameters to (B, 3, K) crop-frame vertices of the vertices
    ``index`` (3DDFA convention, :func:`facealign_cli.core.geometry.params_to_crop_vertices`:
    x right, y down, z towards the viewer, 120-px crop pixels). float32 buffers; ``.double()``
    for float64."""

    def __init__(self, model, index: np.ndarray):
        super().__init__()
        rows = (index[:, None] * 3 + np.arange(3)[None]).reshape(-1)
        self.register_buffer("mean", torch.from_numpy(model.mean[rows]).view(-1, 3).T.contiguous())
        w = np.concatenate([model.w_shp[rows], model.w_exp[rows]], axis=1)  # (3K, 50)
        self.register_buffer("w", torch.from_numpy(w).view(-1, 3, 50).permute(1, 0, 2).contiguous())

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        cam = p[:, :12].view(-1, 3, 4)
        alpha = p[:, 12:62]
        shape = self.mean[None] + torch.einsum("ckj,bj->bck", self.w, alpha)
        v = cam[:, :, :3] @ shape + cam[:, :, 3:]
        x = v[:, 0] - 1
        y = SIZE - v[:, 1]
        return torch.stack([x, y, v[:, 2]], dim=1)
