"""tflite-arm: TFLite FP32 and full-integer INT8 for ARM CPUs (XNNPACK)."""

from __future__ import annotations

from pydantic import Field

from pipeline.artifacts import Artifact
from pipeline.versions import tool_versions
from targets.base import BaseOptions, Job

NAME = "tflite-arm"


class Options(BaseOptions):
    int8_io: bool = True  # int8 input/output tensors (else float I/O around an int8 body)
    verify_arm64: int = Field(0, ge=0, description="test images to run on an arm64 userland under emulation "
                                                   "and compare with the host (0: off)")


def jobs(ctx, opts: Options) -> list[Job]:
    builders = {"fp32": lambda: _fp32(ctx), "int8": lambda: _int8(ctx, opts)}
    return [Job(f"{NAME}/{p}", NAME, p, builders[p], make_runner) for p in opts.precisions]


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
    return Artifact.from_files(f"{NAME}/fp32", NAME, "tflite", "fp32", res.path / res.meta["file"],
                               tool_versions=versions, source_model_sha256=ctx.model_sha, stage_key=res.key)


def _int8(ctx, opts: Options) -> Artifact:
    from pipeline.stages.tflite import convert_int8

    sm = ctx.savedmodel()
    calib = ctx.calibration
    versions = tool_versions("tensorflow")
    params = {"savedmodel": sm.key, "calibration": calib.sha256, "int8_io": opts.int8_io, **versions}
    res = ctx.stage("tflite-int8", params,
                    lambda out: {"file": convert_int8(sm.path / "saved_model", out, calib.images, opts.int8_io).name})
    return Artifact.from_files(f"{NAME}/int8", NAME, "tflite", "int8", res.path / res.meta["file"],
                               tool_versions=versions, calibration_sha256=calib.sha256,
                               source_model_sha256=ctx.model_sha, stage_key=res.key)


def make_runner(artifact: Artifact, threads: int):
    from targets.runtimes import TFLiteRunner

    return TFLiteRunner(artifact.path, threads)
