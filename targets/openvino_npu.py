"""openvino-npu: Intel NPUs (Core Ultra) and, as an option, the MYRIAD VPU (Neural Compute Stick 2).

NPU: the IR is static (batch 1, [1, H, W, C], as every edgepipe IR) and quantized by NNCF with the
NPU's hardware config (`target_device=NPU`) and the target's `recipe` (default: the symmetric
`performance` preset; equalizing recipes quantize the equalized model; `max_accuracy_drop` runs
NNCF's accuracy control with the NPU's hardware config). When OpenVINO
lists an "NPU" device it is compiled for it and the blob is shipped; otherwise the row says so, and
accuracy is measured on the CPU plugin for the same INT8 IR.

MYRIAD: the plugin was removed in OpenVINO 2023.0, so this host's OpenVINO cannot compile for it.
The option produces what the stick ran, an FP16 IR, and states the runtime it needs (2022.3 LTS);
its ops are checked against the opsets that release reads (up to opset10).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from edgepipe.core.artifacts import Artifact
from edgepipe.core.errors import ConfigError
from edgepipe.targets.base import Job, QuantizedOptions

NAME = "openvino-npu"
QUANTIZER = "nncf"
MYRIAD_RUNTIME = "OpenVINO 2022.3 LTS"
MYRIAD_MAX_OPSET = 10  # 2022.3 reads IR v11 with opset1..opset10 (opset11 came with 2023.0)


class Options(QuantizedOptions):
    precisions: list[Literal["int8"]] = Field(default_factory=lambda: ["int8"], min_length=1)
    hint: Literal["LATENCY", "THROUGHPUT"] = "LATENCY"
    myriad: bool = False  # also produce the FP16 IR for a Neural Compute Stick 2 (MYRIAD, 2022.3 LTS)


def jobs(ctx, opts: Options) -> list[Job]:
    from edgepipe.core.versions import int8_saturates

    # without an NPU the INT8 IR is scored on the CPU plugin; a CPU whose int8 kernels saturate (x86 without
    # VNNI) would score it worse than the NPU, which accumulates exactly: there the quantization is emulated
    emulate = int8_saturates()
    # (on one stream: see OpenVINORunner; part of the scores' cache key, so scores from several streams are not reused)
    params = {"device": "CPU", **({"int8": "emulated", "streams": 1} if emulate else {})}
    out = [Job(f"{NAME}/int8", NAME, "int8", lambda: _npu_int8(ctx, opts),
               lambda art, threads: make_runner(art, threads, **params), params,
               latency_skip=lambda art: _npu_latency_skip(art, emulate))]
    if opts.myriad:
        out.append(Job(f"{NAME}/myriad-fp16", NAME, "fp16", lambda: _myriad_fp16(ctx), _cpu_runner,
                       {"device": "CPU"}, latency_skip=lambda art: f"skipped: MYRIAD needs the {MYRIAD_RUNTIME} "
                                                                    "runtime and a Neural Compute Stick 2"))
    return out


def npu_devices() -> list[str]:
    import openvino as ov

    return [d for d in ov.Core().available_devices if d.startswith("NPU")]


def _npu_int8(ctx, opts: Options) -> Artifact:
    from edgepipe.quantize.recipe_stages import budget_record
    from edgepipe.targets.openvino_compile import compile_and_export, config_for
    from edgepipe.targets.openvino_cpu import nncf_int8_stage

    recipe = ctx.cfg.resolve_recipe(opts.recipe, NAME)
    res, versions, calib = nncf_int8_stage(ctx, recipe, target_device="NPU")
    preset = recipe.nncf_preset or "performance"
    xml = res.path / res.meta["file"]
    common = dict(tool_versions=versions, calibration_sha256=calib.sha256, **ctx.source_model(),
                  recipe={"name": opts.recipe, **recipe.cache_params(), **budget_record(res)})
    # NNCF's NPU hardware config is not the CPU's (nncf/common/hardware/setups/npu.py: ADJUST_PADDING on
    # convolutions, other quantizer spaces), so openvino-cpu's INT8 IR is never reused here; the record says so
    quantization = {"preset": preset, "target_device": "NPU", "reuses_cpu_ir": False,
                    "why_not": "NNCF quantizes for the NPU's hardware config (target_device=NPU), which differs "
                               "from the CPU's; openvino-cpu/int8 is quantized for target_device=CPU"}
    if res.meta.get("statistics_from"):  # one calibration pass with openvino-cpu's stage (nncf_shared.py)
        quantization["statistics_from"] = res.meta["statistics_from"]
    devices = npu_devices()
    if not devices:
        from openvino import Core

        return Artifact.from_files(
            f"{NAME}/int8", NAME, "openvino-ir", "int8", xml, stage_key=res.key, **common,
            metadata={"npu": {"compiled": False, "devices": Core().available_devices,
                              "quantization": quantization}},
            incomplete=(f"not compiled: no NPU device (OpenVINO devices here: {', '.join(Core().available_devices)})",))
    config = config_for(1, opts.hint, None, None)
    config.pop("INFERENCE_NUM_THREADS")
    comp = ctx.stage("ov-npu-blob", {"ir": res.key, "config": config, "devices": devices, **versions},
                     lambda out: compile_and_export(xml, out, "NPU", config, xml.stem))
    return Artifact.from_files(f"{NAME}/int8", NAME, "openvino-ir", "int8", comp.path / xml.name,
                               extra_files=(f"{xml.stem}.blob", f"{xml.stem}.compile.json"), stage_key=comp.key,
                               metadata={"npu": {"compiled": True, "record": comp.meta, "quantization": quantization}},
                               **common)


def _npu_latency_skip(artifact: Artifact, emulated: bool = False) -> str | None:
    how = (" (its FakeQuantize ops computed in f32: this CPU's int8 kernels saturate without VNNI, an NPU's do "
           "not)") if emulated else ""
    if artifact.metadata.get("npu", {}).get("compiled"):
        return f"skipped: the NPU runner is not implemented yet (the blob is built; accuracy measured on the CPU{how})"
    return f"skipped: no NPU; accuracy measured on the CPU plugin for the same INT8 IR{how}"


def _myriad_fp16(ctx) -> Artifact:
    from edgepipe.stages.openvino import compress_fp16
    from edgepipe.targets.openvino_compile import opset_versions
    from edgepipe.targets.openvino_cpu import ir_stage

    ir, versions = ir_stage(ctx)
    res = ctx.stage("ov-ir-fp16-myriad", {"ir": ir.key, **versions},
                    lambda out: {"file": compress_fp16(ir.path / ir.meta["file"], out).name})
    xml = res.path / res.meta["file"]
    opsets = opset_versions(xml)
    too_new = sorted(f"{op} (opset{v})" for op, v in opsets.items() if v > MYRIAD_MAX_OPSET)
    incomplete = [f"not compiled: the MYRIAD plugin was removed in OpenVINO 2023.0 (this host: "
                  f"{versions.get('openvino')}); run this FP16 IR with the {MYRIAD_RUNTIME} runtime "
                  "on the stick's host"]
    if too_new:
        incomplete.append(f"ops newer than opset{MYRIAD_MAX_OPSET} ({MYRIAD_RUNTIME} cannot read them): {too_new}")
    return Artifact.from_files(
        f"{NAME}/myriad-fp16", NAME, "openvino-ir", "fp16", xml, tool_versions=versions,
        **ctx.source_model(), stage_key=res.key, incomplete=tuple(incomplete),
        metadata={"myriad": {"needs_runtime": MYRIAD_RUNTIME, "max_opset": max(opsets.values(), default=0),
                             "opsets": opsets, "weights": "fp16 (compress_to_fp16)",
                             "accuracy_on": "CPU plugin, f32 compute on the FP16 weights"}})


def make_runner(artifact: Artifact, threads: int, device: str = "CPU", int8: str = "kernels",
                streams: int | None = None):
    """Built from the job's plain runner_params (the probe does so in a child process). Only the CPU
    stand-in exists: no NPU runner is implemented (an NPU row's latency is skipped with its reason).
    `int8`: "kernels" (the CPU plugin's int8 kernels) or "emulated" (FakeQuantize in f32, on one stream)."""
    if device != "CPU":
        raise ConfigError(f"openvino-npu runner: expected device 'CPU' (the stand-in). Received: {device!r}")
    if int8 not in ("kernels", "emulated"):
        raise ConfigError(f"openvino-npu runner: expected int8 'kernels' or 'emulated'. Received: {int8!r}")
    if streams not in ((None, 1) if int8 == "emulated" else (None,)):
        raise ConfigError(f"openvino-npu runner: expected streams 1 with int8 'emulated' and none with 'kernels'. "
                          f"Received: streams {streams!r} with int8 {int8!r}")
    return _cpu_runner(artifact, threads, int8 == "emulated")


def _cpu_runner(artifact: Artifact, threads: int, emulate_int8: bool = False):
    """Accuracy on this host: the same IR on the CPU plugin (f32, so the IR's own quantization decides); with
    `emulate_int8` its FakeQuantize ops are computed in f32 instead of on the host's int8 kernels."""
    from edgepipe.formats.runners import OpenVINORunner

    runner = OpenVINORunner(Path(artifact.path), threads, "LATENCY", "f32", emulate_int8=emulate_int8)
    runner.info["device"] = "CPU (stand-in)"
    return runner
