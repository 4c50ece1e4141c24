"""Orchestration: build every target's artifacts, validate each, apply gates, report.

One failing artifact becomes a row with its reason; the others still run.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from pathlib import Path

import numpy as np

import targets
from pipeline.artifacts import Artifact
from pipeline.context import RunContext
from pipeline.errors import EXIT_GATE_FAILED, EXIT_OK, ConfigError, EdgepipeError, InputError
from pipeline.outdir import link_or_copy, locked_output, publish_dir
from pipeline.progress import bar
from pipeline.validators import accuracy as acc_mod
from pipeline.validators import cross_quantizer
from pipeline.validators import gates as gate_mod
from pipeline.validators import latency as lat_mod
from pipeline.versions import cpu_model, host_facts, tool_versions

RUNTIME_TOOLS = {"tflite": ("ai-edge-litert",), "openvino-ir": ("openvino",), "onnx": ("onnxruntime",),
                 "keras": ("tensorflow", "keras")}


def _scores_stage(ctx: RunContext, name: str, key: dict, runner_factory) -> tuple[np.ndarray, dict]:
    valid = ctx.validation

    def fn(out: Path) -> dict:
        runner = runner_factory()
        with bar(f"{name}: {len(valid)} images", len(valid), ctx.console) as advance:
            scores = acc_mod.predict_all(runner, valid.images, advance)
        np.save(out / "scores.npy", scores)
        return {"n": len(scores)}

    res = ctx.stage(name, {**key, "data": valid.sha256}, fn)
    return np.load(res.path / "scores.npy"), res.meta


def _latency_stage(ctx: RunContext, name: str, key: dict, runner_factory) -> dict:
    lat = ctx.cfg.latency
    valid = ctx.validation
    params = {**key, "threads": ctx.cfg.threads, "warmup": lat.warmup, "runs": lat.runs,
              "cpu": cpu_model(), "data": valid.sha256}

    def fn(out: Path) -> dict:
        with bar(f"{name}: {lat.runs} timed runs", lat.runs, ctx.console) as advance:
            return lat_mod.measure(runner_factory, valid.images, lat.warmup, lat.runs, advance)

    return ctx.stage(name, params, fn).meta


def _reference(ctx: RunContext) -> dict:
    key = {"model": ctx.model_sha, **tool_versions("tensorflow", "keras")}
    scores, _ = _scores_stage(ctx, "accuracy-reference", key, ctx.reference_runner)
    metrics = acc_mod.accuracy_metrics(scores, ctx.validation.labels, None)
    latency = _latency_stage(ctx, "latency-reference", key, ctx.reference_runner)
    size = sum(p.stat().st_size for p in ctx.model_path.rglob("*") if p.is_file()) if ctx.is_savedmodel \
        else ctx.model_path.stat().st_size
    name = "savedmodel/fp32 (reference)" if ctx.is_savedmodel else "keras/fp32 (reference)"
    return {"scores": scores, "row": {
        "artifact": name, "target": "reference", "precision": "fp32", "status": "reference",
        "size_mb": size / 1e6, "accuracy": metrics, "latency": latency,
        "sha256": ctx.model_sha, "reasons": [],
    }}


def _publish(ctx: RunContext, art: Artifact, record_extra: dict) -> Path:
    final = Path(ctx.cfg.output) / "artifacts" / art.name.replace("/", "-")
    tmp = final.with_name(f".tmp-{final.name}-{os.getpid()}")
    tmp.mkdir(parents=True)
    for f in art.files:
        link_or_copy(art.path.parent / f, tmp / f)
    (tmp / "labels.txt").write_text("\n".join(ctx.labels) + "\n", encoding="utf-8")
    (tmp / "preprocess.json").write_text(json.dumps(ctx.spec.as_dict(), indent=2))
    published = Artifact.from_json({**art.to_json(), "path": str(final / art.path.name)})
    published.write(tmp, record_extra)
    publish_dir(tmp, final)
    return final


def _artifact_row(ctx: RunContext, job, ref_scores: np.ndarray) -> dict:
    row = {"artifact": job.name, "target": job.target, "precision": job.precision, "reasons": []}
    try:
        art: Artifact = job.build()
        fmt_tools = tool_versions(*RUNTIME_TOOLS.get(art.format, ()))
        key = {"artifact": art.sha256, "runner": job.runner_params, **fmt_tools}
        runner = lambda: job.runner(art, ctx.cfg.threads)  # noqa: E731
        scores, _ = _scores_stage(ctx, f"accuracy-{art.name.replace('/', '-')}", key, runner)
        accuracy = acc_mod.accuracy_metrics(scores, ctx.validation.labels, ref_scores)
        latency = _latency_stage(ctx, f"latency-{art.name.replace('/', '-')}", key, runner)
        failed = gate_mod.evaluate(ctx.cfg.gates, accuracy, latency)
        row.update(status="failed" if failed else "passed", reasons=failed, accuracy=accuracy, latency=latency,
                   size_mb=art.size_bytes / 1e6, sha256=art.sha256, format=art.format,
                   calibration_sha256=art.calibration_sha256, recipe=art.recipe)
        extra = _per_layer(ctx, job, art)
        row.update(extra)
        row["dir"] = str(_publish(ctx, art, {"metrics": {"accuracy": accuracy, "latency": latency},
                                             "status": row["status"], "gate_failures": failed, **extra}))
    except (InputError, ConfigError):
        raise  # bad input aborts the run (exit 2): nothing downstream can be trusted
    except EdgepipeError as err:
        row.update(status="error", reasons=[str(err)])
    except Exception as err:  # a toolchain failure for one artifact: a row, not an abort
        row.update(status="error", reasons=[f"{type(err).__name__}: {err}"],
                   traceback=traceback.format_exc(limit=8))
    return row


def _per_layer(ctx: RunContext, job, art: Artifact) -> dict:
    """`per_layer` rows (worst first) for INT8 artifacts; a diagnosis failure is recorded, not fatal."""
    if job.diagnose is None or ctx.cfg.diagnostics.per_layer_images == 0:
        return {}
    try:
        return {"per_layer": job.diagnose(art)}
    except (InputError, ConfigError):
        raise
    except Exception as err:  # diagnostics must never cost the artifact its row
        return {"per_layer_error": f"{type(err).__name__}: {err}"}


def _apply_cross_quantizer(cfg, rows: list[dict]) -> dict:
    """Fail INT8 artifacts far below the others; their published artifact.json says so too."""
    summary = cross_quantizer.check(rows, cfg.gates.cross_quantizer_max_gap)
    for r in rows:
        if r["artifact"] in summary["flagged"] and r.get("dir"):
            record = Path(r["dir"]) / "artifact.json"
            data = json.loads(record.read_text())
            data.update(status=r["status"], gate_failures=r["reasons"], cross_quantizer=r["cross_quantizer"])
            _write_json(record, data)
    return summary


def run_pipeline(cfg, model_path: Path) -> dict:
    t0 = time.perf_counter()
    with locked_output(Path(cfg.output)):
        ctx = RunContext(cfg, model_path)
        ctx.cache.sweep_temporaries()
        ref = _reference(ctx)
        rows = [ref["row"]]
        for entry in cfg.targets:
            mod = targets.load_module(entry.name)
            for job in mod.jobs(ctx, entry.typed_options()):
                ctx.console.print(f"[bold]{job.name}[/]")
                rows.append(_artifact_row(ctx, job, ref["scores"]))
        cross = _apply_cross_quantizer(cfg, rows)
        exit_code = EXIT_OK if all(r["status"] in ("passed", "reference") for r in rows) else EXIT_GATE_FAILED
        report = {
            "edgepipe_report": 1,
            "model": {"path": str(model_path), "sha256": ctx.model_sha},
            "labels": ctx.labels,
            "preprocess": ctx.spec.as_dict(),
            "data": {
                "calibration": _batch_info(ctx, "calibration"),
                "validation": _batch_info(ctx, "validation"),
            },
            "gates": cfg.gates.model_dump(),
            "threads": cfg.threads,
            "environment": host_facts(),
            "stages": [{"stage": e.name, "key": e.key, "cached": e.cached, "seconds": round(e.seconds, 3)}
                       for e in ctx.cache.events],
            "artifacts": rows,
            "cross_quantizer": cross,
            "exit_code": exit_code,
            "wall_seconds": round(time.perf_counter() - t0, 2),
        }
        _write_json(Path(cfg.output) / "report.json", report)
    return report


def _batch_info(ctx: RunContext, which: str) -> dict | None:
    batch = ctx.__dict__.get(which)  # only if it was materialised
    if batch is None:
        return None
    return {"source": batch.source, "split": batch.split, "count": len(batch), "sha256": batch.sha256}


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)

