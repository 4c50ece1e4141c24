"""tflite-arm: TFLite FP32 and full-integer INT8 for ARM CPUs (XNNPACK)."""

from __future__ import annotations

from pydantic import Field, PositiveInt

from pipeline.artifacts import Artifact
from pipeline.versions import tool_versions
from targets.base import BaseOptions, Job

NAME = "tflite-arm"


class Options(BaseOptions):
    int8_io: bool = True  # int8 input/output tensors (else float I/O around an int8 body)
    verify_arm64: int = Field(0, ge=0, description="test images to run on an arm64 userland under emulation "
                                                   "and compare with the host (0: off)")
    xnnpack: bool = True  # LiteRT's default XNNPACK delegate (False: builtin kernels only)
    num_threads: PositiveInt | None = None  # XNNPACK/interpreter threads (default: the run's `threads`)


def jobs(ctx, opts: Options) -> list[Job]:
    builders = {"fp32": lambda: _fp32(ctx), "int8": lambda: _int8(ctx, opts)}

    def runner(artifact, threads):
        return make_runner(artifact, threads, opts.xnnpack, opts.num_threads)

    # only non-default runner options enter the validators' key, so existing caches stay valid
    params = {k: v for k, v in {"xnnpack": opts.xnnpack, "num_threads": opts.num_threads}.items()
              if v != Options.model_fields[k].default}
    return [Job(f"{NAME}/{p}", NAME, p, builders[p], runner, params) for p in opts.precisions]


def runtime_metadata(path) -> dict:
    """The minimum TFLite runtime version the artifact needs (from its op versions and metadata)."""
    from targets.tflite_versions import min_runtime_version

    return {"min_runtime": min_runtime_version(path).to_json()}


def checks(ctx, opts: Options) -> list:
    """Extra report rows: with `verify_arm64: N`, each artifact on arm64 (emulated) vs the host."""
    if not opts.verify_arm64:
        return []
    from targets.arm64_emulated import pipeline_row

    builders = {"fp32": lambda: _fp32(ctx), "int8": lambda: _int8(ctx, opts)}
    return [lambda rows, p=p: pipeline_row(ctx, f"{NAME}/{p}", p, builders[p], opts.verify_arm64, rows)
            for p in opts.precisions]


def _fp32(ctx) -> Artifact:
    from pipeline.stages.tflite import convert_fp32

    sm = ctx.savedmodel()
    versions = tool_versions("tensorflow")
    res = ctx.stage("tflite-fp32", {"savedmodel": sm.key, **versions},
                    lambda out: {"file": convert_fp32(sm.path / "saved_model", out).name})
    path = res.path / res.meta["file"]
    return Artifact.from_files(f"{NAME}/fp32", NAME, "tflite", "fp32", path,
                               tool_versions=versions, source_model_sha256=ctx.model_sha, stage_key=res.key,
                               metadata=runtime_metadata(path))


def int8_stage(ctx, int8_io: bool = True, io_dtype: str = "int8"):
    """The full-integer INT8 conversion stage, shared with coral-edgetpu: same options, same cache key,
    so an Edge TPU build reuses tflite-arm's conversion instead of converting twice."""
    from pipeline.stages.tflite import convert_int8

    sm = ctx.savedmodel()
    calib = ctx.calibration
    versions = tool_versions("tensorflow")
    params = {"savedmodel": sm.key, "calibration": calib.sha256, "int8_io": int8_io, **versions}
    if io_dtype != "int8":  # keeps the key of the default (int8 I/O) conversion unchanged
        params["io_dtype"] = io_dtype
    res = ctx.stage("tflite-int8", params,
                    lambda out: {"file": convert_int8(sm.path / "saved_model", out, calib.images, int8_io,
                                                      io_dtype=io_dtype).name})
    return res, versions


def _int8(ctx, opts: Options) -> Artifact:
    res, versions = int8_stage(ctx, opts.int8_io)
    path = res.path / res.meta["file"]
    return Artifact.from_files(f"{NAME}/int8", NAME, "tflite", "int8", path,
                               tool_versions=versions, calibration_sha256=ctx.calibration.sha256,
                               source_model_sha256=ctx.model_sha, stage_key=res.key,
                               metadata=runtime_metadata(path))


def make_runner(artifact: Artifact, threads: int, xnnpack: bool = True, num_threads: int | None = None):
    from targets.runtimes import TFLiteRunner

    return TFLiteRunner(artifact.path, num_threads or threads, xnnpack=xnnpack)
