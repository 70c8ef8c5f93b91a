"""ONNX Runtime execution providers: the choice from a device name (``--device``,
``FaceAligner(device=...)``) and the sessions of the detector and the regressor.

Both ONNX models (the BlazeFace detector, :mod:`facealign_cli.models.blazeface`, and the
regressor's export, :mod:`facealign_cli.models.regressor_onnx`) run on the provider that
:func:`select_provider` picks, a pure function of the device name and the providers the
installed ONNX Runtime build lists (``onnxruntime.get_available_providers()``):

============  ===========================  ==============================================
device        execution provider           ONNX Runtime build that has it
============  ===========================  ==============================================
``cpu``       ``CPUExecutionProvider``     every build (``onnxruntime``)
``cuda``      ``CUDAExecutionProvider``    ``onnxruntime-gpu`` (NVIDIA driver, CUDA, cuDNN)
``coreml``    ``CoreMLExecutionProvider``  the ``onnxruntime`` wheel for macOS
``directml``  ``DmlExecutionProvider``     ``onnxruntime-directml`` (Windows)
============  ===========================  ==============================================

``auto`` takes the first of :data:`AUTO_ORDER` that is listed: CUDA, then DirectML (each
present only where a GPU build was installed on purpose), then the CPU. CoreML is used only
when asked for: every macOS wheel lists it, and Core ML may run a graph on the Neural Engine,
which computes in float16 (outputs then differ by more than float32 rounding); it is not
tested here. A device that is not listed is an error naming what to install
(:class:`DeviceError`), never a fall back to the CPU; so is a session that ONNX Runtime
cannot start on a listed provider (:func:`make_session`: a GPU build without its CUDA
libraries falls back to the CPU in ONNX Runtime itself; here it fails).

Standard library only at import (the settings, and so ``facealign --help``, read
:data:`DEVICES`); :func:`available_providers` imports ONNX Runtime.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

#: The device names (``--device``; ``AlignerSettings.device``).
DEVICES = ("auto", "cpu", "cuda", "coreml", "directml")
#: The CPU provider, in every ONNX Runtime build.
CPU_PROVIDER = "CPUExecutionProvider"
#: The execution provider of each device name but ``auto``.
PROVIDERS = {
    "cpu": CPU_PROVIDER,
    "cuda": "CUDAExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "directml": "DmlExecutionProvider",
}
#: What ``auto`` tries, in order (CoreML only when asked for: see the module docstring).
AUTO_ORDER = ("cuda", "directml", "cpu")
#: What to install for a device the ONNX Runtime build lacks.
INSTALL = {
    "cpu": "onnxruntime (python3 -m pip install onnxruntime)",
    "cuda": "onnxruntime-gpu in place of onnxruntime (python3 -m pip uninstall -y onnxruntime "
            "&& python3 -m pip install onnxruntime-gpu), with an NVIDIA driver and the CUDA "
            "and cuDNN versions of ONNX Runtime's CUDA requirements",
    "coreml": "the onnxruntime wheel for macOS (Core ML exists on macOS only)",
    "directml": "onnxruntime-directml in place of onnxruntime (python3 -m pip uninstall -y "
                "onnxruntime && python3 -m pip install onnxruntime-directml; Windows only)",
}

#: What to check when a listed provider does not start.
CHECK = {
    "cpu": "the onnxruntime install",
    "cuda": "the NVIDIA driver and the CUDA and cuDNN libraries that this onnxruntime-gpu "
            "needs (ONNX Runtime's CUDA execution provider requirements)",
    "coreml": "that this macOS has Core ML",
    "directml": "the GPU's DirectX 12 driver",
}


class DeviceError(RuntimeError):
    """The device asked for cannot be used: the installed ONNX Runtime does not list its
    provider, or cannot start a session on it. The message is one line that starts with
    ``--device NAME:`` and says what to install or check."""


def _short(provider: str) -> str:
    return provider.removesuffix("ExecutionProvider")


def select_provider(device: str | None, available: Sequence[str]) -> str:
    """The execution provider for ``device`` given the providers the installed ONNX Runtime
    lists (a pure function: no import, no session).

    Args:
        device: one of :data:`DEVICES` (case-insensitive; None = ``"auto"``).
        available: ``onnxruntime.get_available_providers()``.

    Returns:
        A value of :data:`PROVIDERS`: for ``auto`` the first of :data:`AUTO_ORDER` in
        ``available``, else the device's own.

    Raises:
        ValueError: ``device`` is not one of :data:`DEVICES`.
        DeviceError: the device's provider is not in ``available`` (for ``auto``: not even the
            CPU's); the message names what to install.
    """
    name = (device or "auto").lower()
    if name not in DEVICES:
        raise ValueError(f"unknown device {device!r}; expected one of {DEVICES}")
    available = list(available)
    wanted = AUTO_ORDER if name == "auto" else (name,)
    for d in wanted:
        if PROVIDERS[d] in available:
            return PROVIDERS[d]
    d = wanted[-1]
    have = ", ".join(_short(p) for p in available) or "none"
    raise DeviceError(f"--device {name}: this ONNX Runtime has no {PROVIDERS[d]} (it has: "
                      f"{have}); install {INSTALL[d]}")


def device_name(provider: str) -> str:
    """The device name of a value of :data:`PROVIDERS` (``"CUDAExecutionProvider"`` ->
    ``"cuda"``); KeyError for another."""
    return {p: d for d, p in PROVIDERS.items()}[provider]


def is_gpu(provider: str) -> bool:
    """Whether ``provider`` runs the networks off the CPU (every provider but
    :data:`CPU_PROVIDER`)."""
    return provider != CPU_PROVIDER


def provider_options(provider: str, ort_version: str) -> dict[str, str]:
    """The options ``provider`` is started with: for CUDA (ONNX Runtime >= 1.18, where the
    option exists) ``use_tf32 = 0``, so that convolutions and matrix products keep float32
    precision (TF32, on by default on Ampere and later GPUs, keeps 10 mantissa bits: outputs
    would differ from the CPU's by more than float rounding); none for the others."""
    if provider == PROVIDERS["cuda"]:
        try:
            major, minor = (int(x) for x in ort_version.split(".")[:2])
        except ValueError:
            return {}
        if (major, minor) >= (1, 18):
            return {"use_tf32": "0"}
    return {}


def available_providers() -> list[str]:
    """``onnxruntime.get_available_providers()`` (imported with its telemetry off).

    Raises:
        ImportError: onnxruntime is not installed.
    """
    return list(import_onnxruntime().get_available_providers())


def resolve_provider(device: str | None) -> str:
    """:func:`select_provider` for the installed ONNX Runtime.

    Raises:
        ImportError: onnxruntime is not installed.
        ValueError, DeviceError: see :func:`select_provider`.
    """
    return select_provider(device, available_providers())


def make_session(ort, model, options, provider: str, device: str | None = None):
    """An ``onnxruntime.InferenceSession`` of ``model`` running on ``provider`` (with the CPU
    provider behind it for the nodes ``provider`` has no kernel for, as ONNX Runtime assigns
    them), or an error: never a session that fell back to the CPU as a whole.

    ONNX Runtime's own fall-back is switched off (at creation: ``enable_fallback=0``; when
    running: ``disable_fallback()``), and the session's providers are checked: a provider
    that could not start (a GPU build without its CUDA libraries) leaves only the CPU's.

    Args:
        ort: the ``onnxruntime`` module.
        model: path (str) or bytes of the ONNX model.
        options: its ``SessionOptions``.
        provider: a value of :data:`PROVIDERS` (:func:`select_provider`).
        device: the device name asked for (for the message; default: ``provider``'s).

    Raises:
        DeviceError: no session could be made on a provider other than the CPU's, or it does
            not run on it.
        whatever ONNX Runtime raises for the model itself (on the CPU provider).
    """
    name = device or device_name(provider)
    check = f"check {CHECK[device_name(provider)]}, or pass --device cpu"
    chain = [(provider, provider_options(provider, getattr(ort, "__version__", "")))]
    if is_gpu(provider):
        chain.append(CPU_PROVIDER)
    try:
        session = ort.InferenceSession(model, options, providers=chain, enable_fallback=0)
    except Exception as exc:
        if not is_gpu(provider):
            raise
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise DeviceError(f"--device {name}: ONNX Runtime could not start {provider} "
                          f"({type(exc).__name__}: {first}); {check}") from None
    used = list(session.get_providers())
    if not used or used[0] != provider:
        raise DeviceError(f"--device {name}: ONNX Runtime did not start {provider} (the "
                          f"session runs on {', '.join(used) or 'nothing'}); {check}")
    session.disable_fallback()
    return session


def import_onnxruntime():
    """``onnxruntime``, imported with its telemetry off: ``ORT_DISABLE_TELEMETRY=1`` is set
    before ONNX Runtime initializes (unless the variable is set already) and
    ``onnxruntime.disable_telemetry_events()`` is called. With telemetry on (the default of the
    official builds), every process writes a session file (``$TMPDIR/.ses``) and a device id
    and event database (``~/.cache/Microsoft/DeveloperTools/.onnxruntime/``) and may upload
    events; a tool run over private photo archives stores and sends nothing of the kind.
    The variable is inherited by worker processes started afterwards.

    Raises:
        ImportError: onnxruntime is not installed.
    """
    if not os.environ.get("ORT_DISABLE_TELEMETRY"):
        os.environ["ORT_DISABLE_TELEMETRY"] = "1"
    import onnxruntime

    onnxruntime.disable_telemetry_events()
    return onnxruntime
