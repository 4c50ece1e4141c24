"""SavedModel -> OpenVINO IR (FP32, static batch 1) -> NNCF INT8 IR."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from calibration.adapters import nncf_dataset


def convert_ir(saved_model: Path, out: Path, shape: tuple[int, int, int]) -> Path:
    import openvino as ov

    model = ov.convert_model(str(saved_model), input=[(1, *shape)])
    dest = Path(out) / "model_fp32.xml"
    ov.save_model(model, str(dest), compress_to_fp16=False)
    return dest


def quantize_nncf(ir: Path, out: Path, calib: np.ndarray, preset: str = "performance",
                  target_device: str = "ANY") -> Path:
    """`target_device` selects NNCF's hardware config (e.g. "NPU": the quantization scheme the NPU runs)."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(ir))
    qmodel = nncf.quantize(
        model,
        nncf_dataset(calib),
        preset=nncf.QuantizationPreset(preset),
        target_device=nncf.TargetDevice(target_device),
        subset_size=len(calib),
    )
    dest = Path(out) / "model_int8.xml"
    ov.save_model(qmodel, str(dest), compress_to_fp16=False)
    return dest


def compress_fp16(ir: Path, out: Path) -> Path:
    """FP32 IR -> IR with FP16 weights (what MYRIAD / VPU plugins ran)."""
    import openvino as ov

    dest = Path(out) / "model_fp16.xml"
    ov.save_model(ov.Core().read_model(str(ir)), str(dest), compress_to_fp16=True)
    return dest
