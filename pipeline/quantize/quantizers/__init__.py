"""One module per quantizer: what it can do, beside how a recipe becomes its calls.

The split follows NNCF's algorithm + backend layout: the recipe (`pipeline/quantize/recipes.py`) and
the toolchain-free algorithms (`pipeline/quantize/accuracy_aware.py`) say *what* to do; each module
here says what one toolchain *can* do and *how* it does it, side by side, so the two cannot drift:

    tflite.py       TFLiteConverter full-integer PTQ (int8, 16x8), QuantizationDebugger float fallback
    nncf.py         nncf.quantize / nncf.quantize_with_accuracy_control on an OpenVINO IR
    onnxruntime.py  onnxruntime.quantization.quantize_static (QDQ)
    edgetpu.py      the TFLite converter restricted to 8-bit full-integer; budgets by full-integer repairs

and two helpers that are not quantizers (so not in MODULES): `tflite_parallel.py` splits TFLite's calibration
over processes, `nncf_shared.py` quantizes one IR for several NNCF configurations (openvino-cpu's and
openvino-npu's) from one statistics pass; both give the same bytes as the plain call, sooner.

Every module provides `problems(recipe) -> list[str]` (why the recipe cannot be built: empty = possible,
plain data, no toolkit import) and its cached INT8 stage(s) (`int8_stage`), which build the stage key
from the recipe and call the toolchain. Shared refusal messages live in `base.py`.

This registry maps a quantizer's name (a target module's `QUANTIZER`) to its module, imported only
when asked for. May import core, calibration, formats, stages and the rest of `edgepipe.quantize`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

MODULES: dict[str, str] = {
    "tflite": "edgepipe.quantize.quantizers.tflite",
    "nncf": "edgepipe.quantize.quantizers.nncf",
    "onnxruntime": "edgepipe.quantize.quantizers.onnxruntime",
    "edgetpu": "edgepipe.quantize.quantizers.edgetpu",  # TFLite full-integer, 8-bit only
}
NAMES: tuple[str, ...] = tuple(MODULES)


def load(name: str) -> ModuleType:
    """A quantizer's module (cheap: toolkits are imported inside its functions)."""
    try:
        return importlib.import_module(MODULES[name])
    except KeyError:
        raise KeyError(f"unknown quantizer: expected one of {list(NAMES)}. Received: {name!r}") from None
