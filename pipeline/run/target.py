"""One target of a run: build each artifact, probe it, validate it, gate it, publish it: one row each.

One failing artifact becomes a row with its reason; the others still run. Bad input (InputError,
ConfigError) aborts the run instead: nothing downstream of it can be trusted.
"""

from __future__ import annotations

import json
import os
import shutil
import traceback
from pathlib import Path

import numpy as np

import targets
from pipeline import formats
from pipeline.core.artifacts import Artifact
from pipeline.core.errors import ConfigError, DeviceUnavailableError, EdgepipeError, InputError
from pipeline.core.labels import check_outputs
from pipeline.core.versions import host_facts, tool_versions
from pipeline.reports.model_card import write_model_card
from pipeline.run.context import RunContext
from pipeline.run.outdir import link_or_copy, publish_dir, write_failure
from pipeline.run.probe import probed_stage
from pipeline.run.reference import latency_stage, scores_stage
from pipeline.validators import accuracy as acc_mod
from pipeline.validators import gates as gate_mod
from pipeline.validators import parity as parity_mod

FLOAT_PRECISIONS = ("fp32", "fp16", "bf16")


def publish(ctx: RunContext, art: Artifact, record_extra: dict) -> Path:
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


def artifact_row(ctx: RunContext, job, ref_scores: np.ndarray) -> dict:
    row = {"artifact": job.name, "target": job.target, "precision": job.precision, "reasons": []}
    try:
        art: Artifact = job.build()
        row.update(size_mb=art.size_bytes / 1e6, sha256=art.sha256, format=art.format)
        fmt_tools = tool_versions(*formats.runtime_packages(art.format))
        key = {"artifact": art.sha256, "runner": job.runner_params, **fmt_tools}
        probed_stage(ctx, art, job, key)  # structural check + load/first inference in a child process
        runner = lambda: job.runner(art, ctx.cfg.threads)  # noqa: E731
        scores, _ = scores_stage(ctx, f"accuracy-{art.name.replace('/', '-')}", key, runner)
        check_outputs(scores.shape[1], ctx.labels, f"{art.name} artifact")
        accuracy = acc_mod.accuracy_metrics(scores, ctx.validation.labels, ref_scores, ctx.labels)
        parity = None
        if art.precision in FLOAT_PRECISIONS:
            g = ctx.cfg.gates
            parity = parity_mod.output_parity(scores, ref_scores, g.parity_min_cosine or parity_mod.MIN_COSINE,
                                              g.parity_max_abs)
        skip = job.latency_skip(art) if job.latency_skip else None  # e.g. no Edge TPU on this host
        latency = {"skipped": skip} if skip else \
            latency_stage(ctx, f"latency-{art.name.replace('/', '-')}", key, runner, art, job.runner_params)
        failed = gate_mod.evaluate(ctx.cfg.gates, accuracy, None if skip else latency, parity)
        partial = list(art.incomplete) + ([skip] if skip else [])  # what this host could not do, never a pass
        status = "failed" if failed else ("partial" if partial else "passed")
        row.update(status=status, reasons=failed + partial, accuracy=accuracy, latency=latency,
                   calibration_sha256=art.calibration_sha256, recipe=art.recipe)
        if parity is not None:
            row["parity"] = parity
        if art.metadata:
            row["target_info"] = art.metadata
        extra = per_layer(ctx, job, art)
        row.update(extra)
        metrics = {"accuracy": accuracy, "latency": latency, **({"parity": parity} if parity else {})}
        row["dir"] = str(publish(ctx, art, {"metrics": metrics, "status": row["status"], "gate_failures": failed,
                                            "environment": env_brief(), **extra}))
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


def per_layer(ctx: RunContext, job, art: Artifact) -> dict:
    """`per_layer` rows (worst first) for INT8 artifacts; a diagnosis failure is recorded, not fatal."""
    if job.diagnose is None or ctx.cfg.diagnostics.per_layer_images == 0:
        return {}
    try:
        return {"per_layer": job.diagnose(art)}
    except (InputError, ConfigError):
        raise
    except Exception as err:  # diagnostics must never cost the artifact its row
        return {"per_layer_error": f"{type(err).__name__}: {err}"}


def env_brief() -> dict:
    h = host_facts()
    return {"cpu": h["cpu"], "isa_flags": h["isa_flags"], "cores": h["cores"]}


def run_target(ctx: RunContext, entry, ref_scores: np.ndarray) -> list[dict]:
    """One target's artifacts: build, validate, gate, publish, then the target's extra check rows
    (e.g. arm64 emulation). The unit an executor fans out."""
    rows = []
    mod = targets.load_module(entry.name)
    for job in mod.jobs(ctx, entry.typed_options()):
        ctx.console.print(f"[bold]{job.name}[/]")
        rows.append(artifact_row(ctx, job, ref_scores))
    for check in getattr(mod, "checks", lambda *_: [])(ctx, entry.typed_options()):
        rows.append(check(rows))
    return rows
