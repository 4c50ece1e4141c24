"""The TFLite quantizer: TFLiteConverter full-integer post-training quantization.

What it can do (`problems`): min/max calibration only; int8 activations with a zero point
(asymmetric), or 16x8 (int16 activations, symmetric); per-channel or per-tensor weights; a budget
(`max_accuracy_drop`, and the fidelity bounds `min_agreement` / `min_output_snr_db`) met by keeping the
worst layers in float (8-bit activations only).

How a recipe becomes converter calls (`converter`, `convert_int8`): per-tensor weights disable the
converter's per-channel quantization; `activation_bits: 16` selects the 16x8 op set. The budget
(`tflite_to_budget`) calibrates once with `tf.lite.experimental.QuantizationDebugger`, ranks every
quantized layer by its own error (RMSE of its INT8 output vs its float output on the same input,
in quantization steps) and keeps the worst ones in float (`denylisted_nodes`), one by one, through
`accuracy_aware.greedy_budget`, then measures what the float layers cost in p50 against the same model
with none (side by side). `int8_stage` / `budget_stage` are the cached stages.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgepipe.quantize.accuracy_aware import BudgetResult, greedy_budget, latency_cost
from edgepipe.quantize.quantizers.base import no_7bit_weights, no_nncf_options, signed_only, unsupported_statistic
from edgepipe.quantize.quantizers.tflite_parallel import parallel_calibration, parts

# ---- what it can do ------------------------------------------------------------------------

STATISTICS = frozenset({"minmax"})
STATISTICS_WHY = ("TFLiteConverter's calibrator records only min/max per tensor "
                  "(no percentile, MSE or KL statistic in its API)")
NO_SMOOTH_QUANT = " (TFLiteConverter has no SmoothQuant)"
NO_U8 = ("TFLite full-integer quantization has int8 weights and activations (uint8 I/O is only a conversion at the "
         "model's edges)")
NO_7BIT = ("TFLiteConverter always uses the full symmetric int8 weight range, and TFLite's int8 kernels "
           "(XNNPACK, the Edge TPU) accumulate without int16 saturation, so there is nothing to avoid")


def scheme_problems(recipe) -> list[str]:
    """The activation scheme the converter imposes for the recipe's activation bits."""
    out = []
    if recipe.activation_bits == 8 and recipe.activations == "symmetric":
        out.append("activations 'symmetric' is not available with 8-bit TFLite: full-integer PTQ always "
                   "gives int8 activations a zero point (asymmetric); use activation_bits 16 (symmetric int16)")
    if recipe.activation_bits == 16 and recipe.activations == "asymmetric":
        out.append("activations 'asymmetric' is not available with TFLite 16x8: int16 activations are "
                   "symmetric (zero point 0)")
    return out


def problems(recipe) -> list[str]:
    """Why the TFLite converter cannot build `recipe` (empty list = possible)."""
    out = unsupported_statistic(recipe, STATISTICS, STATISTICS_WHY) + scheme_problems(recipe)
    if recipe.has_budget and recipe.activation_bits == 16:
        out.append("a budget (max_accuracy_drop / min_agreement / min_output_snr_db) with activation_bits 16: "
                   "the float-fallback search runs on 8-bit activations only")
    return (out + no_nncf_options(recipe, "tflite", NO_SMOOTH_QUANT) + no_7bit_weights(recipe, "tflite", NO_7BIT)
            + signed_only(recipe, "tflite", NO_U8))


# ---- how a recipe becomes converter calls ----------------------------------------------------

def converter(saved_model: Path, per_tensor: bool = False):
    """The converter every TFLite INT8 path starts from (the plain conversion and the budget's debugger)."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if per_tensor:
        conv._experimental_disable_per_channel = True  # the converter's (private) per-tensor switch
    return conv


def convert_int8(saved_model: Path, out: Path, calib: np.ndarray, int8_io: bool = True, recipe=None,
                 io_dtype: str = "int8", processes: int = 1) -> Path:
    """Full-integer post-training quantization from real calibration images (built-in int8 ops only).

    With `int8_io`, the input/output tensors are integer: `io_dtype` (int8, or uint8 as older
    Edge TPU pipelines expect), int16 for a 16x8 recipe. `recipe` (edgepipe.quantize.recipes.Recipe,
    None = default): per-tensor weights disable the converter's per-channel quantization;
    activation_bits 16 selects the 16x8 op set (int16 activations, symmetric). Recipes the
    converter cannot build were rejected by the config (`problems`). `processes` > 1 splits the
    calibration over that many processes (`tflite_parallel`: the same model bytes).
    """
    import tensorflow as tf

    from edgepipe.calibration.adapters import tflite_representative
    from edgepipe.core.progress import bar

    conv = converter(saved_model, per_tensor=recipe is not None and recipe.weights == "per_tensor")
    x16 = recipe is not None and recipe.activation_bits == 16
    if x16:
        conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    else:
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if int8_io:
        dtype = tf.int16 if x16 else {"int8": tf.int8, "uint8": tf.uint8}[io_dtype]
        conv.inference_input_type = dtype
        conv.inference_output_type = dtype
    dest = Path(out) / "model_int8.tflite"
    with bar(f"TFLite INT8: calibrating on {len(calib)} images", len(calib)) as advance:
        conv.representative_dataset = tflite_representative(calib, advance)
        with parallel_calibration(calib, processes, advance):
            dest.write_bytes(conv.convert())
    return dest


def rank_tflite_layers(debugger) -> list[dict]:
    """Quantized layers, worst first, by RMSE / output scale (from the debugger's CSV dump)."""
    debugger.run()
    buf = io.StringIO()
    debugger.layer_statistics_dump(buf)
    rows = []
    for r in csv.DictReader(io.StringIO(buf.getvalue())):
        scale = float(r["scale"])
        err = float(np.sqrt(float(r["mean_squared_error"]))) / scale if scale > 0 else float("inf")
        rows.append({"tensor": r["tensor_name"], "op": r["op_name"], "rmse_over_scale": err})
    return sorted(rows, key=lambda r: -r["rmse_over_scale"])


def tflite_debugger(saved_model: Path, calib: np.ndarray, debug_images: np.ndarray, per_tensor: bool = False):
    """Calibrate once; the debugger re-quantizes from that calibration with any denylist."""
    import tensorflow as tf

    from edgepipe.calibration.adapters import tflite_representative

    conv = converter(saved_model, per_tensor)
    conv.representative_dataset = tflite_representative(calib)
    return tf.lite.experimental.QuantizationDebugger(
        converter=conv, debug_dataset=tflite_representative(debug_images))


def requantize(debugger, float_layers: Sequence[str]) -> bytes:
    """The INT8 model with `float_layers` (output tensor names) kept in float, float I/O."""
    import tensorflow as tf

    debugger.options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_nodes=list(float_layers) or None, fully_quantize=False)
    return debugger.get_nondebug_quantized_model()


def tflite_to_budget(saved_model: Path, out: Path, calib: np.ndarray, control, threads: int = 2,
                     debug_images: int = 32, max_float_layers: int | None = 12, per_tensor: bool = False,
                     latency_rounds: int = 3) -> tuple[Path, BudgetResult]:
    """Full-integer TFLite with the fewest float layers (in error order) that meet `control.budget`
    (`control`: a recipe_stages.ControlSet, or any object with `images`, `budget` and `metrics(scores)`).
    When layers were kept in float, their latency cost is measured side by side with the model that
    keeps none (`res.latency_cost`)."""
    from edgepipe.formats.runners import TFLiteRunner
    from edgepipe.validators.accuracy import predict_all

    debugger = tflite_debugger(saved_model, calib, control.images[:debug_images], per_tensor)
    ranking = rank_tflite_layers(debugger)
    models: dict[tuple[str, ...], bytes] = {}

    def evaluate(layers: tuple[str, ...]) -> dict:
        blob = requantize(debugger, layers)
        models[layers] = blob
        with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
            f.write(blob)
            f.flush()
            runner = TFLiteRunner(Path(f.name), threads)
            scores = predict_all(runner, control.images)  # the throughput path: the batch-1 scores
        return control.metrics(scores)

    res = greedy_budget([r["tensor"] for r in ranking], evaluate, control.budget, control.reference_top1,
                        max_float_layers)
    res.ranking = ranking
    dest = Path(out) / "model_int8_budget.tflite"
    dest.write_bytes(models[res.chosen.float_layers])
    if res.chosen.float_layers and latency_rounds:
        plain = Path(out) / "plain.tflite"  # the same calibration with nothing in float, for the comparison
        plain.write_bytes(models[()])
        res.latency_cost = latency_cost({"int8": TFLiteRunner(plain, threads), "budget": TFLiteRunner(dest, threads)},
                                        control.images, latency_rounds)
        plain.unlink()
    return dest, res


# ---- the cached stages ---------------------------------------------------------------------

def int8_stage(ctx, int8_io: bool = True, io_dtype: str = "int8", recipe=None):
    """The full-integer INT8 conversion stage, shared by tflite-arm and coral-edgetpu: same options, same
    cache key, so an Edge TPU build reuses tflite-arm's conversion instead of converting twice.
    Returns (stage result, tool versions, calibration batch used)."""
    from edgepipe.core.versions import tool_versions
    from edgepipe.quantize.recipe_stages import source_savedmodel
    from edgepipe.quantize.recipes import BUILTIN

    recipe = recipe or BUILTIN["default"]
    calib = ctx.calibration_for(recipe)
    sm = source_savedmodel(ctx, recipe, calib)  # equalized when the recipe asks for it
    versions = tool_versions("tensorflow")
    params = {"savedmodel": sm.key, "calibration": calib.sha256, "int8_io": int8_io,
              **recipe.key_params(), **versions}
    if io_dtype != "int8":  # keeps the key of the default (int8 I/O) conversion unchanged
        params["io_dtype"] = io_dtype
    if recipe.has_budget:  # float I/O, the fewest layers kept in float
        return budget_stage(ctx, sm, recipe, calib), versions, calib

    def fn(out: Path) -> dict:
        processes = calibration_processes(ctx.cfg.threads)  # not in the key: the same bytes for any count
        return {"file": convert_int8(sm.path / "saved_model", out, calib.images, int8_io, recipe, io_dtype,
                                     processes).name,
                "calibration_processes": len(parts(len(calib.images), processes))}

    return ctx.stage("tflite-int8", params, fn), versions, calib


def calibration_processes(threads: int) -> int:
    """Processes the calibration may use: the run's thread budget, at most this machine's cores."""
    return max(1, min(threads, os.cpu_count() or 1))


def budget_stage(ctx, sm, recipe, calib):
    """An accuracy or fidelity budget by float fallback: the cached `tflite_to_budget` of the SavedModel
    stage `sm`."""
    from edgepipe.core.versions import tool_versions
    from edgepipe.quantize.accuracy_aware import Budget
    from edgepipe.quantize.recipe_stages import ControlSet, budget_meta, control_key

    params = {"savedmodel": sm.key, "calibration": calib.sha256, "recipe": recipe.cache_params(),
              **control_key(ctx), **tool_versions("tensorflow")}

    def fn(out: Path) -> dict:
        control = ControlSet.of(ctx, calib, Budget.of(recipe))
        path, res = tflite_to_budget(sm.path / "saved_model", out, calib.images, control, threads=ctx.cfg.threads,
                                     per_tensor=recipe.weights == "per_tensor")
        return budget_meta(out, path, res, control)

    return ctx.stage("tflite-int8-budget", params, fn)
