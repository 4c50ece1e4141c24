"""Orchestration: build every target's artifacts, validate each, apply gates, report.

One failing artifact becomes a row with its reason; the others still run.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import traceback
from pathlib import Path

import numpy as np

import targets
from calibration.checks import check_reference_accuracy
from pipeline.core.artifacts import Artifact
from pipeline.run.context import RunContext
from pipeline.core.errors import ConfigError, DeviceUnavailableError, EdgepipeError, InputError
from pipeline.core.labels import check_outputs
from pipeline.reports.model_card import write_model_card
from pipeline.run.outdir import link_or_copy, locked_output, publish_dir, sweep_leftovers, write_failure, write_guard
from pipeline.run.probe import probed_stage
from pipeline.core.progress import bar
from pipeline.validators import accuracy as acc_mod
from pipeline.validators import cross_quantizer
from pipeline.validators import gates as gate_mod
from pipeline.validators import parity as parity_mod
from pipeline.core.versions import host_facts, tool_versions

RUNTIME_TOOLS = {"tflite": ("ai-edge-litert",), "openvino-ir": ("openvino",), "keras": ("tensorflow", "keras"),
                 "onnx": ("onnxruntime",)}


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


def _latency_stage(ctx: RunContext, name: str, key: dict, runner_factory, art: Artifact | None = None,
                   runner_params: dict | None = None) -> dict:
    from pipeline.validators.latency_stage import latency_stage

    return latency_stage(ctx, name, key, runner_factory, art, runner_params)


def _reference(ctx: RunContext) -> dict:
    key = {"model": ctx.model_sha, **tool_versions("tensorflow", "keras")}
    scores, _ = _scores_stage(ctx, "accuracy-reference", key, ctx.reference_runner)
    check_outputs(scores.shape[1], ctx.labels, "FP32 reference model")
    check_reference_accuracy(scores, ctx.validation.labels, ctx.spec.mode, "FP32 reference on the validation data")
    metrics = acc_mod.accuracy_metrics(scores, ctx.validation.labels, None, ctx.labels)
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
    try:
        for f in art.files:
            link_or_copy(art.path.parent / f, tmp / f)
        (tmp / "labels.txt").write_text("\n".join(ctx.labels) + "\n", encoding="utf-8")
        (tmp / "preprocess.json").write_text(json.dumps(ctx.spec.as_dict(), indent=2))
        published = Artifact.from_json({**art.to_json(), "path": str(final / art.path.name)})
        published.write(tmp, record_extra)
        write_model_card(tmp / "README.md", ctx, published, record_extra)
        publish_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # never leave a half-written artifact directory
        raise
    return final


def _artifact_row(ctx: RunContext, job, ref_scores: np.ndarray) -> dict:
    row = {"artifact": job.name, "target": job.target, "precision": job.precision, "reasons": []}
    try:
        art: Artifact = job.build()
        row.update(size_mb=art.size_bytes / 1e6, sha256=art.sha256, format=art.format)
        fmt_tools = tool_versions(*RUNTIME_TOOLS.get(art.format, ()))
        key = {"artifact": art.sha256, "runner": job.runner_params, **fmt_tools}
        probed_stage(ctx, art, job, key)  # structural check + load/first inference in a child process
        runner = lambda: job.runner(art, ctx.cfg.threads)  # noqa: E731
        scores, _ = _scores_stage(ctx, f"accuracy-{art.name.replace('/', '-')}", key, runner)
        check_outputs(scores.shape[1], ctx.labels, f"{art.name} artifact")
        accuracy = acc_mod.accuracy_metrics(scores, ctx.validation.labels, ref_scores, ctx.labels)
        parity = None
        if art.precision in FLOAT_PRECISIONS:
            g = ctx.cfg.gates
            parity = parity_mod.output_parity(scores, ref_scores, g.parity_min_cosine or parity_mod.MIN_COSINE,
                                              g.parity_max_abs)
        skip = job.latency_skip(art) if job.latency_skip else None  # e.g. no Edge TPU on this host
        latency = {"skipped": skip} if skip else \
            _latency_stage(ctx, f"latency-{art.name.replace('/', '-')}", key, runner, art, job.runner_params)
        failed = gate_mod.evaluate(ctx.cfg.gates, accuracy, None if skip else latency, parity)
        partial = list(art.incomplete) + ([skip] if skip else [])  # what this host could not do, never a pass
        status = "failed" if failed else ("partial" if partial else "passed")
        row.update(status=status, reasons=failed + partial, accuracy=accuracy, latency=latency,
                   calibration_sha256=art.calibration_sha256, recipe=art.recipe)
        if parity is not None:
            row["parity"] = parity
        if art.metadata:
            row["target_info"] = art.metadata
        extra = _per_layer(ctx, job, art)
        row.update(extra)
        metrics = {"accuracy": accuracy, "latency": latency, **({"parity": parity} if parity else {})}
        row["dir"] = str(_publish(ctx, art, {"metrics": metrics, "status": row["status"], "gate_failures": failed,
                                             "environment": _env_brief(), **extra}))
    except (InputError, ConfigError):
        raise  # bad input aborts the run (exit 2): nothing downstream can be trusted
    except DeviceUnavailableError as err:  # built, but not validated where it must run: partial (exit 3)
        row.update(status="partial", reasons=[str(err)])
    except Exception as err:
        if (full := write_failure(err, Path(ctx.cfg.output))) is not None:
            raise full from err  # disk full / read-only: abort; earlier outputs stay as they were
        if isinstance(err, EdgepipeError):
            row.update(status="error", reasons=[str(err)])
            return row
        # a toolchain failure for one artifact: a row, not an abort
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




FLOAT_PRECISIONS = ("fp32", "fp16", "bf16")


def _env_brief() -> dict:
    h = host_facts()
    return {"cpu": h["cpu"], "isa_flags": h["isa_flags"], "cores": h["cores"]}


def run_target(ctx: RunContext, entry, ref_scores: np.ndarray) -> list[dict]:
    """One target's artifacts: build, validate, gate, publish, then the target's extra check rows
    (e.g. arm64 emulation). The unit an executor fans out."""
    rows = []
    mod = targets.load_module(entry.name)
    for job in mod.jobs(ctx, entry.typed_options()):
        ctx.console.print(f"[bold]{job.name}[/]")
        rows.append(_artifact_row(ctx, job, ref_scores))
    for check in getattr(mod, "checks", lambda *_: [])(ctx, entry.typed_options()):
        rows.append(check(rows))
    return rows


def run_pipeline(cfg, model_path: Path, wait: bool = False, executor=None) -> dict:
    """`executor`: where the targets run (default: from `cfg.executor`; `local` runs them here)."""
    t0 = time.perf_counter()
    with locked_output(Path(cfg.output), wait=wait), write_guard(Path(cfg.output)):
        ctx = RunContext(cfg, model_path)
        ctx.cache.sweep_temporaries()
        sweep_leftovers(Path(cfg.output))
        ref = _reference(ctx)
        rows = [ref["row"]]
        if executor is not None or cfg.executor != "local":
            from pipeline.run.fanout import run_targets

            rows += run_targets(ctx, ref["scores"], executor)
        else:
            for entry in cfg.targets:
                rows += run_target(ctx, entry, ref["scores"])
        cross = _apply_cross_quantizer(cfg, rows)
        exit_code = gate_mod.exit_code(r["status"] for r in rows)  # "skipped" (optional check, reason given) is ok
        report = {
            "edgepipe_report": 1,
            "model": {"path": str(model_path), "sha256": ctx.model_sha},
            "labels": ctx.labels,
            "preprocess": ctx.spec.as_dict(),
            "data": {
                "calibration": _batch_info(ctx, "calibration"),
                "validation": _batch_info(ctx, "validation"),
                "splits": cfg.data.splits.model_dump(),  # lets `edgepipe bundle` pick its sample from the test split
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
        from pipeline.reports.html import write_html

        write_html(report, Path(cfg.output) / "report.html")
    return report


def _batch_info(ctx: RunContext, which: str) -> dict | None:
    batch = ctx.__dict__.get(which)  # only if it was materialised
    if batch is None:
        return getattr(ctx, "worker_batches", {}).get(which)  # materialised by executor workers
    return {"source": batch.source, "split": batch.split, "count": len(batch), "sha256": batch.sha256}


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(obj, indent=2, default=str))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

