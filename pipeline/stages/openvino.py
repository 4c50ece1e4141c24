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


def nncf_arguments(recipe) -> dict:
    """The keyword arguments of `nncf.quantize` a recipe asks for (None / default recipe: NNCF's defaults)."""
    import nncf
    from nncf.common.quantization.structs import QuantizationScheme
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        AdvancedSmoothQuantParameters,
        QuantizationParameters,
    )
    from nncf.quantization.range_estimator import (
        RangeEstimatorParameters,
        RangeEstimatorParametersSet,
        StatisticsCollectorParameters,
    )

    kw: dict = {"preset": nncf.QuantizationPreset((recipe and recipe.nncf_preset) or "performance")}
    if recipe is None:
        return kw
    adv: dict = {}
    if recipe.weights == "per_tensor":
        adv["weights_quantization_params"] = QuantizationParameters(per_channel=False)
    if recipe.activations is not None:
        adv["activations_quantization_params"] = QuantizationParameters(
            mode=QuantizationScheme.SYMMETRIC if recipe.activations == "symmetric" else QuantizationScheme.ASYMMETRIC)
    if recipe.calibration == "minmax":
        adv["activations_range_estimator_params"] = RangeEstimatorParametersSet.MINMAX
    elif recipe.calibration == "mean_minmax":
        adv["activations_range_estimator_params"] = RangeEstimatorParametersSet.MEAN_MINMAX
    elif recipe.calibration == "mse":  # histogram search minimising the quantization error
        adv["activations_range_estimator_params"] = RangeEstimatorParametersSet.HISTOGRAM
    elif recipe.calibration == "percentile":
        prob = 1.0 - recipe.percentile / 100.0
        q = RangeEstimatorParametersSet.MEAN_QUANTILE
        adv["activations_range_estimator_params"] = RangeEstimatorParameters(
            min=StatisticsCollectorParameters(q.min.statistics_type, q.min.aggregator_type, quantile_outlier_prob=prob),
            max=StatisticsCollectorParameters(q.max.statistics_type, q.max.aggregator_type, quantile_outlier_prob=prob))
    if recipe.bias_correction == "full":
        kw["fast_bias_correction"] = False
    elif recipe.bias_correction == "off":
        adv["disable_bias_correction"] = True
    if recipe.smooth_quant:
        # NNCF 3.4 adds SmoothQuant to the pipeline only for ModelType.TRANSFORMER
        kw["model_type"] = nncf.ModelType.TRANSFORMER
        a = recipe.smooth_quant_alpha
        adv["smooth_quant_alphas"] = AdvancedSmoothQuantParameters(convolution=a, matmul=a)
    if adv:
        kw["advanced_parameters"] = AdvancedQuantizationParameters(**adv)
    return kw


def quantize_nncf(ir: Path, out: Path, calib: np.ndarray, recipe=None) -> Path:
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(ir))
    qmodel = nncf.quantize(
        model,
        nncf_dataset(calib),
        subset_size=len(calib),
        **nncf_arguments(recipe),
    )
    dest = Path(out) / "model_int8.xml"
    ov.save_model(qmodel, str(dest), compress_to_fp16=False)
    return dest
