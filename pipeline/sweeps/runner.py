"""`edgepipe sweep`: run every cell of a sweep on an executor and merge one leaderboard.

Three phases, each a batch of independent tasks:
1. per model (serial part): load, FP32 reference, SavedModel export;
2. per cell (model x recipe x target): build, validate, gate and publish its artifacts,
   over the sweep's shared stage cache (`<output>/stages`), so cells that share a stage
   (the FP32 IR under two NNCF presets) compute it once;
3. per (artifact, board): the pluggable device benchmark, holding `board:NAME`.
A failed model, cell or benchmark is a row with its reason; the others still run.
Output: `<output>/sweep.json`, `<output>/cells/<model>/<recipe>/<target>/artifacts/...`.
"""

from __future__ import annotations

import time
from pathlib import Path

from edgepipe.core.cache import StageCache
from edgepipe.core.errors import EXIT_GATE_FAILED, EXIT_OK
from edgepipe.core.progress import stderr
from edgepipe.engine.fanout import failed_row, merge_events, prepare_model, target_cell
from edgepipe.engine.outdir import locked_output
from edgepipe.engine.precheck import check_sweep_inputs
from edgepipe.executors import board_resources as boards_mod
from edgepipe.executors.base import Executor, Failure, Task
from edgepipe.executors.factory import make_executor
from edgepipe.reports.rows import ReportRow
from edgepipe.sweeps.config import Sweep
from edgepipe.sweeps.leaderboard import summarize


def run_sweep(sweep: Sweep, executor: Executor | None = None, console=stderr) -> dict:
    from edgepipe.core.jsonio import write_json

    t0 = time.perf_counter()
    spec, out = sweep.spec, sweep.output.resolve()
    check_sweep_inputs(sweep)  # models, labels, data and the output folder: before anything is written
    with locked_output(out):
        StageCache(out / "stages").sweep_temporaries()  # only the driver sweeps: workers may be writing
        own = executor is None
        if own:
            executor = make_executor(spec.executor, resources=boards_mod.resources(spec.boards),
                                     max_retries=spec.max_retries)
        try:
            report = _run(sweep, out, executor, console)
        finally:
            if own:
                executor.close()
        report["wall_seconds"] = round(time.perf_counter() - t0, 2)
        write_json(out / "sweep.json", report)
    return report


def _say(console, label: str, res) -> None:
    from edgepipe.reports.escape import terminal as esc

    status = f"[red]failed[/] ({esc(res.reason)})" if isinstance(res, Failure) else "[green]done[/]"
    console.print(f"  {esc(label)}: {status}", highlight=False)


def _run(sweep: Sweep, out: Path, executor: Executor, console) -> dict:
    cache_root = str(out / "stages")
    events: list = []
    first = {}  # model label -> its first cell (its config carries the model)
    for c in sweep.cells:
        first.setdefault(c.model, c)
    console.print(f"[bold]sweep[/]: {len(first)} model(s), {len(sweep.cells)} cell(s) on executor {executor.name}")

    # 1. per model: the serial part, done once before the cells fan out
    prep_tasks = [Task(prepare_model, ({"config": c.config.model_dump(mode="json"), "model": None,
                                        "cache_root": cache_root},), num_cpus=c.config.threads,
                       label=f"prepare {m}") for m, c in first.items()]
    prep_results = executor.run(prep_tasks, on_result=lambda i, r: _say(console, prep_tasks[i].label, r))
    prepared = dict(zip(first, prep_results, strict=True))
    prep_where = dict(zip(first, _placements(executor, len(prep_tasks)), strict=True))
    references = []
    for m, res in prepared.items():
        if not isinstance(res, Failure):
            merge_events(events, res["events"])
            references.append({**res["ref_row"], "id": f"{m}/reference", "model": m})

    # 2. per cell
    cell_tasks, cell_of = [], []
    rows: list[dict] = []
    cells_out = []
    for c in sweep.cells:
        prep = prepared[c.model]
        if isinstance(prep, Failure):
            rows.append(_tag(failed_row(c.target, Failure(c.id, prep.kind, f"model {c.model}: {prep.reason}",
                                                           prep.attempts)).to_json(), c))
            cells_out.append(_cell_json(c, "error", rows[-1]["reasons"][0]))
            continue
        payload = {"config": c.config.model_dump(mode="json"), "model": prep["model"], "cache_root": cache_root,
                   "ref_scores": prep["ref_scores"], "target": 0}
        cell_tasks.append(Task(target_cell, (payload,), num_cpus=c.config.threads, label=c.id))
        cell_of.append(c)
    results = executor.run(cell_tasks, on_result=lambda i, r: _say(console, cell_tasks[i].label, r))
    for c, res, where in zip(cell_of, results, _placements(executor, len(cell_tasks)), strict=True):
        if isinstance(res, Failure):
            rows.append(_tag(failed_row(c.target, res).to_json(), c))
            cells_out.append(_cell_json(c, "error", res.reason))
            continue
        merge_events(events, res["events"])
        cell_rows = [_tag(r, c) for r in res["rows"]]
        rows += cell_rows
        bad = [r for r in cell_rows if r["status"] != "passed"]
        cells_out.append(_cell_json(c, "passed" if not bad else ("error" if any(r["status"] == "error" for r in bad)
                                                                  else "failed"), None, where))

    # 3. per (artifact, board): device benchmarks, one at a time per board
    if sweep.spec.boards:
        pairs = boards_mod.board_tasks(sweep.spec.board_bench, sweep.spec.boards, rows)
        bench = executor.run([t for *_, t in pairs], on_result=lambda i, r: _say(console, pairs[i][2].label, r))
        rows = boards_mod.attach(rows, bench, pairs, _placements(executor, len(pairs)))

    failed_cells = sum(c["status"] != "passed" for c in cells_out)
    return {
        "edgepipe_sweep": 1,
        "source": sweep.source,
        "output": str(out),
        "executor": executor.name,
        "gates": sweep.cells[0].config.gates.model_dump() if sweep.cells else {},
        "models": {m: ({"error": p.reason} if isinstance(p, Failure) else
                       {"path": p["model"], "sha256": p["ref_row"]["sha256"], **_worker(prep_where[m])})
                   for m, p in prepared.items()},
        "recipes": [r.model_dump() for r in sweep.spec.recipes],
        "boards": [b.model_dump() for b in sweep.spec.boards],
        "cells": cells_out,
        "failed_cells": failed_cells,
        "references": references,
        "rows": rows,
        "targets": summarize(rows),
        "stages": [{"stage": e.name, "key": e.key, "cached": e.cached, "seconds": round(e.seconds, 3)}
                   for e in events],
        "exit_code": EXIT_OK if failed_cells == 0 else EXIT_GATE_FAILED,
    }


def _tag(row: dict, c) -> dict:
    """The row as sweep.json holds it: its id, model, cell, and the sweep recipe's name as `recipe`."""
    return ReportRow.from_json(row).replace(id=f"{c.model}/{c.recipe}/{row['artifact']}", model=c.model,
                                            recipe=c.recipe, cell=c.id).to_json()


def _cell_json(c, status: str, reason: str | None, where: dict | None = None) -> dict:
    return {"id": c.id, "model": c.model, "recipe": c.recipe, "target": c.target,
            "options": c.config.targets[0].options, "output": str(c.config.output), "status": status,
            "reason": reason, **_worker(where)}


def _placements(executor: Executor, n: int) -> list[dict | None]:
    """Where each of the last run's n tasks ran, as far as the executor says (Ray: the node)."""
    where = list(executor.placements)
    return where if len(where) == n else [None] * n


def _worker(where: dict | None) -> dict:
    """`worker`: the Ray node a task ran on, for sweep.json (nothing for the local executors)."""
    return {"worker": where} if where else {}
