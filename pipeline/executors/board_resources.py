"""Boards as resources: each registered board is a custom resource `board:NAME` of capacity 1.

A device benchmark is a Task asking for `{"board:NAME": 1}` (and no CPU: the host only
waits), so the executor queues benchmarks per board and never runs two at once on one
board, while different boards work side by side. The benchmark itself is pluggable:
`board_bench: module:function` in sweep.yaml names a function

    bench(board: dict, artifact: dict) -> dict     # metrics, e.g. {"p50_ms": ..., "p90_ms": ...}

where `board` is the registered entry (name, url, tags) and `artifact` the artifact's row
(its published `dir`, `sha256`, `target`, `precision`). edgepipe's SSH benchmark plugs in
here; any exception becomes that board's error for the artifact.
"""

from __future__ import annotations

import importlib

from edgepipe.core.errors import ConfigError
from edgepipe.executors.base import Failure, Task


def resources(boards) -> dict[str, float]:
    """What a local executor (or a local Ray instance) declares: one unit per board."""
    return {b.resource: 1.0 for b in boards}


def load_bench(spec: str):
    module, _, name = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"board_bench: expected an importable 'module:function'. Received: {spec!r} "
                          f"({type(err).__name__}: {err})") from err
    if not callable(fn):
        raise ConfigError(f"board_bench: expected a function. Received: {spec!r} is a {type(fn).__name__}")
    return fn


def bench_on_board(spec: str, board: dict, artifact: dict) -> dict:
    """The unit of work for one (artifact, board) pair; runs in a worker holding `board:NAME`."""
    metrics = load_bench(spec)(board, artifact)
    if not isinstance(metrics, dict):
        raise TypeError(f"board_bench {spec!r}: expected a dict of metrics. Received: {type(metrics).__name__}")
    return metrics


def board_tasks(spec: str, boards, rows: list[dict]) -> list[tuple[dict, str, Task]]:
    """One task per (built artifact, board that takes its target): (row, board name, task)."""
    out = []
    for row in rows:
        if row.get("status") not in ("passed", "failed") or not row.get("dir"):
            continue  # nothing was built
        for b in boards:
            if b.targets is not None and row["target"] not in b.targets:
                continue
            artifact = {k: row.get(k) for k in ("id", "artifact", "target", "precision", "sha256", "dir", "format")}
            task = Task(bench_on_board, (spec, b.model_dump(mode="json"), artifact), num_cpus=0,
                        resources={b.resource: 1}, label=f"{row.get('id', row['artifact'])}@{b.name}")
            out.append((row, b.name, task))
    return out


def attach(rows: list[dict], results: list, pairs: list[tuple[dict, str, Task]],
           placements: list[dict | None] | None = None) -> list[dict]:
    """`rows` with each board's metrics (or error) under `boards` of its artifact row, and under `worker` where
    the benchmark ran when the executor says so (a Ray node): new rows, the given ones unchanged."""
    boards: dict[int, dict] = {}  # id(row) -> its boards
    for (row, board, _), res, where in zip(pairs, results, placements or [None] * len(pairs), strict=True):
        entry = {"error": res.reason, "attempts": res.attempts} if isinstance(res, Failure) else res
        if where and isinstance(entry, dict):
            entry = {**entry, "worker": where}
        boards.setdefault(id(row), dict(row.get("boards") or {}))[board] = entry
    return [{**row, "boards": boards[id(row)]} if id(row) in boards else row for row in rows]
