"""SavedModel -> OpenVINO IR (FP32, static batch 1) -> NNCF INT8 IR."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from calibration.adapters import nncf_dataset


def convert_ir(saved_model: Path, out: Path, shape: tuple[int, int, int]) -> Path:
    import openvino as ov

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


def quantize_nncf(ir: Path, out: Path, calib: np.ndarray, recipe=None, target_device: str = "ANY") -> Path:
    """`recipe`: pipeline.quantize.recipes.Recipe (None: NNCF's defaults). `target_device` selects NNCF's
    hardware config (e.g. "NPU": the quantization scheme the NPU runs)."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(ir))
    source_names = frozenset(op.get_friendly_name() for op in model.get_ops())
    qmodel = nncf.quantize(
        model,
        nncf_dataset(calib),
        target_device=nncf.TargetDevice(target_device),
        subset_size=len(calib),
        **nncf_arguments(recipe),
    )
    canonical_names(qmodel, source_names, "nncf_")  # only the unnamed Constant/Convert nodes NNCF added
    dest = Path(out) / "model_int8.xml"
    ov.save_model(qmodel, str(dest), compress_to_fp16=False)
    return dest


def compress_fp16(ir: Path, out: Path) -> Path:
    """FP32 IR -> IR with FP16 weights (what MYRIAD / VPU plugins ran)."""
    import openvino as ov

    dest = Path(out) / "model_fp16.xml"
    ov.save_model(ov.Core().read_model(str(ir)), str(dest), compress_to_fp16=True)
    return dest
