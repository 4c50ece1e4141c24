"""SavedModel -> OpenVINO IR (FP32, static batch 1; FP16 weights for MYRIAD). NNCF INT8 is the NNCF
quantizer's (pipeline/quantize/quantizers/nncf.py)."""

from __future__ import annotations

import re
from pathlib import Path


def convert_ir(saved_model: Path, out: Path, shape: tuple[int, int, int]) -> Path:
    import openvino as ov

    from edgepipe.core.logs import keep_root_logger

    with keep_root_logger():  # ovc sets the root logger to ERROR otherwise
        model = ov.convert_model(str(saved_model), input=[(1, *shape)])
    _reproducible(model, saved_model)
    dest = Path(out) / "model_fp32.xml"
    ov.save_model(model, str(dest), compress_to_fp16=False)
    return dest


AUTO_NAME = re.compile(r"^([A-Z][A-Za-z0-9]*)_(\d+)$")  # OpenVINO's default op names: Type_<global counter>


def _reproducible(model, saved_model: Path) -> None:
    """Make the IR a function of the SavedModel only, not of the process or the directory.

    - The IR records the converted path: keep only its content-addressed part (the stage
      directory name), so the same SavedModel gives the same IR in any output directory.
    - Unnamed ops get `Type_<n>` from a process-wide counter, so a second conversion in one
      process (or a worker that converted before) names them differently: renumber them in
      topological order. Tensor names (the model's inputs and outputs) are not touched.
    """
    if model.has_rt_info(["conversion_parameters", "input_model"]):
        model.set_rt_info(f"{Path(saved_model).parent.name}/{Path(saved_model).name}",
                          ["conversion_parameters", "input_model"])
    canonical_names(model)


def canonical_names(model, keep: frozenset[str] = frozenset(), prefix: str = "") -> None:
    """Renumber OpenVINO's default op names (`Type_<process-wide counter>`) in topological order.
    Names in `keep` stay: a quantized model keeps the op names of the (already canonical) IR it
    came from, so its layers still match the FP32 IR's by name (the per-layer error report)."""
    renamed: dict[str, str] = {}
    for op in model.get_ordered_ops():
        name = op.get_friendly_name()
        m = AUTO_NAME.match(name)
        if m and name not in keep:
            op.set_friendly_name(renamed.setdefault(name, f"{prefix}{m.group(1)}_{len(renamed)}"))


def compress_fp16(ir: Path, out: Path) -> Path:
    """FP32 IR -> IR with FP16 weights (what MYRIAD / VPU plugins ran)."""
    import openvino as ov

    dest = Path(out) / "model_fp16.xml"
    ov.save_model(ov.Core().read_model(str(ir)), str(dest), compress_to_fp16=True)
    return dest
