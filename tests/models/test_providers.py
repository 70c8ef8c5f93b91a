"""``--device`` and the ONNX Runtime execution providers (issue 26, item 2): the pure choice
(:func:`select_provider`, every branch, with the provider lists of the GPU builds written
out), the sessions (:func:`make_session`: a provider that does not start is an error, never a
CPU session) and the models and settings that take a device. This machine's ONNX Runtime has
the CPU provider only."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest

from facealign_cli.core.settings import AlignerSettings, SettingError
from facealign_cli.models import providers as P
from facealign_cli.models.providers import (
    CPU_PROVIDER,
    DeviceError,
    make_session,
    provider_options,
    select_provider,
)

CUDA, DML, COREML = "CUDAExecutionProvider", "DmlExecutionProvider", "CoreMLExecutionProvider"
# what the builds list (onnxruntime-gpu on Linux, -directml on Windows, the macOS wheel)
GPU_BUILD = ["TensorrtExecutionProvider", CUDA, CPU_PROVIDER]
DML_BUILD = [DML, CPU_PROVIDER]
MAC_BUILD = [COREML, "AzureExecutionProvider", CPU_PROVIDER]
CPU_BUILD = ["AzureExecutionProvider", CPU_PROVIDER]


@pytest.mark.parametrize("available, expected", [
    (GPU_BUILD, CUDA), (DML_BUILD, DML), ([DML, CUDA, CPU_PROVIDER], CUDA),
    (MAC_BUILD, CPU_PROVIDER),  # CoreML only when asked for
    (CPU_BUILD, CPU_PROVIDER)])
def test_auto_takes_the_best_listed_provider(available, expected):
    assert select_provider("auto", available) == expected
    assert select_provider(None, available) == expected  # None = auto


@pytest.mark.parametrize("device, available, expected", [
    ("cpu", GPU_BUILD, CPU_PROVIDER), ("cuda", GPU_BUILD, CUDA), ("CUDA", GPU_BUILD, CUDA),
    ("coreml", MAC_BUILD, COREML), ("directml", DML_BUILD, DML), ("cpu", CPU_BUILD, CPU_PROVIDER)])
def test_a_listed_device_gets_its_provider(device, available, expected):
    assert select_provider(device, available) == expected


@pytest.mark.parametrize("device, available, install", [
    ("cuda", CPU_BUILD, "onnxruntime-gpu"), ("cuda", MAC_BUILD, "onnxruntime-gpu"),
    ("directml", GPU_BUILD, "onnxruntime-directml"), ("coreml", CPU_BUILD, "macOS"),
    ("cpu", [CUDA], "pip install onnxruntime"), ("auto", [], "pip install onnxruntime")])
def test_a_device_not_listed_is_a_one_line_error_naming_what_to_install(device, available,
                                                                        install):
    with pytest.raises(DeviceError) as err:
        select_provider(device, available)
    msg = str(err.value)
    assert msg.startswith(f"--device {device}:") and install in msg and "\n" not in msg


def test_an_unknown_device_is_a_value_error():
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        select_provider("gpu", GPU_BUILD)


def test_names_and_options():
    assert [P.device_name(P.PROVIDERS[d]) for d in ("cpu", "cuda")] == ["cpu", "cuda"]
    assert not P.is_gpu(CPU_PROVIDER) and P.is_gpu(CUDA) and P.is_gpu(COREML)
    # TF32 off where ONNX Runtime has the option (1.18); older builds would refuse the key
    assert provider_options(CUDA, "1.20.1") == {"use_tf32": "0"}
    assert provider_options(CUDA, "1.17.3") == {}
    assert provider_options(CUDA, "dev") == {}
    assert provider_options(CPU_PROVIDER, "1.20.1") == provider_options(DML, "1.20.1") == {}


def test_resolve_reads_the_installed_build(monkeypatch):
    assert P.resolve_provider("auto") == CPU_PROVIDER  # this machine: CPU only
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: list(GPU_BUILD))
    assert P.resolve_provider("auto") == CUDA


def _model_file():
    from facealign_cli.models.blazeface import model_file

    return str(model_file("short_range"))


def test_a_provider_that_does_not_start_is_an_error_not_a_cpu_session():
    """The real ONNX Runtime of this machine, asked for CUDA (as after a selection from a GPU
    build whose CUDA libraries are missing): it makes a CPU session, which is refused."""
    with pytest.raises(DeviceError, match=r"--device cuda: ONNX Runtime did not start "
                                          r"CUDAExecutionProvider \(the session runs on "
                                          r"CPUExecutionProvider\); check the NVIDIA driver"):
        with pytest.warns(UserWarning):  # ORT's "not in available provider names"
            make_session(onnxruntime, _model_file(), onnxruntime.SessionOptions(), CUDA)
    s = make_session(onnxruntime, _model_file(), onnxruntime.SessionOptions(), CPU_PROVIDER)
    assert s.get_providers() == [CPU_PROVIDER]


class _FakeOrt:
    """An ``onnxruntime`` stand-in whose sessions fail, or run on ``runs_on``."""

    __version__ = "1.20.0"

    def __init__(self, fail: Exception | None = None, runs_on=(CUDA, CPU_PROVIDER)):
        self.fail, self.runs_on, self.calls, self.fallback_off = fail, runs_on, [], False

    def InferenceSession(self, model, options, providers, **kw):  # noqa: N802 - ORT's name
        self.calls.append((providers, kw))
        if self.fail is not None:
            raise self.fail
        ort = self

        class Session:
            def get_providers(self):
                return list(ort.runs_on)

            def disable_fallback(self):
                ort.fallback_off = True

        return Session()


def test_session_creation_failure_is_a_one_line_device_error():
    ort = _FakeOrt(RuntimeError("CUDA failure 35: CUDA driver version is insufficient\nmore"))
    with pytest.raises(DeviceError) as err:
        make_session(ort, "m.onnx", None, CUDA, "auto")
    msg = str(err.value)
    assert msg.startswith("--device auto: ONNX Runtime could not start CUDAExecutionProvider")
    assert "driver version is insufficient" in msg and "\n" not in msg and "more" not in msg
    assert "--device cpu" in msg
    # ONNX Runtime's own fall back to the CPU is off, TF32 off, the CPU behind for other nodes
    assert ort.calls == [([(CUDA, {"use_tf32": "0"}), CPU_PROVIDER], {"enable_fallback": 0})]


def test_a_started_provider_gives_its_session_with_fallback_off():
    ort = _FakeOrt()
    make_session(ort, "m.onnx", None, CUDA)
    assert ort.fallback_off
    # errors of the model itself on the CPU are ONNX Runtime's own, not device errors
    with pytest.raises(ValueError, match="bad model"):
        make_session(_FakeOrt(ValueError("bad model")), "m.onnx", None, CPU_PROVIDER)


def test_models_run_on_the_device_or_fail(monkeypatch, real_weights):
    from facealign_cli.core.pipeline import FaceAligner
    from facealign_cli.models.detector import BlazeFaceDetector
    from facealign_cli.models.regressor_onnx import make_regressor

    aligner = FaceAligner(device="cpu")
    assert aligner.detector.provider == aligner.regressor.provider == CPU_PROVIDER
    img = np.zeros((64, 64, 3), np.uint8)
    assert aligner(img) == []
    for make in (lambda: BlazeFaceDetector(device="cuda"),
                 lambda: make_regressor(real_weights, device="cuda"),
                 lambda: FaceAligner(device="directml")):
        with pytest.raises(DeviceError, match="install onnxruntime-"):
            make()
    # the torch runtime runs on the CPU: a GPU device with it is refused, not ignored
    with pytest.raises(DeviceError, match="the torch runtime runs on the CPU only"):
        make_regressor(real_weights, runtime="torch", device="cuda")
    # a build that lists CUDA but cannot start it (this machine's, pretending): an error
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: list(GPU_BUILD))
    with pytest.raises(DeviceError, match="did not start CUDAExecutionProvider"), \
            pytest.warns(UserWarning):  # ORT's "not in available provider names"
        FaceAligner()  # device "auto" picks CUDA here


def test_device_setting_is_checked_and_not_in_the_fingerprint():
    s = AlignerSettings(device="CUDA")
    assert s.device == "cuda" and AlignerSettings().device == "auto"
    assert s.fingerprint(True) == AlignerSettings().fingerprint(True)
    for bad in ("gpu", 1, None):
        with pytest.raises(SettingError, match="unknown device") as err:
            AlignerSettings(device=bad)
        assert err.value.flag == "--device"
    with pytest.raises(SettingError, match="torch runtime"):
        AlignerSettings(device="cuda", runtime="torch")
    assert AlignerSettings(device="cpu", runtime="torch").device == "cpu"
