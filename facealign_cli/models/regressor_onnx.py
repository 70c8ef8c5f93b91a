"""ONNX Runtime back end of the regressor, and the choice of runtime.

The network of a facealign checkpoint is exported once to ONNX, *with the whole predict step
inside the graph*: (B, S, S, 3) uint8 BGR roi crops in, ``y * param_std + param_mean`` (B, 62)
float32 3DMM parameters out (same layout as :class:`facealign_cli.models.regressor.Regressor`). The
export lies beside the checkpoint (``weights/facealign_v3.pth`` -> ``weights/facealign_v3.onnx``)
and carries the checkpoint's sha256 in its metadata, so an export that belongs to another
checkpoint is never used. Running it needs only ``onnxruntime`` (no torch import: about a second
less start-up per process, and 2-5x less time per face on a CPU than torch, see
``benchmarks/``); exporting needs torch and the ``onnx`` package
(``facealign export-onnx CHECKPOINT``).

Nothing here imports torch at module level.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from facealign_cli.io.records import atomic_open
from facealign_cli.models.providers import DeviceError, import_onnxruntime
from facealign_cli.models.weights import (
    RUNTIMES,
    TorchMissingError,
    canonical_arch,
    import_torch,
    resolve_weights,
    sha256_of,
    torch_missing,
    weights_not_found,
)

ONNX_META_SHA = "facealign_checkpoint_sha256"
ONNX_META_INFO = "facealign_checkpoint_meta"
ONNX_OPSET = 17


def onnx_path_for(weights: str | Path) -> Path:
    """Where the ONNX export of a checkpoint lives: same folder and stem, suffix ``.onnx`` (an
    ``.onnx`` path is its own export)."""
    return Path(weights).with_suffix(".onnx")


def _checkpoint_of(weights: Path) -> Path:
    """The checkpoint of ``weights``: itself, or for an ``.onnx`` export the ``.pth`` beside it
    (which may not exist)."""
    return weights.with_suffix(".pth") if weights.suffix == ".onnx" else weights


def _folded_predict_module(net, param_mean: np.ndarray, param_std: np.ndarray):
    """A torch module computing ``net((crops - 127.5) / 128) * std + mean`` from (B, S, S, 3)
    uint8 crops, with the input normalisation folded into the stem convolution and the output
    de-normalisation folded into the final linear layer (4 graph nodes fewer; ORT profile at
    batch 1: ~8 % less kernel time).

    The stem convolution zero-pads *after* normalisation, i.e. with 127.5 in raw pixel values:
    the folded graph pads the raw input with 127.5 explicitly and convolves it, unpadded, with
    ``W / 128`` and bias ``-127.5 / 128 * sum(W)`` -- the same function everywhere, borders
    included.

    Raises:
        ValueError: the network does not start with a bias-free, zero-padded convolution.
    """
    import torch
    from torch import nn

    stem = net.features[0]
    if not (isinstance(stem, nn.Conv2d) and stem.bias is None and stem.groups == 1
            and stem.padding_mode == "zeros" and isinstance(stem.padding, tuple)):
        raise ValueError("unexpected network layout: the first layer must be a plain "
                         "convolution without bias")
    py, px = stem.padding
    with torch.no_grad():
        w = stem.weight
        conv = nn.Conv2d(stem.in_channels, stem.out_channels, stem.kernel_size, stem.stride, 0,
                         bias=True)
        conv.weight.copy_(w / 128.0)
        conv.bias.copy_(-(127.5 / 128.0) * w.sum(dim=(1, 2, 3)))
        std = torch.from_numpy(np.asarray(param_std, np.float32))
        mean = torch.from_numpy(np.asarray(param_mean, np.float32))
        fc = nn.Linear(net.fc.in_features, net.fc.out_features)
        fc.weight.copy_(net.fc.weight * std[:, None])
        fc.bias.copy_(net.fc.bias * std + mean)

    class Folded(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = conv
            self.body = net.features[1:]
            self.pool = net.pool
            self.fc = fc

        def forward(self, crops):
            x = crops.permute(0, 3, 1, 2).float()
            x = nn.functional.pad(x, (px, px, py, py), value=127.5)
            x = self.body(self.stem(x))
            return self.fc(self.pool(x).flatten(1))

    return Folded()


def export_onnx(weights: str | Path, out: str | Path | None = None) -> Path:
    """Export a facealign checkpoint to ONNX: (B, S, S, 3) uint8 BGR crops -> (B, 62) float32
    parameters, batch size dynamic, opset :data:`ONNX_OPSET`, the checkpoint's sha256 and
    ``{"arch", "input_size"}`` in the model metadata. Written atomically.

    Args:
        weights: the facealign checkpoint (``.pth``).
        out: destination (default :func:`onnx_path_for`).

    Returns:
        The path written.

    Raises:
        TorchMissingError: torch or ``onnx`` is not installed (an ``ImportError``; the message
            gives the install command).
        FileNotFoundError / CheckpointError: see :class:`facealign_cli.models.regressor.Regressor`.
    """
    import io

    torch = import_torch("exporting to ONNX (facealign export-onnx)")
    try:
        import onnx
    except ImportError as exc:
        raise TorchMissingError(str(torch_missing("exporting to ONNX (facealign export-onnx)"))
                                .replace("needs torch", "needs the onnx package")) from exc

    from facealign_cli.models.regressor import Regressor

    reg = Regressor(weights)
    net = reg.net.to(memory_format=torch.contiguous_format).eval()
    graph = _folded_predict_module(net, reg.param_mean, reg.param_std)
    s = reg.input_size
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(graph.eval(), (torch.zeros(1, s, s, 3, dtype=torch.uint8),),
                          buf, input_names=["crops"], output_names=["params"],
                          dynamic_axes={"crops": {0: "batch"}, "params": {0: "batch"}},
                          opset_version=ONNX_OPSET, dynamo=False)
    model = onnx.load_from_string(buf.getvalue())
    info = {"arch": reg.arch, "input_size": s}
    for k, v in {ONNX_META_SHA: sha256_of(weights), ONNX_META_INFO: json.dumps(info)}.items():
        p = model.metadata_props.add()
        p.key, p.value = k, v
    out = Path(out) if out else onnx_path_for(weights)
    with atomic_open(out, "wb") as fh:
        fh.write(model.SerializeToString())
    return out


class StaleExportError(ValueError):
    """The ONNX file beside a checkpoint was exported from another checkpoint."""


class OnnxRegressor:
    """The regressor run by ONNX Runtime (on the execution provider of ``device``); same
    interface as :class:`facealign_cli.models.regressor.Regressor` (``path``, ``arch``,
    ``input_size``, ``runtime``, ``predict``), same numbers within float32 rounding (max abs
    difference ~1e-5 on the parameters, tested on AFLW2000-3D crops).

    Args:
        weights: the checkpoint (``.pth``) whose export (:func:`onnx_path_for`) is run, or the
            export itself (``.onnx``: a wheel ships no checkpoint). Where the checkpoint exists
            the export must carry its sha256.
        num_threads: ONNX Runtime intra-op threads (None: 1).
        device: one of :data:`facealign_cli.models.providers.DEVICES` (``"auto"``: the best
            provider the installed ONNX Runtime has,
            :func:`facealign_cli.models.providers.select_provider`). The crops of all faces of
            an image (and their mirror images) go through in one call per pass
            (:class:`facealign_cli.core.regression.CropFitter`); crops of different images are
            not batched together.

    Attributes:
        checkpoint_sha256: the sha256 of the checkpoint the export was made from (its metadata).
        provider: the ONNX Runtime execution provider the session runs on.

    Raises:
        ImportError: onnxruntime is not installed.
        DeviceError: ``device`` is not available (the message names what to install) or no
            session starts on it.
        FileNotFoundError: no export beside the checkpoint.
        StaleExportError: the export does not belong to this checkpoint (sha256 differs).
    """

    runtime = "onnxruntime"

    def __init__(self, weights: str | Path, num_threads: int | None = None,
                 device: str = "cpu"):
        from facealign_cli.models.providers import make_session, select_provider

        ort = import_onnxruntime()
        self.provider = select_provider(device, ort.get_available_providers())

        self.path = Path(weights)
        self.onnx_path = onnx_path_for(weights)
        if not self.onnx_path.is_file():
            raise FileNotFoundError(f"no ONNX export of {weights} (expected {self.onnx_path}; "
                                    f"make it with: facealign export-onnx {weights})")
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(num_threads or 1)
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        self.session = make_session(ort, str(self.onnx_path), so, self.provider, device)
        meta = self.session.get_modelmeta().custom_metadata_map
        self.checkpoint_sha256 = meta.get(ONNX_META_SHA)
        checkpoint = _checkpoint_of(self.path)
        if checkpoint.is_file() and self.checkpoint_sha256 != sha256_of(checkpoint):
            raise StaleExportError(
                f"{self.onnx_path} was exported from another checkpoint than {checkpoint}; "
                f"re-export it with: facealign export-onnx {checkpoint}")
        info = json.loads(meta.get(ONNX_META_INFO, "{}"))
        self.arch = canonical_arch(info.get("arch"))  # "fan_m" of older exports -> "dws_m"
        self.input_size = int(info.get("input_size", 120))

    def predict(self, crops_bgr: np.ndarray) -> np.ndarray:
        """(B, S, S, 3) uint8 BGR roi crops -> (B, 62) float32 parameters, exactly as
        :meth:`facealign_cli.models.regressor.Regressor.predict` (within float32 rounding)."""
        if len(crops_bgr) == 0:
            return np.zeros((0, 62), dtype=np.float32)
        x = np.ascontiguousarray(crops_bgr, dtype=np.uint8)
        return self.session.run(None, {"crops": x})[0]


def make_regressor(weights: str | Path | None = None, num_threads: int | None = None,
                   runtime: str | None = None, device: str = "cpu"):
    """The regressor for a checkpoint, in the fastest runtime available.

    Args:
        weights: checkpoint (``.pth``) or ONNX export (``.onnx``), or the name of shipped
            weights (``"v1"``; see :func:`facealign_cli.models.weights.resolve_weights`; None:
            the default shipped weights).
        num_threads: intra-op threads of the runtime (None: its default).
        runtime: ``"auto"`` (ONNX Runtime when an up-to-date export lies beside the checkpoint
            and onnxruntime imports, else torch), ``"onnxruntime"`` (fail if that is not
            possible) or ``"torch"``. None: ``"auto"``.
        device: where ONNX Runtime runs the export, one of
            :data:`facealign_cli.models.providers.DEVICES` (:class:`OnnxRegressor`). The torch
            runtime runs on the CPU: with a device other than ``"auto"`` and ``"cpu"``, a
            regressor that would run in torch is an error.

    Returns:
        An :class:`OnnxRegressor` or a :class:`facealign_cli.models.regressor.Regressor`.

    Raises:
        ValueError: unknown runtime.
        DeviceError: ``device`` is not available, or asked for with the torch runtime.
        FileNotFoundError: the weights are missing (the message says how to give them), or
            torch is asked for where only the ONNX export is (a wheel ships no ``.pth``).
        TorchMissingError: torch is needed (``runtime="torch"``, or ``"auto"`` without a usable
            export) and not installed; the message gives the install command.
        ImportError, FileNotFoundError, StaleExportError: with ``runtime="onnxruntime"`` (and
            ONNX Runtime's own error for a corrupt export; with ``"auto"`` a corrupt export
            gives a warning and the torch runtime).
        whatever :class:`~facealign_cli.models.regressor.Regressor` raises for a bad checkpoint.
    """
    runtime = (runtime or "auto").lower()
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; expected one of {RUNTIMES}")
    path = resolve_weights(weights)
    if not path.is_file():
        raise weights_not_found(path)
    why_not_onnx, stale = None, False
    if runtime in ("auto", "onnxruntime"):
        try:
            return OnnxRegressor(path, num_threads, device=device)
        except DeviceError:
            raise
        except (StaleExportError, ImportError, FileNotFoundError) as exc:
            if runtime == "onnxruntime":
                raise
            why_not_onnx, stale = str(exc), isinstance(exc, StaleExportError)
        except Exception as exc:  # a corrupt or unreadable export (ONNX Runtime's own errors)
            if runtime == "onnxruntime":
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            why_not_onnx = (f"the ONNX export {onnx_path_for(path)} cannot be loaded "
                            f"({type(exc).__name__}: {first[:200]})")
            stale = True  # warn as for a stale export
    if (device or "auto").lower() not in ("auto", "cpu"):
        raise DeviceError(f"--device {device}: the torch runtime runs on the CPU only; {device} "
                          f"needs the regressor's ONNX export (--runtime auto or onnxruntime)"
                          + (f": {why_not_onnx}" if why_not_onnx else ""))
    try:
        from facealign_cli.models.regressor import Regressor
    except TorchMissingError:
        if runtime == "torch":
            raise torch_missing("--runtime torch") from None
        raise torch_missing(f"running {path} with torch (no usable ONNX export: {why_not_onnx})"
                            ) from None
    checkpoint = _checkpoint_of(path)
    if not checkpoint.is_file():
        raise FileNotFoundError(
            f"running the regressor with torch needs the checkpoint {checkpoint}, which is not "
            f"there (an installed wheel ships only the ONNX exports; the .pth files are in the "
            f"source repository)" + (f"; ONNX Runtime: {why_not_onnx}" if why_not_onnx else ""))
    path = checkpoint
    if stale:
        warnings.warn(f"{why_not_onnx}; using torch", RuntimeWarning, stacklevel=2)
    return Regressor(path, num_threads=num_threads)
