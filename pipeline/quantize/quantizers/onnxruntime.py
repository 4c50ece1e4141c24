"""The ONNX Runtime quantizer: `onnxruntime.quantization.quantize_static`, QDQ format.

What it can do (`problems`): MinMax, Percentile and Entropy (KL) calibration; symmetric or
asymmetric int8 activations; per-channel or per-tensor int8 weights; uint8 activations with int8 weights
(`integer_types: u8s8`, the u8 x s8 kernels: VNNI's on x86, the fastest; exact on x86 without VNNI only with the
session option the runner sets, formats/onnx.py `exact_int8_config`) or with uint8 weights (`u8u8`, the U8U8
kernels: no int16 saturation on x86 without VNNI in any session); a budget (`max_accuracy_drop`,
`min_agreement`, `min_output_snr_db`) met by leaving the worst nodes unquantized (`nodes_to_exclude`).
No 16-bit activations, no NNCF settings.

How a recipe becomes `quantize_static` arguments (`CALIBRATION_METHODS`, `quantize_qdq`): the
recipe's statistic picks the CalibrationMethod (and CalibPercentile), its activation scheme
ActivationSymmetric, its weights `per_channel`. `int8_stage` is the cached stage (keyed by the
ONNX FP32 stage). The budget (`ort_to_budget`): quantize once, rank every quantized node by its own
error (the lowest SNR among its quantized inputs: each activation before vs after its QDQ pair on the
same control images, each weight vs its dequantized copy; onnxruntime.quantization.qdq_loss_debug),
then quantize again with the worst nodes in `nodes_to_exclude`, one more per step, through
`accuracy_aware.greedy_budget`. Each step calibrates again (quantize_static has no calibration cache).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgepipe.quantize.accuracy_aware import BudgetResult
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
    return out + no_nncf_options(recipe, "onnxruntime", " (onnxruntime's SmoothQuant needs Intel Neural "
                                                        "Compressor, which edgepipe does not install)")


# ---- how a recipe becomes quantize_static arguments --------------------------------------------

def _stride(n: int, cap: int = 16) -> int:
    """The largest chunk size <= cap that divides n (quantize_static's CalibStridedMinMax needs a divisor):
    calibration statistics are collected chunk by chunk instead of holding every image's activations."""
    return max(d for d in range(1, min(cap, n) + 1) if n % d == 0)


def quantize_qdq(model: Path, out: Path, calib: np.ndarray, recipe=None, nodes_to_exclude: Sequence[str] = (),
                 name: str = "model_int8.onnx") -> Path:
    """Static QDQ INT8 (int8 weights and activations) with the recipe's calibration statistic;
    `nodes_to_exclude` stay in float."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from edgepipe.calibration.adapters import onnx_calibration_reader

    dest = Path(out) / name
    method = CALIBRATION_METHODS[recipe.calibration if recipe else None]
    types = recipe.integer_types if recipe is not None else "s8s8"
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
            activation_type=QuantType.QInt8 if types == "s8s8" else QuantType.QUInt8,
            weight_type=QuantType.QUInt8 if types == "u8u8" else QuantType.QInt8,
            calibrate_method=getattr(CalibrationMethod, method),
            extra_options=extra,
            nodes_to_exclude=list(nodes_to_exclude) or None,
        )
    finally:
        root.removeFilter(quiet)
    return dest


def rank_qdq_nodes(float_model: Path, qdq_model: Path, images: np.ndarray) -> list[dict]:
    """Every quantized node of `qdq_model`, worst first, by the lowest SNR (dB) among its quantized inputs:
    an activation before vs after its QDQ pair on `images`, or a weight vs its dequantized copy
    (onnxruntime.quantization.qdq_loss_debug). Node names are the float model's (nodes_to_exclude takes them)."""
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_signal_to_quantization_noice_ratio,
        compute_weight_error,
        create_activation_matching,
        create_weight_matching,
        modify_model_output_intermediate_tensors,
    )

    from edgepipe.calibration.adapters import onnx_calibration_reader

    with tempfile.TemporaryDirectory() as tmp:
        augmented = Path(tmp) / "augmented.onnx"
        modify_model_output_intermediate_tensors(str(qdq_model), str(augmented))
        acts = collect_activations(str(augmented), onnx_calibration_reader(qdq_model, images))
    # compute_activation_error needs the float model's activations too; the QDQ pairs' own error is this
    act_err = {k: compute_signal_to_quantization_noice_ratio(v["pre_qdq"], v["post_qdq"])
               for k, v in create_activation_matching(acts).items()}
    weight_err = compute_weight_error(create_weight_matching(str(float_model), str(qdq_model)))
    graph = onnx.load(str(qdq_model)).graph
    producer = {o: n for n in graph.node for o in n.output}
    rows = []
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        errs = {}
        for name in node.input:
            dq = producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            src = dq.input[0]
            q = producer.get(src)
            if q is not None and q.op_type == "QuantizeLinear" and q.input[0] in act_err:
                errs[q.input[0]] = act_err[q.input[0]]
            elif src.endswith("_quantized") and src[:-len("_quantized")] in weight_err:
                errs[src[:-len("_quantized")]] = weight_err[src[:-len("_quantized")]]
        if errs:
            worst = min(errs, key=errs.get)
            rows.append({"node": node.name, "op": node.op_type, "snr_db": float(errs[worst]), "input": worst})
    return sorted(rows, key=lambda r: r["snr_db"])


def ort_to_budget(model: Path, out: Path, calib: np.ndarray, control, recipe=None, threads: int = 2,
                  debug_images: int = 16, max_float_layers: int | None = 12,
                  latency_rounds: int = 3) -> tuple[Path, BudgetResult]:
    """QDQ INT8 with the fewest float nodes (in error order, `rank_qdq_nodes`) that meet `control.budget`
    (a recipe_stages.ControlSet), and the latency cost of those nodes against the plain QDQ model."""
    from edgepipe.formats.runners import ONNXRunner
    from edgepipe.quantize.accuracy_aware import greedy_budget, latency_cost
    from edgepipe.validators.accuracy import predict_all

    out = Path(out)
    plain = quantize_qdq(model, out, calib, recipe, name="plain.onnx")
    ranking = rank_qdq_nodes(model, plain, control.images[:debug_images])
    built: dict[tuple[str, ...], Path] = {(): plain}

    def evaluate(nodes: tuple[str, ...]) -> dict:
        if nodes not in built:
            built[nodes] = quantize_qdq(model, out, calib, recipe, nodes, name=f"step{len(nodes)}.onnx")
        runner = ONNXRunner(built[nodes], threads)
        return control.metrics(predict_all(runner, control.images))  # the throughput path: the batch-1 scores

    res = greedy_budget([r["node"] for r in ranking], evaluate, control.budget, control.reference_top1,
                        max_float_layers)
    res.ranking = ranking
    dest = out / "model_int8_budget.onnx"
    built[res.chosen.float_layers].replace(dest)
    if res.chosen.float_layers and latency_rounds:
        res.latency_cost = latency_cost({"int8": ONNXRunner(plain, threads), "budget": ONNXRunner(dest, threads)},
                                        control.images, latency_rounds)
    for path in built.values():
        path.unlink(missing_ok=True)
    return dest, res


class _DropPreprocessHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing" not in record.getMessage()


# ---- the cached stage ------------------------------------------------------------------------

def int8_stage(ctx, fp32, recipe, calib):
    """The QDQ INT8 stage of a recipe from the ONNX FP32 stage `fp32`. Returns (stage result, tool versions)."""
    from edgepipe.core.versions import tool_versions

    versions = tool_versions("onnx", "onnxruntime")
    if recipe.has_budget:
        return budget_stage(ctx, fp32, recipe, calib, versions), versions
    # "onnx_fp32", not "onnx": tool_versions has an "onnx" key, which would replace the source model's key
    params = {"onnx_fp32": fp32.key, "calibration": calib.sha256, **recipe.key_params(), **versions}
    res = ctx.stage("onnx-qdq-int8", params,
                    lambda out: {"file": quantize_qdq(fp32.path / fp32.meta["file"], out, calib.images, recipe).name})
    return res, versions


def budget_stage(ctx, fp32, recipe, calib, versions: dict):
    """An accuracy or fidelity budget by float nodes: the cached `ort_to_budget` of the ONNX FP32 stage."""
    from edgepipe.quantize.accuracy_aware import Budget
    from edgepipe.quantize.recipe_stages import ControlSet, budget_meta, control_key

    params = {"onnx_fp32": fp32.key, "calibration": calib.sha256, "recipe": recipe.cache_params(),
              **control_key(ctx), **versions}

    def fn(out: Path) -> dict:
        control = ControlSet.of(ctx, calib, Budget.of(recipe))
        path, res = ort_to_budget(fp32.path / fp32.meta["file"], out, calib.images, control, recipe,
                                  threads=ctx.cfg.threads)
        return budget_meta(out, path, res, control)

    return ctx.stage("onnx-qdq-int8-budget", params, fn)
