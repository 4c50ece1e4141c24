"""SavedModel -> ONNX FP32 (tf2onnx, NHWC input kept) -> QDQ INT8 (onnxruntime quantize_static)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from calibration.adapters import onnx_calibration_reader
from pipeline.core.errors import StageError

CALIBRATION_METHODS = {None: "MinMax", "minmax": "MinMax", "percentile": "Percentile", "kl": "Entropy"}


def convert_onnx(saved_model: Path, out: Path, opset: int = 17, timeout: int = 1800) -> Path:
    """tf2onnx in a subprocess (it builds a TF graph; keeping that out of our process is cheaper)."""
    dest = Path(out) / "model_fp32.onnx"
    cmd = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(saved_model), "--output", str(dest),
           "--opset", str(opset), "--signature_def", "serving_default"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0 or not dest.is_file():
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise StageError(f"tf2onnx: expected an ONNX model from {str(saved_model)!r}. Received exit code "
                         f"{proc.returncode}: {tail}")
    import onnx

    onnx.checker.check_model(str(dest))
    return dest


def _stride(n: int, cap: int = 16) -> int:
    """The largest chunk size <= cap that divides n (quantize_static's CalibStridedMinMax needs a divisor):
    calibration statistics are collected chunk by chunk instead of holding every image's activations."""
    return max(d for d in range(1, min(cap, n) + 1) if n % d == 0)


def quantize_qdq(model: Path, out: Path, calib: np.ndarray, recipe=None) -> Path:
    """Static QDQ INT8 (int8 weights and activations) with the recipe's calibration statistic."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    dest = Path(out) / "model_int8.onnx"
    method = CALIBRATION_METHODS[recipe.calibration if recipe else None]
    extra = {"CalibStridedMinMax": _stride(len(calib))}
    if recipe is not None and recipe.activations is not None:
        extra["ActivationSymmetric"] = recipe.activations == "symmetric"
    if method == "Percentile":
        extra["CalibPercentile"] = recipe.percentile
    root = logging.getLogger()
    quiet = _DropPreprocessHint()
    root.addFilter(quiet)  # quantize_static logs a "consider pre-processing" hint on the root logger
    try:
        quantize_static(
            str(model), str(dest), onnx_calibration_reader(model, calib),
            quant_format=QuantFormat.QDQ,
            per_channel=recipe is None or recipe.weights == "per_channel",
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=getattr(CalibrationMethod, method),
            extra_options=extra,
        )
    finally:
        root.removeFilter(quiet)
    return dest


class _DropPreprocessHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing" not in record.getMessage()
