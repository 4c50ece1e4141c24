"""tflite-arm: TFLite FP32 and full-integer INT8 for ARM CPUs (XNNPACK)."""

from __future__ import annotations

from pipeline.artifacts import Artifact
from pipeline.versions import tool_versions
from targets.base import Job, QuantizedOptions

NAME = "tflite-arm"
QUANTIZER = "tflite"


class Options(QuantizedOptions):
    int8_io: bool = True  # integer input/output tensors (int16 under a 16x8 recipe; else float I/O)


def jobs(ctx, opts: Options) -> list[Job]:
    builders = {"fp32": lambda: _fp32(ctx), "int8": lambda: _int8(ctx, opts)}

    def diagnose(artifact):
        from pipeline.stages.layer_errors import layer_error_stage
        from pipeline.stages.recipe_stages import diagnosis_savedmodel

        return layer_error_stage(ctx, "tflite", _fp32(ctx, diagnosis_savedmodel(ctx, NAME)), artifact)

    return [Job(f"{NAME}/{p}", NAME, p, builders[p], make_runner, {}, diagnose if p == "int8" else None)
            for p in opts.precisions]


def _fp32(ctx, sm=None) -> Artifact:
    from pipeline.stages.tflite import convert_fp32

    sm = sm or ctx.savedmodel()
    versions = tool_versions("tensorflow")
    res = ctx.stage("tflite-fp32", {"savedmodel": sm.key, **versions},
                    lambda out: {"file": convert_fp32(sm.path / "saved_model", out).name})
    return Artifact.from_files(f"{NAME}/fp32", NAME, "tflite", "fp32", res.path / res.meta["file"],
                               tool_versions=versions, source_model_sha256=ctx.model_sha, stage_key=res.key)


def _int8(ctx, opts: Options) -> Artifact:
    from pipeline.stages.recipe_stages import budget_record, source_savedmodel, tflite_budget_stage
    from pipeline.stages.tflite import convert_int8

    recipe = ctx.recipe(NAME)
    calib = ctx.calibration_for(recipe)
    sm = source_savedmodel(ctx, recipe, calib)  # equalized when the recipe asks for it
    versions = tool_versions("tensorflow")
    params = {"savedmodel": sm.key, "calibration": calib.sha256, "int8_io": opts.int8_io,
              **recipe.key_params(), **versions}
    if recipe.max_accuracy_drop is not None:  # float I/O, the fewest layers kept in float
        res = tflite_budget_stage(ctx, sm, recipe, calib)
    else:
        res = ctx.stage("tflite-int8", params,
                        lambda out: {"file": convert_int8(sm.path / "saved_model", out, calib.images, opts.int8_io,
                                                          recipe).name})
    return Artifact.from_files(f"{NAME}/int8", NAME, "tflite", "int8", res.path / res.meta["file"],
                               tool_versions=versions, calibration_sha256=calib.sha256,
                               source_model_sha256=ctx.model_sha, stage_key=res.key,
                               recipe={"name": opts.recipe, **recipe.cache_params(), **budget_record(res)})


def make_runner(artifact: Artifact, threads: int):
    from targets.runtimes import TFLiteRunner

    return TFLiteRunner(artifact.path, threads)
