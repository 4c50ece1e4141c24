"""coral-edgetpu: Edge-TPU-ready full-integer TFLite, pre-flight, `edgetpu_compiler`, libedgetpu runner.

The INT8 model is tflite-arm's conversion (builtin int8 ops only, static batch 1) with int8 or uint8
I/O; with int8 I/O it is the same cache entry, so it is converted once. Every artifact carries the
pre-flight report (JSON + table). When `edgetpu_compiler` is on PATH it is compiled (`*_edgetpu.tflite`,
log kept and parsed); when not, the artifact is the uncompiled model and the row says
"not compiled: edgetpu_compiler not installed" and, like every target this host cannot finish,
`not available here` with how to install it (pipeline/engine/availability.py, the registry's hint).
Accuracy runs on an Edge TPU when one is attached (libedgetpu delegate), otherwise on the CPU
interpreter for the same int8 model, and latency is then "skipped: no Edge TPU".

`recipe` is a TFLite recipe (8-bit only): the Edge TPU quantizer (pipeline/quantize/quantizers/edgetpu.py).
With `max_accuracy_drop` the Edge TPU cannot keep layers in float (a float op splits the graph onto the
CPU), so the budget is met with full-integer repairs (`quantizers.edgetpu.full_integer_budget`): the
artifact record's `recipe.edgetpu_repair` says which rungs were measured on the accuracy-control set,
what was chosen and why.
"""

from __future__ import annotations

import io
import json
import shutil
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, PositiveInt

from edgepipe.core.artifacts import Artifact
from edgepipe.core.errors import StageError
from edgepipe.engine.outdir import link_or_copy
from edgepipe.targets.base import Job, QuantizedOptions

NAME = "coral-edgetpu"
QUANTIZER = "edgetpu"  # the TFLite converter, 8-bit full-integer only (pipeline/quantize/quantizers/edgetpu.py)
DELEGATE = "libedgetpu.so.1"
SOURCE = "model_int8.tflite"  # the uncompiled Edge-TPU-ready model inside every artifact


class Options(QuantizedOptions):
    precisions: list[Literal["int8"]] = Field(default_factory=lambda: ["int8"], min_length=1)
    io_dtype: Literal["int8", "uint8"] = "int8"  # input/output tensor type of the full-integer model
    num_segments: PositiveInt | Literal["auto"] = 1  # edgetpu_compiler --num_segments; auto: pre-flight's
    compiler_timeout_s: PositiveInt = 600


def jobs(ctx, opts: Options) -> list[Job]:
    device = edgetpu_delegate_error() is None

    def runner(artifact, threads):
        return make_runner(artifact, threads)

    # no Edge TPU: the CPU interpreter with XNNPACK, as tflite-arm's default runner (make_runner below)
    return [Job(f"{NAME}/int8", NAME, "int8", lambda: _build(ctx, opts), runner,
                {"device": "edgetpu" if device else "cpu"}, latency_skip=latency_skip,
                scores_as=None if device else ("tflite-arm", {}))]


def _build(ctx, opts: Options) -> Artifact:
    from edgepipe.quantize.quantizers.edgetpu import int8_stage
    from edgepipe.targets.edgetpu import compiler as etc
    from edgepipe.targets.tflite_arm import runtime_metadata

    recipe = ctx.cfg.resolve_recipe(opts.recipe, NAME)
    src, versions, calib, record = int8_stage(ctx, recipe, opts.io_dtype)  # budget: full-integer repairs
    src_path = src.path / src.meta["file"]
    exe = etc.find_compiler()
    compiler = etc.compiler_version(exe) if exe else None
    params = {"tflite": src.key, "num_segments": opts.num_segments, "compiler": compiler}
    res = ctx.stage("edgetpu-compile", params, lambda out: _compile_stage(src_path, out, opts, exe))
    meta = res.meta
    compiled = meta.get("compiled") or []
    main = res.path / (compiled[0] if compiled else SOURCE)
    extra = (SOURCE, "preflight.json", "preflight.txt", *compiled[1:], *meta.get("logs", []))
    incomplete = () if exe else (etc.NOT_INSTALLED,)  # how to install it: the row's `how_to_finish` (registry)
    return Artifact.from_files(
        f"{NAME}/int8", NAME, "tflite", "int8", main, extra_files=extra,
        tool_versions={**versions, "edgetpu_compiler": compiler}, calibration_sha256=calib.sha256,
        **ctx.source_model(), stage_key=res.key, incomplete=incomplete,
        recipe={"name": opts.recipe, **recipe.cache_params(), **record},
        metadata={"edgetpu": {k: v for k, v in meta.items() if k != "logs"},
                  **runtime_metadata(res.path / SOURCE)},
    )


def _compile_stage(src: Path, out: Path, opts: Options, exe: str | None) -> dict:
    """Pre-flight (always) and compile (when the compiler exists) into one artifact directory."""
    from rich.console import Console

    from edgepipe.targets.edgetpu import compiler as etc
    from edgepipe.targets.edgetpu.preflight import analyze, render_table

    link_or_copy(src, out / SOURCE)
    report = analyze(out / SOURCE)
    (out / "preflight.json").write_text(json.dumps({**report.to_json(), "path": SOURCE}, indent=2))
    console = Console(record=True, width=200, file=io.StringIO())
    console.print(render_table(report))
    (out / "preflight.txt").write_text(console.export_text())
    segments = report.recommended_segments if opts.num_segments == "auto" else opts.num_segments
    meta = {
        "preflight": {"ops": len(report.ops), "all_on_edgetpu": report.all_on_edgetpu,
                      "cpu_from_index": report.cpu_from_index, "param_bytes": report.param_bytes,
                      "fits_in_sram": report.fits_in_sram, "recommended_segments": report.recommended_segments},
        "num_segments": segments,
        "io_dtype": opts.io_dtype,
        "compiled": [],
        "logs": [],
    }
    if exe is None:
        meta["status"] = etc.NOT_INSTALLED
        return meta
    try:
        result = etc.compile_model(out / SOURCE, out, segments, opts.compiler_timeout_s, exe)
    except StageError as err:  # the stage's directory is discarded on failure: keep the log beside the run
        log = out / "edgetpu_compiler.log"
        if not log.is_file():
            raise
        kept = out.parent.parent / "logs" / f"edgetpu_compiler-{out.name.removeprefix('.tmp-')}.log"
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(log, kept)
        raise StageError(str(err).replace(str(log), str(kept))) from err
    (out / "compile.json").write_text(json.dumps(result.to_json(), indent=2))
    meta.update(status="compiled", compiled=list(result.outputs),
                logs=[result.log_file, *result.operation_logs, "compile.json"],
                compiler={"version": result.version, "seconds": round(result.seconds, 2),
                          "on_chip_bytes": result.on_chip_bytes, "off_chip_bytes": result.off_chip_bytes,
                          "ops_on_edgetpu": result.ops_on_edgetpu, "ops_on_cpu": result.ops_on_cpu,
                          "not_mapped": [r for r in result.ops if r["placement"] == "cpu"]})
    return meta


def _load_delegate():
    """libedgetpu's TFLite delegate, from the interpreter module in use (LiteRT or tflite-runtime)."""
    from importlib import import_module

    from edgepipe.formats.runners import tflite_interpreter_class

    cls, _ = tflite_interpreter_class()
    return import_module(cls.__module__).load_delegate(DELEGATE)


@lru_cache(maxsize=1)
def edgetpu_delegate_error() -> str | None:
    """None when the libedgetpu delegate loads (an Edge TPU is attached), else why not."""
    from edgepipe.targets import host

    if not host.has_library("edgetpu"):
        return f"{DELEGATE} not installed (Coral runtime: apt-get install libedgetpu1-std)"
    if not host.EDGETPU.present():
        return f"no device found: {host.EDGETPU.name}"
    try:
        _load_delegate()
        return None
    except Exception as err:  # ValueError/OSError/RuntimeError when the library or the device is missing
        return f"{type(err).__name__}: {err}".strip()


def latency_skip(artifact: Artifact) -> str | None:
    info = artifact.metadata.get("edgetpu", {})
    if not info.get("compiled"):
        return "skipped: no Edge TPU model (not compiled); accuracy measured on the CPU interpreter"
    err = edgetpu_delegate_error()
    if err is not None:
        return f"skipped: no Edge TPU ({DELEGATE} delegate: {err}); accuracy measured on the CPU interpreter"
    if len(info["compiled"]) > 1:
        return (f"skipped: {len(info['compiled'])} segments need as many Edge TPUs and a pipelined runner "
                "(not implemented); accuracy measured on the CPU interpreter")
    return None


def make_runner(artifact: Artifact, threads: int, device: str = "edgetpu"):
    """The compiled model on the Edge TPU (libedgetpu delegate) when possible, else the same int8
    model on the CPU interpreter (an Edge TPU model's custom op cannot run without the delegate).
    `device="cpu"` (the job's runner_params on a host without an Edge TPU) always takes the CPU."""
    from edgepipe.formats.runners import TFLiteRunner

    compiled = artifact.metadata.get("edgetpu", {}).get("compiled") or []
    if device == "edgetpu" and len(compiled) == 1 and edgetpu_delegate_error() is None:
        runner = TFLiteRunner(artifact.path.parent / compiled[0], threads, delegates=[_load_delegate()])
        runner.info["device"] = "edgetpu"
        return runner
    runner = TFLiteRunner(artifact.path.parent / SOURCE, threads)
    runner.info["device"] = "cpu (no Edge TPU)"
    return runner
