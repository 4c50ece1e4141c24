"""`run_pipeline`: the whole run. Check every input (edgepipe.engine.precheck), lock the output, FP32
reference, every target on the executor, the cross-quantizer check, report.json and report.html.

The per-target work is `edgepipe.engine.target.run_target`; `edgepipe.engine.fanout.run_targets` runs it
for every target on the executor (the local executor is the one serial loop).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from edgepipe.core.jsonio import write_json
from edgepipe.core.timing import cpu_seconds
from edgepipe.core.versions import host_facts
from edgepipe.engine.context import RunContext
from edgepipe.engine.fanout import run_targets
from edgepipe.engine.outdir import locked_output, sweep_leftovers, write_guard
from edgepipe.engine.precheck import check_run
from edgepipe.engine.reference import reference
from edgepipe.reports.profile import profile
from edgepipe.reports.rows import ReportRow
from edgepipe.validators import gates as gate_mod
from edgepipe.validators import registry


def apply_run_validators(cfg, rows: list[ReportRow]) -> tuple[list[ReportRow], dict]:
    """Every run validator over all rows: a new row for each row it judged (failed on its gate
    failures; the published artifact.json of a failed one says so too) and its summary by name."""
    summaries = {}
    for v in registry.RUN_VALIDATORS:
        verdict = v.run(cfg.gates, [r.to_json() for r in rows])
        judged = []
        for r in rows:
            res = verdict.rows.get(r.artifact)
            if res is not None:
                r = r.with_verdict(v.name, res.result, res.gate_failures)
                if res.gate_failures and r.dir:
                    record = Path(r.dir) / "artifact.json"
                    data = json.loads(record.read_text())
                    data.update({"status": r.status, "gate_failures": r.reasons, v.name: res.result})
                    write_json(record, data)
            judged.append(r)
        rows = judged
        summaries[v.name] = verdict.summary
    return rows, summaries


def run_pipeline(cfg, model_path: Path, wait: bool = False, executor=None, strict: bool = False) -> dict:
    """`executor`: where the targets run (default: from `cfg.executor`; `local` runs them here).
    `strict`: a target this host cannot finish (`not available here`) makes the run partial (exit 3),
    as a target marked `required: true` always does."""
    t0, cpu0, load0 = time.perf_counter(), cpu_seconds(), os.getloadavg()[0]
    ctx = RunContext(cfg, model_path)  # model and labels checked (reads only)
    check_run(ctx)  # data listed, output folder allowed: before the folder, its lock or a sweep is touched
    with locked_output(Path(cfg.output), wait=wait), write_guard(Path(cfg.output)):
        ctx.cache.sweep_temporaries()
        sweep_leftovers(Path(cfg.output))
        ref = reference(ctx)
        rows, summaries = apply_run_validators(cfg, [ref["row"], *run_targets(ctx, ref["scores"], executor)])
        required = [t.name for t in cfg.targets if t.required]
        # "skipped" (optional check, reason given) is ok; so is "not available here" unless required or strict
        exit_code = gate_mod.run_exit_code([r.to_json() for r in rows], required, strict)
        batches = ctx.batch_infos()
        report = {
            "edgepipe_report": 1,
            "model": {"path": str(model_path), "sha256": ctx.model_sha, "content_sha256": ctx.model_key},
            "labels": ctx.labels,
            "preprocess": ctx.spec.as_dict(),
            "data": {
                "calibration": batches.get("calibration"),
                "validation": batches.get("validation"),
                "splits": cfg.data.splits.model_dump(),  # lets `edgepipe bundle` pick its sample from the test split
                # the calibration images each recipe quantizes with, unless it sets its own (None: all of them)
                "quantization_calibration_size": cfg.quantization.calibration_size,
            },
            "gates": cfg.gates.model_dump(),
            "threads": cfg.threads,
            "environment": host_facts(),
            "stages": [{"stage": e.name, "key": e.key, "cached": e.cached, "seconds": round(e.seconds, 3)}
                       for e in ctx.cache.events],
            "artifacts": [r.to_json() for r in rows],
            **summaries,  # "cross_quantizer"
            "not_available_here": [r.artifact for r in rows if r.not_available_here],
            "strict": strict,
            "exit_code": exit_code,
            "wall_seconds": round(time.perf_counter() - t0, 2),
        }
        # where the time went, by stage kind (wall and CPU seconds): pipeline/reports/profile.py
        report["profile"] = profile(ctx.cache.events, ctx.cache.spans, time.perf_counter() - t0,
                                    cpu_seconds() - cpu0, (load0, os.getloadavg()[0]))
        write_json(Path(cfg.output) / "report.json", report)
        from edgepipe.reports.html import write_html

        write_html(report, Path(cfg.output) / "report.html")
    return report
