"""openvino-cpu: OpenVINO IR FP32 and NNCF INT8 IR for Intel CPUs.

The INT8 IR is the NNCF quantizer's stage (pipeline/quantize/quantizers/nncf.py) on this target's FP32 IR."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import model_validator

from edgepipe.core.artifacts import Artifact
from edgepipe.core.bounds import Threads
from edgepipe.core.versions import cpu_model, tool_versions
from edgepipe.targets.base import Job, QuantizedOptions

NAME = "openvino-cpu"
QUANTIZER = "nncf"


class Options(QuantizedOptions):
    hint: Literal["LATENCY", "THROUGHPUT"] = "LATENCY"
    # explicit: the CPU plugin defaults to bf16 on CPUs that support it
    inference_precision: Literal["f32", "bf16", "f16"] = "f32"
    blob: bool = True  # also ship the model compiled for this CPU (export_model); the runner imports it
    model_cache: bool = True  # OpenVINO CACHE_DIR (<output>/ov-cache) when the runner compiles an IR
    num_threads: Threads | None = None  # INFERENCE_NUM_THREADS (default: the run's `threads`)
    streams: Threads | None = None  # NUM_STREAMS (default: what the hint picks)

    @model_validator(mode="before")
    @classmethod
    def _preset_moved(cls, data):
        if isinstance(data, dict) and "preset" in data:
            raise ValueError(
                "options.preset: expected the NNCF preset in the quantization recipe (recipe: nncf-mixed, or a "
                f"recipe with nncf_preset). Received: preset={data['preset']!r} as a target option"
            )
        return data


def jobs(ctx, opts: Options) -> list[Job]:
    builders = {"fp32": lambda: _with_blob(ctx, opts, _fp32(ctx)),
                "int8": lambda: _with_blob(ctx, opts, _int8(ctx, opts))}
    cache_dir = Path(ctx.cfg.output) / "ov-cache" if opts.model_cache and not opts.blob else None

    def runner(artifact, threads):
        return make_runner(artifact, threads, opts.hint, opts.inference_precision, opts.streams,
                           opts.num_threads, opts.blob, cache_dir)

    def diagnose(artifact):
        from edgepipe.diagnostics.layer_errors import layer_error_stage
        from edgepipe.quantize.recipe_stages import diagnosis_savedmodel

        return layer_error_stage(ctx, "openvino", _fp32(ctx, diagnosis_savedmodel(ctx, NAME)), artifact)

    params = {"hint": opts.hint, "inference_precision": opts.inference_precision}
    params.update({k: v for k, v in {"blob": opts.blob, "num_threads": opts.num_threads,
                                     "streams": opts.streams}.items() if v})
    return [Job(f"{NAME}/{p}", NAME, p, builders[p], runner, params,
                diagnose=diagnose if p == "int8" else None)
            for p in opts.precisions]


def _with_blob(ctx, opts: Options, ir: Artifact) -> Artifact:
    """The IR plus its blob compiled for this host's CPU (a stage keyed by the CPU and OpenVINO version)."""
    if not opts.blob:
        return ir
    from edgepipe.targets.openvino_compile import compile_and_export, config_for

    config = config_for(opts.num_threads or ctx.cfg.threads, opts.hint, opts.inference_precision, opts.streams)
    stem = ir.path.stem
    params = {"ir": ir.sha256, "config": config, "cpu": cpu_model(), **tool_versions("openvino")}
    res = ctx.stage(f"ov-cpu-blob-{ir.precision}", params,
                    lambda out: compile_and_export(ir.path, out, "CPU", config, stem))
    return Artifact.from_files(ir.name, ir.target, ir.format, ir.precision, res.path / ir.path.name,
                               extra_files=(f"{stem}.blob", f"{stem}.compile.json"),
                               tool_versions=ir.tool_versions, calibration_sha256=ir.calibration_sha256,
                               source_model_sha256=ir.source_model_sha256,
                               source_model_key=ir.source_model_key, stage_key=res.key,
                               recipe=ir.recipe, metadata={"compiled": res.meta})


def ir_stage(ctx, sm=None):
    from edgepipe.stages.openvino import convert_ir

    sm = sm or ctx.savedmodel()
    versions = tool_versions("openvino")
    res = ctx.stage("ov-ir-fp32", {"savedmodel": sm.key, "shape": list(ctx.spec.shape), **versions},
                    lambda out: {"file": convert_ir(sm.path / "saved_model", out, ctx.spec.shape).name})
    return res, versions


def _fp32(ctx, sm=None) -> Artifact:
    res, versions = ir_stage(ctx, sm)
    return Artifact.from_files(f"{NAME}/fp32", NAME, "openvino-ir", "fp32", res.path / res.meta["file"],
                               tool_versions=versions, **ctx.source_model(), stage_key=res.key)


def nncf_int8_stage(ctx, recipe, target_device: str = "ANY"):
    """The NNCF INT8 stage of a recipe (quantized from the equalized IR when the recipe equalizes;
    accuracy control when it has a budget), shared with openvino-npu (`target_device="NPU"`: NNCF's
    NPU hardware config, its own stage). The CPU stage also quantizes the run's openvino-npu IR when
    both come from the same IR and calibration images (`npu_partner`): one statistics pass for both.
    Returns (stage result, tool versions, calibration batch)."""
    from edgepipe.quantize.quantizers.nncf import int8_stage
    from edgepipe.quantize.recipe_stages import source_savedmodel

    calib = ctx.calibration_for(recipe)
    ir, _ = ir_stage(ctx, source_savedmodel(ctx, recipe, calib))  # equalized when the recipe asks for it
    partners = npu_partner(ctx, recipe, calib) if target_device == "ANY" else ()
    res, versions = int8_stage(ctx, ir, recipe, calib, target_device, partners)
    return res, versions, calib


def npu_partner(ctx, recipe, calib) -> tuple:
    """((openvino-npu's recipe, "NPU"),) when this run has an openvino-npu target whose plain NNCF stage
    quantizes the same IR as `recipe` from the same images (same calibration subset, same source model:
    equalization and fine-tuning alike), else (). Never a budget: accuracy control runs its own passes."""
    from edgepipe.quantize.recipe_stages import source_key

    if not any(t.name == "openvino-npu" for t in ctx.cfg.targets):
        return ()
    npu = ctx.recipe("openvino-npu")
    npu_calib = ctx.calibration_for(npu)
    if (npu.has_budget or npu_calib.sha256 != calib.sha256
            or source_key(ctx, npu, npu_calib) != source_key(ctx, recipe, calib)):
        return ()
    return ((npu, "NPU"),)


def _int8(ctx, opts: Options) -> Artifact:
    from edgepipe.quantize.recipe_stages import budget_record

    recipe = ctx.recipe(NAME)
    res, versions, calib = nncf_int8_stage(ctx, recipe)
    return Artifact.from_files(f"{NAME}/int8", NAME, "openvino-ir", "int8", res.path / res.meta["file"],
                               tool_versions=versions, calibration_sha256=calib.sha256,
                               **ctx.source_model(), stage_key=res.key,
                               recipe={"name": opts.recipe, **recipe.cache_params(), **budget_record(res)})


def make_runner(artifact: Artifact, threads: int, hint: str = "LATENCY", inference_precision: str = "f32",
                streams: int | None = None, num_threads: int | None = None, blob: bool = True,
                cache_dir: Path | None = None):
    """Imports the artifact's CPU blob when it has one (same config as compiled), else compiles the IR.
    Plain-data arguments (the job's runner_params), so the probe can build it in a child process."""
    from edgepipe.formats.runners import OpenVINORunner

    has_blob = blob and f"{artifact.path.stem}.blob" in artifact.files
    return OpenVINORunner(artifact.path, num_threads or threads, hint, inference_precision, streams=streams,
                          blob=artifact.path.with_suffix(".blob") if has_blob else None, cache_dir=cache_dir)
