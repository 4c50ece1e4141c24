"""onnx-cpu: ONNX FP32 (tf2onnx from the SavedModel) and QDQ INT8 (onnxruntime quantize_static).

The third quantizer (pipeline/quantize/quantizers/onnxruntime.py): the same calibration images as TFLite
and NNCF, fed through the ONNX Runtime CalibrationDataReader adapter (calibration/adapters.py).
"""

from __future__ import annotations

from pydantic import Field

from edgepipe.core.artifacts import Artifact
from edgepipe.core.versions import tool_versions
from edgepipe.targets.base import Job, QuantizedOptions

NAME = "onnx-cpu"
QUANTIZER = "onnxruntime"
OPSET = 17


class Options(QuantizedOptions):
    opset: int = Field(OPSET, ge=13, le=21, description="ONNX opset of the tf2onnx conversion (QDQ needs >= 13)")


def jobs(ctx, opts: Options) -> list[Job]:
    builders = {"fp32": lambda: _fp32(ctx, opts), "int8": lambda: _int8(ctx, opts)}

    def diagnose(artifact):
        from edgepipe.diagnostics.layer_errors import layer_error_stage
        from edgepipe.quantize.recipe_stages import diagnosis_savedmodel

        return layer_error_stage(ctx, "onnx", _fp32(ctx, opts, diagnosis_savedmodel(ctx, NAME)), artifact)

    from edgepipe.formats.onnx import exact_int8_key

    params = {"int8": exact_int8_key()}  # the INT8 model's session config on this CPU, a part of its stage keys
    return [Job(f"{NAME}/{p}", NAME, p, builders[p], make_runner, params.get(p, {}),
                diagnose=diagnose if p == "int8" else None)
            for p in opts.precisions]


def _onnx_stage(ctx, opts: Options, sm=None):
    from edgepipe.stages.onnx import convert_onnx

    sm = sm or ctx.savedmodel()
    versions = tool_versions("tensorflow", "tf2onnx", "onnx")
    res = ctx.stage("onnx-fp32", {"savedmodel": sm.key, "opset": opts.opset, **versions},
                    lambda out: {"file": convert_onnx(sm.path / "saved_model", out, opts.opset).name})
    return res, versions


def _fp32(ctx, opts: Options, sm=None) -> Artifact:
    res, versions = _onnx_stage(ctx, opts, sm)
    return Artifact.from_files(f"{NAME}/fp32", NAME, "onnx", "fp32", res.path / res.meta["file"],
                               tool_versions=versions, **ctx.source_model(), stage_key=res.key)


def _int8(ctx, opts: Options) -> Artifact:
    from edgepipe.quantize.quantizers.onnxruntime import int8_stage
    from edgepipe.quantize.recipe_stages import budget_record, source_savedmodel

    recipe = ctx.recipe(NAME)
    calib = ctx.calibration_for(recipe)
    fp32, _ = _onnx_stage(ctx, opts, source_savedmodel(ctx, recipe, calib))  # equalized if the recipe asks
    res, versions = int8_stage(ctx, fp32, recipe, calib)
    return Artifact.from_files(f"{NAME}/int8", NAME, "onnx", "int8", res.path / res.meta["file"],
                               tool_versions=versions, calibration_sha256=calib.sha256,
                               **ctx.source_model(), stage_key=res.key,
                               recipe={"name": opts.recipe, **recipe.cache_params(), **budget_record(res)})


def make_runner(artifact: Artifact, threads: int, session_config: dict[str, str] | None = None):
    """ONNX Runtime with the job's session config (formats/onnx.py `exact_int8_config`: exact int8 products on x86
    CPUs without VNNI); without one, this CPU's."""
    from edgepipe.formats.runners import ONNXRunner

    return ONNXRunner(artifact.path, threads, config=session_config)
