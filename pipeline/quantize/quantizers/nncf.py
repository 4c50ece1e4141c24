"""The NNCF quantizer: `nncf.quantize` (and `nncf.quantize_with_accuracy_control`) on an OpenVINO IR.

What it can do (`problems`): MINMAX, MEAN_MINMAX, MEAN_QUANTILE (percentile) and HISTOGRAM (MSE) range
estimators; symmetric or asymmetric 8-bit activations; per-channel or per-tensor weights; the
performance / mixed presets, fast / full / no bias correction, SmoothQuant; a `max_accuracy_drop`
budget through NNCF's own accuracy control, or a `min_agreement` fidelity budget through the same
accuracy control, with the FP32 model's own top-1 as the labels (so the metric NNCF restores is
agreement with FP32; one metric at a time, and no SNR bound: NNCF's accuracy control restores one
scalar metric).

How a recipe becomes NNCF calls: `nncf_arguments(recipe)` gives the keyword arguments of
`nncf.quantize` (None / the default recipe: NNCF's defaults); `quantize_nncf` and `nncf_to_budget`
call NNCF with them; `int8_stage` / `budget_stage` are the cached stages (keyed by the FP32 IR stage).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edgepipe.core.logs import tame_logger, toolkit_stdout
from edgepipe.quantize.quantizers.base import no_16x8, signed_only, unsupported_statistic

log = logging.getLogger("edgepipe")

# ---- what it can do ------------------------------------------------------------------------

# recipe.calibration -> the nncf RangeEstimatorParametersSet it selects (percentile: MEAN_QUANTILE at its
# outlier probability; mse: the histogram search minimising the quantization error)
RANGE_ESTIMATORS = {"minmax": "MINMAX", "mean_minmax": "MEAN_MINMAX", "percentile": "MEAN_QUANTILE",
                    "mse": "HISTOGRAM"}
STATISTICS = frozenset(RANGE_ESTIMATORS)
STATISTICS_WHY = ("nncf.quantize range estimators are MINMAX, MEAN_MINMAX, MEAN_QUANTILE and HISTOGRAM (MSE); "
                  "it has no KL/entropy estimator")


def problems(recipe) -> list[str]:
    """Why NNCF cannot build `recipe` (empty list = possible)."""
    out = (unsupported_statistic(recipe, STATISTICS, STATISTICS_WHY) + no_16x8(recipe, "nncf")
           + signed_only(recipe, "nncf", "NNCF quantizes weights to int8 and picks each activation's type "
                                         "from its sign; its x86 saturation fix is the 7-bit weight range "
                                         "(weight_bits 7, overflow_fix)"))
    if recipe.min_output_snr_db is not None:
        out.append("min_output_snr_db: nncf.quantize_with_accuracy_control restores one scalar metric per image "
                   "set, which edgepipe sets to top-1 or to agreement with FP32; use min_agreement for NNCF")
    if recipe.max_accuracy_drop is not None and recipe.min_agreement is not None:
        out.append("max_accuracy_drop with min_agreement: nncf.quantize_with_accuracy_control restores one "
                   "metric at a time; set one of them for NNCF")
    return out


# ---- how a recipe becomes NNCF calls ---------------------------------------------------------

def nncf_arguments(recipe) -> dict:
    """The keyword arguments of `nncf.quantize` a recipe asks for (None / default recipe: NNCF's defaults)."""
    import nncf
    from nncf.common.quantization.structs import QuantizationScheme
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        AdvancedSmoothQuantParameters,
        OverflowFix,
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
    if recipe.calibration in RANGE_ESTIMATORS:  # other statistics were refused by `problems`
        estimator = getattr(RangeEstimatorParametersSet, RANGE_ESTIMATORS[recipe.calibration])
        if recipe.calibration == "percentile":  # MEAN_QUANTILE at the recipe's outlier probability
            prob = 1.0 - recipe.percentile / 100.0
            lo, hi = (StatisticsCollectorParameters(side.statistics_type, side.aggregator_type,
                                                    quantile_outlier_prob=prob)
                      for side in (estimator.min, estimator.max))
            estimator = RangeEstimatorParameters(min=lo, max=hi)
        adv["activations_range_estimator_params"] = estimator
    if recipe.weight_bits == 7:  # NNCF's default fixes the first layer only (OverflowFix.FIRST_LAYER)
        adv["overflow_fix"] = OverflowFix.ENABLE
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


def quantize_nncf(ir: Path, out: Path, calib: np.ndarray, recipe=None, target_device: str = "ANY",
                  name: str = "model_int8.xml") -> Path:
    """FP32 IR -> NNCF INT8 IR. `recipe`: edgepipe.quantize.recipes.Recipe (None: NNCF's defaults).
    `target_device` selects NNCF's hardware config (e.g. "NPU": the quantization scheme the NPU runs)."""
    import nncf
    import openvino as ov

    from edgepipe.calibration.adapters import nncf_dataset

    model = ov.Core().read_model(str(ir))
    names = op_names(model)
    tame_logger("nncf")  # NNCF logs INFO to stdout; its progress bars print there too: stdout is for --json
    with toolkit_stdout():
        qmodel = nncf.quantize(
            model,
            nncf_dataset(calib),
            target_device=nncf.TargetDevice(target_device),
            subset_size=len(calib),
            **nncf_arguments(recipe),
        )
    return save_quantized(qmodel, names, Path(out) / name)


def op_names(model) -> frozenset[str]:
    """The friendly names of the float model's ops (what `save_quantized` leaves as they are)."""
    return frozenset(op.get_friendly_name() for op in model.get_ops())


def save_quantized(qmodel, source_names: frozenset[str], dest: Path) -> Path:
    """The quantized model as an IR at `dest`, with the unnamed Constant/Convert nodes NNCF added (those not in
    `source_names`) named in order (`canonical_names`: the same bytes whatever this process converted before)."""
    import openvino as ov

    from edgepipe.stages.openvino import canonical_names

    canonical_names(qmodel, source_names, "nncf_")
    ov.save_model(qmodel, str(dest), compress_to_fp16=False)
    return dest


def nncf_to_budget(ir: Path, out: Path, calib: np.ndarray, control, recipe=None, max_float_layers: int = 12,
                   ranking_subset_size: int = 100, target_device: str = "ANY",
                   latency_rounds: int = 0, threads: int = 2) -> tuple[Path, dict]:
    """`nncf.quantize_with_accuracy_control` with an absolute budget (and the recipe's other NNCF settings,
    as `nncf.quantize` would get them). `control` (a recipe_stages.ControlSet) says what on: top-1 on the
    labeled control images for `max_drop_points`, or, for `min_agreement`, top-1 against the FP32
    model's own top-1 (agreement), for which the FP32 IR scores ~1. At most `max_float_layers`
    quantizers are reverted (the same cap as the TFLite loop), ranked on `ranking_subset_size` control
    images, which bounds the search time on a large model. `latency_rounds`: also quantize without the
    budget and measure both side by side (`latency_cost`)."""
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    from edgepipe.calibration.adapters import nncf_dataset

    budget = control.budget
    fidelity = budget.max_drop_points is None
    labels = control.reference_scores.argmax(axis=1) if fidelity else control.labels
    max_drop = 1.0 - budget.min_agreement if fidelity else budget.max_drop_points / 100.0
    kw = nncf_arguments(recipe)
    if "advanced_parameters" in kw:
        kw["advanced_quantization_parameters"] = kw.pop("advanced_parameters")

    def scores_of(compiled) -> np.ndarray:
        output = compiled.outputs[0]
        return np.stack([compiled(img[None].astype(np.float32))[output][0] for img in control.images])

    def validate(compiled, items) -> float:
        output = compiled.outputs[0]
        preds, want = [], []
        for img, label in items:
            preds.append(int(np.argmax(compiled(img[None].astype(np.float32))[output][0])))
            want.append(int(label))
        return float(np.mean(np.array(preds) == np.array(want)))

    model = ov.Core().read_model(str(ir))
    validation = nncf.Dataset(list(zip(control.images, labels, strict=True)))
    tame_logger("nncf")
    with toolkit_stdout():
        qmodel = nncf.quantize_with_accuracy_control(
            model, nncf_dataset(calib), validation, validate, max_drop=max_drop,
            drop_type=nncf.DropType.ABSOLUTE, subset_size=len(calib), target_device=nncf.TargetDevice(target_device),
            **kw,
            advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
                max_num_iterations=max_float_layers, ranking_subset_size=min(ranking_subset_size, len(labels))))
    dest = Path(out) / "model_int8_budget.xml"
    ov.save_model(qmodel, str(dest), compress_to_fp16=False)
    core = ov.Core()
    compiled = core.compile_model(qmodel, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    fq = sum(op.get_type_name() == "FakeQuantize" for op in qmodel.get_ops())
    info = {"fake_quantize_ops": fq}
    if fidelity:
        m = control.metrics(scores_of(compiled))
        info.update(control_agreement=m["agreement"], control_output_snr_db=m["output_snr_db"],
                    within_budget=m["agreement"] >= budget.min_agreement - 1e-9)
    else:
        final = validate(compiled, zip(control.images, labels, strict=True))
        fp32 = core.compile_model(str(ir), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        drop = 100.0 * (validate(fp32, zip(control.images, labels, strict=True)) - final)
        info.update(max_drop_points=budget.max_drop_points, control_top1=final, control_drop_points=drop,
                    within_budget=drop <= budget.max_drop_points + 1e-9)
    if latency_rounds:
        plain = quantize_nncf(ir, Path(out), calib, recipe, target_device=target_device, name="plain.xml")
        info["latency_cost"] = openvino_latency_cost(plain, dest, control.images, latency_rounds, threads)
        for f in (plain, plain.with_suffix(".bin")):
            f.unlink()
    return dest, info


def openvino_latency_cost(plain: Path, chosen: Path, images: np.ndarray, rounds: int, threads: int = 2) -> dict:
    """p50 of the budget's IR vs the plain INT8 IR, side by side (accuracy_aware.latency_cost)."""
    from edgepipe.formats.runners import OpenVINORunner
    from edgepipe.quantize.accuracy_aware import latency_cost

    return latency_cost({"int8": OpenVINORunner(plain, threads), "budget": OpenVINORunner(chosen, threads)},
                        images, rounds)


# ---- the cached stages ---------------------------------------------------------------------

def stage_name_and_params(ir, recipe, calib, target_device: str, versions: dict) -> tuple[str, dict]:
    """The plain NNCF INT8 stage of (recipe, target device) on the IR stage `ir`: its name and key."""
    # the default recipe adds nothing to the key: stages cached before recipes stay valid
    params = {"ir": ir.key, "calibration": calib.sha256, "preset": recipe.nncf_preset or "performance",
              **recipe.key_params(), **versions}
    name = "nncf-int8"
    if target_device != "ANY":
        params["target_device"] = target_device
        name = f"nncf-int8-{target_device.lower()}"
    return name, params


def int8_stage(ctx, ir, recipe, calib, target_device: str = "ANY", partners: tuple = ()):
    """The NNCF INT8 stage of a recipe from the FP32 IR stage `ir` (accuracy control when the recipe has a
    budget); `target_device="NPU"`: NNCF's NPU hardware config, its own stage. `partners`: other (recipe,
    target device) pairs this run quantizes from the same IR and calibration images: when this stage runs,
    it quantizes them too from one statistics pass (`nncf_shared`) and publishes their stages, which are
    then found cached. Returns (stage result, tool versions)."""
    from edgepipe.core.versions import tool_versions

    versions = tool_versions("openvino", "nncf")
    if recipe.has_budget:
        return budget_stage(ctx, ir, recipe, calib, target_device), versions
    name, params = stage_name_and_params(ir, recipe, calib, target_device, versions)

    def fn(out: Path) -> dict:
        src = ir.path / ir.meta["file"]
        others = [(r, d, *stage_name_and_params(ir, r, calib, d, versions)) for r, d in partners]
        others = [o for o in others if o[2] != name and not ctx.is_cached(o[2], o[3])]
        models = one_pass(src, calib.images, [(recipe, target_device)] + [(o[0], o[1]) for o in others],
                          [name] + [o[2] for o in others]) if others else None
        if models is None:
            return {"file": quantize_nncf(src, out, calib.images, recipe, target_device=target_device).name}
        import openvino as ov

        names = op_names(ov.Core().read_model(str(src)))
        for (_, _, other, other_params), model in zip(others, models[1:], strict=True):
            ctx.stage(other, other_params, lambda o, m=model: {
                "file": save_quantized(m, names, o / "model_int8.xml").name, "statistics_from": name})
        return {"file": save_quantized(models[0], names, out / "model_int8.xml").name,
                "statistics_shared_with": [o[2] for o in others]}

    return ctx.stage(name, params, fn), versions


def one_pass(ir: Path, calib: np.ndarray, jobs: list[tuple], names: list[str]) -> list | None:
    """The quantized models of (recipe, target device) `jobs` from one statistics pass (`nncf_shared`), or None
    when they cannot share one (a pipeline of several steps, e.g. SmoothQuant's) or NNCF's internals it uses
    are missing (logged): the caller then quantizes each with `nncf.quantize`. Budgets never get here
    (`int8_stage` hands them to `budget_stage`, and partners have none)."""
    from edgepipe.quantize.quantizers import nncf_shared

    try:
        return nncf_shared.quantize_shared(ir, calib, [(nncf_arguments(r), d) for r, d in jobs])
    except nncf_shared.NotShareable:
        return None
    except (ImportError, AttributeError, TypeError) as err:  # NNCF's internals moved: the plain call still works
        log.warning("one NNCF statistics pass for %s is not available (%s: %s); quantizing each on its own",
                    names, type(err).__name__, err)
        return None


def budget_stage(ctx, ir, recipe, calib, target_device: str = "ANY"):
    """An accuracy or agreement budget by NNCF's accuracy control: the cached `nncf_to_budget` of the IR
    stage `ir` (with its latency cost against the plain INT8 IR when it is a CPU IR)."""
    from edgepipe.core.versions import tool_versions
    from edgepipe.quantize.accuracy_aware import Budget
    from edgepipe.quantize.recipe_stages import ControlSet, control_key

    params = {"ir": ir.key, "calibration": calib.sha256, "recipe": recipe.cache_params(),
              **control_key(ctx), **tool_versions("openvino", "nncf")}
    if target_device != "ANY":
        params["target_device"] = target_device

    def fn(out: Path) -> dict:
        control = ControlSet.of(ctx, calib, Budget.of(recipe))
        path, info = nncf_to_budget(ir.path / ir.meta["file"], out, calib.images, control, recipe,
                                    target_device=target_device, latency_rounds=3 if target_device == "ANY" else 0,
                                    threads=ctx.cfg.threads)
        return {"file": path.name, **info, **control.record()}

    return ctx.stage("nncf-int8-budget", params, fn)
