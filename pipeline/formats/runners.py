"""How artifacts are run on this host: one runner per format, same interface, opened by format name.

`predict(image)` takes one preprocessed HWC float32 image and returns class scores (float32).
Quantized inputs/outputs are (de)quantized with the tensor's own parameters. Shapes and dtypes
are checked (`runner_input.check_input`), never silently reshaped.

Each runner class lives in its format's module (`tflite.py`, `openvino_ir.py`, `onnx.py`,
`keras.py`, `savedmodel.py`); the formats table says which. This module opens a runner or
imports a runtime by format name, and names the classes for the callers that import them here.
"""

from __future__ import annotations

from pathlib import Path

from edgepipe.core.errors import InputError
from edgepipe.formats.keras import KerasRunner
from edgepipe.formats.onnx import ONNXRunner
from edgepipe.formats.openvino_ir import OpenVINORunner
from edgepipe.formats.registry import FORMATS, get
from edgepipe.formats.runner_input import check_input, image_input_shape, input_layout
from edgepipe.formats.savedmodel import SavedModelRunner
from edgepipe.formats.tflite import TFLiteRunner, tflite_interpreter_class

__all__ = ["RUNNERS", "KerasRunner", "ONNXRunner", "OpenVINORunner", "SavedModelRunner", "TFLiteRunner",
           "check_input", "image_input_shape", "input_layout", "open_runner", "runtime_module",
           "tflite_interpreter_class"]

# artifact format -> its runner class, for the formats whose files a runner opens by path
RUNNERS = {f.name: f.runner for f in FORMATS if f.opens_files}


def runtime_missing(fmt: str) -> str | None:
    """Why this host cannot run `fmt` (no runtime installed), or None; found without importing the runtime
    (importing onnxruntime writes a device id into the user's cache)."""
    import importlib.util

    wanted = get(fmt).runtime_modules
    if any(importlib.util.find_spec(m.split(".")[0]) is not None for m in wanted):
        return None
    return f"No module named {' or '.join(repr(m) for m in wanted)}"


def runtime_module(fmt: str):
    """Import the runtime a format needs (ImportError when it is missing on this host)."""
    return get(fmt).import_runtime()


def open_runner(fmt: str, path: str | Path, threads: int, layout: str = "auto", **options):
    """A runner for a foreign artifact file by format (standalone validate/bench). `layout="auto"`
    feeds a channels-first model transposed images; the caller reports `runner.layout`."""
    if fmt not in RUNNERS:
        raise InputError(f"artifact format: expected one of {sorted(RUNNERS)}. Received: {fmt!r}")
    return get(fmt).runner_class().from_file(Path(path), threads, layout, **options)
