"""The ONNX Runtime quantizer: `onnxruntime.quantization.quantize_static`, QDQ format.

What it can do (`problems`): MinMax, Percentile and Entropy (KL) calibration; symmetric or
asymmetric int8 activations; per-channel or per-tensor int8 weights. No 16-bit activations, no
accuracy budget, no NNCF settings.

How a recipe becomes `quantize_static` arguments (`CALIBRATION_METHODS`, `quantize_qdq`): the
recipe's statistic picks the CalibrationMethod (and CalibPercentile), its activation scheme
ActivationSymmetric, its weights `per_channel`. `int8_stage` is the cached stage (keyed by the
ONNX FP32 stage).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edgepipe.quantize.quantizers.base import no_16x8, no_nncf_options, unsupported_statistic

# ---- what it can do ------------------------------------------------------------------------

# recipe.calibration -> onnxruntime CalibrationMethod member (None: the toolchain's default)
CALIBRATION_METHODS = {None: "MinMax", "minmax": "MinMax", "percentile": "Percentile", "kl": "Entropy"}
STATISTICS = frozenset(k for k in CALIBRATION_METHODS if k is not None)
STATISTICS_WHY = ("onnxruntime CalibrationMethod offers MinMax, Percentile and Entropy (KL); it has no MSE "
                  "or mean-of-min/max statistic")


def problems(recipe) -> list[str]:
    """Why onnxruntime's quantize_static cannot build `recipe` (empty list = possible)."""
    out = unsupported_statistic(recipe, STATISTICS, STATISTICS_WHY) + no_16x8(recipe, "onnxruntime")
    if recipe.has_budget:
        out.append("max_accuracy_drop / min_agreement / min_output_snr_db: budgets are implemented for TFLite "
                   "(QuantizationDebugger float fallback) and NNCF (quantize_with_accuracy_control) only")
    return out + no_nncf_options(recipe, "onnxruntime", " (onnxruntime's SmoothQuant needs Intel Neural "
                                                        "Compressor, which edgepipe does not install)")


# ---- how a recipe becomes quantize_static arguments --------------------------------------------

def _stride(n: int, cap: int = 16) -> int:
    """The largest chunk size <= cap that divides n (quantize_static's CalibStridedMinMax needs a divisor):
    calibration statistics are collected chunk by chunk instead of holding every image's activations."""
    return max(d for d in range(1, min(cap, n) + 1) if n % d == 0)


def quantize_qdq(model: Path, out: Path, calib: np.ndarray, recipe=None) -> Path:
    """Static QDQ INT8 (int8 weights and activations) with the recipe's calibration statistic."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from edgepipe.calibration.adapters import onnx_calibration_reader

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
            reduce_range=recipe is not None and recipe.weight_bits == 7,  # 7-bit weights
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


# ---- the cached stage ------------------------------------------------------------------------

def int8_stage(ctx, fp32, recipe, calib):
    """The QDQ INT8 stage of a recipe from the ONNX FP32 stage `fp32`. Returns (stage result, tool versions)."""
    from edgepipe.core.versions import tool_versions

    versions = tool_versions("onnx", "onnxruntime")
    params = {"onnx": fp32.key, "calibration": calib.sha256, **recipe.key_params(), **versions}
    res = ctx.stage("onnx-qdq-int8", params,
                    lambda out: {"file": quantize_qdq(fp32.path / fp32.meta["file"], out, calib.images, recipe).name})
    return res, versions
