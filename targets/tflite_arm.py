"""tflite-arm: TFLite FP32 and full-integer INT8 for ARM CPUs (XNNPACK).

The INT8 model is the TFLite quantizer's stage (pipeline/quantize/quantizers/tflite.py), shared with
coral-edgetpu."""

from __future__ import annotations

from pydantic import Field

from edgepipe.core.artifacts import Artifact
from edgepipe.core.bounds import Threads
from edgepipe.core.versions import tool_versions
from edgepipe.targets.base import Job, QuantizedOptions

NAME = "tflite-arm"
QUANTIZER = "tflite"


class Options(QuantizedOptions):
    int8_io: bool = True  # integer input/output tensors (int16 under a 16x8 recipe; else float I/O)
    verify_arm64: int = Field(0, ge=0, description="test images to run on an arm64 userland under emulation "
                                                   "and compare with the host (0: off)")
    xnnpack: bool = True  # LiteRT's default XNNPACK delegate (False: builtin kernels only)
    num_threads: Threads | None = None  # XNNPACK/interpreter threads (default: the run's `threads`)


def jobs(ctx, opts: Options) -> list[Job]:
    builders = {"fp32": lambda: _fp32(ctx), "int8": lambda: _int8(ctx, opts)}

    def runner(artifact, threads):
        return make_runner(artifact, threads, opts.xnnpack, opts.num_threads)

    def diagnose(artifact):
        from edgepipe.diagnostics.layer_errors import layer_error_stage
        from edgepipe.quantize.recipe_stages import diagnosis_savedmodel

        return layer_error_stage(ctx, "tflite", _fp32(ctx, diagnosis_savedmodel(ctx, NAME)), artifact)

    # only non-default runner options enter the validators' key, so existing caches stay valid
    params = {k: v for k, v in {"xnnpack": opts.xnnpack, "num_threads": opts.num_threads}.items()
              if v != Options.model_fields[k].default}
    return [Job(f"{NAME}/{p}", NAME, p, builders[p], runner, params,
                diagnose=diagnose if p == "int8" else None)
            for p in opts.precisions]


def runtime_metadata(path) -> dict:
    """The minimum TFLite runtime version the artifact needs (from its op versions and metadata)."""
    from edgepipe.formats.tflite_versions import min_runtime_version

    return {"min_runtime": min_runtime_version(path).to_json()}


def checks(ctx, opts: Options) -> list:
    """Extra report rows: with `verify_arm64: N`, each artifact on arm64 (emulated) vs the host."""
    if not opts.verify_arm64:
        return []
    from edgepipe.targets.arm64.emulated import pipeline_row

    builders = {"fp32": lambda: _fp32(ctx), "int8": lambda: _int8(ctx, opts)}
    return [lambda rows, p=p: pipeline_row(ctx, f"{NAME}/{p}", p, builders[p], opts.verify_arm64, rows)
            for p in opts.precisions]


def _fp32(ctx, sm=None) -> Artifact:
    from edgepipe.stages.tflite import convert_fp32

    sm = sm or ctx.savedmodel()
    versions = tool_versions("tensorflow")
    res = ctx.stage("tflite-fp32", {"savedmodel": sm.key, **versions},
                    lambda out: {"file": convert_fp32(sm.path / "saved_model", out).name})
    path = res.path / res.meta["file"]
    return Artifact.from_files(f"{NAME}/fp32", NAME, "tflite", "fp32", path,
                               tool_versions=versions, **ctx.source_model(), stage_key=res.key,
                               metadata=runtime_metadata(path))


def _int8(ctx, opts: Options) -> Artifact:
    from edgepipe.quantize.quantizers.tflite import int8_stage
    from edgepipe.quantize.recipe_stages import budget_record

    recipe = ctx.recipe(NAME)
    res, versions, calib = int8_stage(ctx, opts.int8_io, recipe=recipe)
    path = res.path / res.meta["file"]
    return Artifact.from_files(f"{NAME}/int8", NAME, "tflite", "int8", path,
                               tool_versions=versions, calibration_sha256=calib.sha256,
                               **ctx.source_model(), stage_key=res.key,
                               recipe={"name": opts.recipe, **recipe.cache_params(), **budget_record(res)},
                               metadata=runtime_metadata(path))


def make_runner(artifact: Artifact, threads: int, xnnpack: bool = True, num_threads: int | None = None):
    from edgepipe.formats.runners import TFLiteRunner

    return TFLiteRunner(artifact.path, num_threads or threads, xnnpack=xnnpack)
