"""The Edge TPU quantizer: the TFLite converter, restricted to what the Edge TPU executes.

What it can do (`problems`): the TFLite quantizer's recipes with 8-bit activations only (the Edge TPU
executes 8-bit integer ops only). A `max_accuracy_drop` budget cannot keep layers in float (a float
op splits the graph onto the CPU), so it is met with full-integer repairs instead.

How a recipe becomes calls (`int8_stage`): tflite.int8_stage with integer I/O (int8, or uint8 as older
Edge TPU pipelines expect); with int8 I/O it is the same cache entry as tflite-arm's. With a budget,
`full_integer_budget` climbs `accuracy_aware.full_integer_ladder(recipe)`, each rung built by that same
stage and scored on the accuracy-control set, until one is within budget.
"""

from __future__ import annotations

from edgepipe.quantize.quantizers import tflite
from edgepipe.quantize.quantizers.base import (
    no_7bit_weights,
    no_16x8,
    no_nncf_options,
    signed_only,
    unsupported_statistic,
)


def problems(recipe) -> list[str]:
    """Why an Edge-TPU-ready full-integer TFLite model cannot be built from `recipe` (empty = possible)."""
    return (unsupported_statistic(recipe, tflite.STATISTICS, tflite.STATISTICS_WHY)
            + no_16x8(recipe, "edgetpu", " (the Edge TPU executes 8-bit integer ops only)")
            + tflite.scheme_problems(recipe)
            + no_nncf_options(recipe, "edgetpu", tflite.NO_SMOOTH_QUANT)
            + no_7bit_weights(recipe, "edgetpu", tflite.NO_7BIT)
            + signed_only(recipe, "edgetpu", tflite.NO_U8)
            + ([] if recipe.min_agreement is None and recipe.min_output_snr_db is None else
               ["min_agreement / min_output_snr_db: a fidelity budget keeps layers in higher precision, which the "
                "Edge TPU does not run (a float op splits the graph onto the CPU); the Edge TPU takes "
                "max_accuracy_drop, met by full-integer repairs"]))


def int8_stage(ctx, recipe, io_dtype: str = "int8"):
    """The Edge-TPU-ready full-integer model of `recipe`. Returns (stage result, tool versions, calibration
    batch, record): the record is `{"edgetpu_repair": pick}` when a budget chose among repairs, else empty."""
    if recipe.max_accuracy_drop is None:
        src, versions, calib = tflite.int8_stage(ctx, int8_io=True, io_dtype=io_dtype, recipe=recipe)
        return src, versions, calib, {}
    # full-integer repairs, never float layers; every rung has the recipe's calibration images
    from edgepipe.core.versions import tool_versions

    src, pick = full_integer_budget(
        ctx, recipe, lambda rung: tflite.int8_stage(ctx, int8_io=True, io_dtype=io_dtype, recipe=rung)[0])
    return src, tool_versions("tensorflow"), ctx.calibration_for(recipe), {"edgetpu_repair": pick}


def full_integer_budget(ctx, recipe, int8_stage):
    """`max_accuracy_drop` for a target that runs only full-integer graphs (the Edge TPU).

    Climbs `accuracy_aware.full_integer_ladder(recipe)`: each rung is built by
    `int8_stage(rung_recipe)` (the shared, cached TFLite full-integer stage) and scored on the
    accuracy-control set (cached per model), until one is within budget. Returns the chosen
    rung's stage result and the pick (every measured rung, the choice and why)."""
    from edgepipe.formats.runners import TFLiteRunner
    from edgepipe.quantize.accuracy_aware import full_integer_ladder, search_full_integer, top1
    from edgepipe.quantize.recipe_stages import control_batch, control_set, reference_top1, resolution
    from edgepipe.validators.accuracy import predict_all

    calib = ctx.calibration_for(recipe)
    images, labels = control_set(ctx, calib, recipe.max_accuracy_drop)
    ref = reference_top1(ctx, calib, images, labels)
    control_sha = control_batch(ctx, calib).sha256
    built = {}

    def evaluate(name: str, rung) -> float:
        res = built[name] = int8_stage(rung)
        path = res.path / res.meta["file"]
        score = ctx.stage("control-top1", {"tflite": res.key, "control": control_sha},
                          lambda out: {"top1": top1(predict_all(TFLiteRunner(path, ctx.cfg.threads), images),
                                                    labels)})
        return 100.0 * (ref - score.meta["top1"])

    pick = search_full_integer(full_integer_ladder(recipe), evaluate, recipe.max_accuracy_drop)
    pick.update(control_reference_top1=ref, **resolution(labels))
    return built[pick["chosen"]], pick
