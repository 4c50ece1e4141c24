"""Fan a run's independent work out to an executor.

The units of work are module-level functions of plain data (a config as a JSON-able
dict, a model path, the shared stage-cache directory), so a process pool or Ray can run
them. Each worker builds its own RunContext over the SHARED content-addressed cache: a
cached stage is never recomputed, two workers racing on one stage compute it once (the
cache's per-stage lock), and artifacts move through the shared directory.

What is serial, per model: loading the model, the FP32 reference and the SavedModel
export (`prepare_model`). What fans out: each target's conversions, quantization,
validators and publication (`target_cell`). Rows cross the executor as JSON (`ReportRow.to_json`).
"""

from __future__ import annotations

from pathlib import Path

from edgepipe.core.errors import EXIT_BAD_INPUT, InputError
from edgepipe.engine.context import RunContext
from edgepipe.engine.reference import reference
from edgepipe.engine.target import run_target
from edgepipe.executors.base import Executor, Failure, Task
from edgepipe.executors.factory import make_executor
from edgepipe.reports.rows import ReportRow


def _context(payload: dict) -> RunContext:
    from edgepipe.config.schema import parse_config

    cfg = parse_config(payload["config"], source=payload.get("source", "worker config"))
    if payload.get("model"):
        model = Path(payload["model"])
    else:  # resolved in the worker: an example model is built where it is needed
        from edgepipe.examples.models import resolve_model

        model = resolve_model(cfg)
    return RunContext(cfg, model, cache_root=Path(payload["cache_root"]))


def prepare_model(payload: dict) -> dict:
    """The serial part of one model: FP32 reference scores and row, and the SavedModel export."""
    ctx = _context(payload)
    ref = reference(ctx)
    if payload.get("savedmodel", True):
        ctx.savedmodel()
    return {"ref_row": ref["row"].to_json(), "ref_scores": ref["scores"], "model": str(ctx.model_path),
            "events": list(ctx.cache.events), "spans": list(ctx.cache.spans), "data": ctx.batch_infos()}


def target_cell(payload: dict) -> dict:
    """Build, validate, gate and publish every artifact of one target (`payload["target"]`, an index)."""
    ctx = _context(payload)
    entry = ctx.cfg.targets[payload.get("target", 0)]
    rows = [r.to_json() for r in run_target(ctx, entry, payload["ref_scores"])]
    return {"rows": rows, "events": list(ctx.cache.events), "spans": list(ctx.cache.spans), "data": ctx.batch_infos()}


def merge_events(into: list, new: list) -> None:
    """One event per stage: a stage some worker ran wins over the same stage found cached."""
    index = {(e.name, e.key): i for i, e in enumerate(into)}
    for e in new:
        i = index.get((e.name, e.key))
        if i is None:
            index[(e.name, e.key)] = len(into)
            into.append(e)
        elif into[i].cached and not e.cached:
            into[i] = e


def failed_row(target: str, failure: Failure) -> ReportRow:
    """The row of a target (or sweep cell) whose task did not return: its artifacts are unknown."""
    return ReportRow(artifact=f"{target}/*", target=target, precision=None, status="error",
                     reasons=[failure.reason], failure=failure.to_json())


def run_targets(ctx: RunContext, ref_scores, executor: Executor | None = None) -> list[ReportRow]:
    """Every target of `ctx.cfg` on `executor` (default: `ctx.cfg.executor`, created and closed here)."""
    own = executor is None
    executor = make_executor(ctx.cfg.executor) if own else executor
    try:
        if not executor.parallel:
            return [row for entry in ctx.cfg.targets for row in run_target(ctx, entry, ref_scores)]
        return fan_out_targets(ctx, executor, ref_scores)
    finally:
        if own:
            executor.close()


def fan_out_targets(ctx: RunContext, executor: Executor, ref_scores) -> list[ReportRow]:
    cfg = ctx.cfg
    ctx.savedmodel()  # serial and shared by every target: export once, before fanning out
    base = {"config": cfg.model_dump(mode="json"), "model": str(ctx.model_path),
            "cache_root": str(ctx.cache.root), "ref_scores": ref_scores}
    tasks = [Task(target_cell, ({**base, "target": i},), num_cpus=cfg.threads, label=entry.name)
             for i, entry in enumerate(cfg.targets)]
    ctx.console.print(f"[bold]fan-out[/]: {len(tasks)} target(s) on executor {executor.name}")

    def done(i: int, out) -> None:
        from edgepipe.reports.escape import terminal as esc

        status = f"[red]failed[/]: {esc(out.reason)}" if isinstance(out, Failure) else "[green]done[/]"
        ctx.console.print(f"  {esc(tasks[i].label)}: {status}", highlight=False)

    rows: list[ReportRow] = []
    for entry, out in zip(cfg.targets, executor.run(tasks, on_result=done), strict=True):
        if isinstance(out, Failure):
            if out.kind == "input" and out.exit_code == EXIT_BAD_INPUT:
                raise InputError(out.reason.split(": ", 1)[-1])  # bad input aborts the run, as in-process
            rows.append(failed_row(entry.name, out))
            continue
        rows += [ReportRow.from_json(r) for r in out["rows"]]
        merge_events(ctx.cache.events, out["events"])
        ctx.cache.spans.extend(out.get("spans", []))  # loads a worker did, for the run's profile
        ctx.note_worker_batches(out["data"])
    return rows
