"""Executors: where independent units of work run (the types every executor shares).

A unit of work is a `Task`: a module-level function (picklable by reference) and plain
arguments, with what it needs to run: `num_cpus`, and custom resources such as
`{"board:rpi4-01": 1}`. `Executor.run(tasks)` returns one outcome per task, in order: the
function's return value, or a `Failure` with its reason. Stage code never sees the
executor; it runs inside the function, over a stage cache shared by every worker.

- `LocalExecutor(workers=1)`: in this process, one task after another.
- `LocalExecutor(workers=N, processes=True)`: a pool of N long-lived worker processes
  (spawned, so no TensorFlow state is forked). A task runs when its CPUs and resources fit;
  a board resource has capacity 1, so two tasks never hold one board at once.
- `RayExecutor` (ray_executor.py): the same tasks as Ray tasks.

Failure semantics, the same everywhere: an exception or a dead worker is retried up to
`max_retries` times, then the task becomes a `Failure`. A typed `EdgepipeError` (bad input,
a failed stage) is deterministic and is not retried.
"""

from __future__ import annotations

import os
import re
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from edgepipe.core.errors import ConfigError, EdgepipeError

DEFAULT_RETRIES = 2


@dataclass(frozen=True)
class Task:
    fn: Callable[..., Any]  # a module-level function: workers import it by name
    args: tuple = ()
    num_cpus: float = 1
    resources: Mapping[str, float] = field(default_factory=dict)
    label: str = ""


@dataclass(frozen=True)
class Failure:
    """A task that did not return: `kind` is `error` (an exception), `died` (the worker
    process died) or `input` (a typed EdgepipeError: deterministic, not retried)."""

    label: str
    kind: str
    reason: str
    attempts: int
    exit_code: int | None = None  # for kind `input`: the EdgepipeError's exit code
    traceback: str | None = None

    def to_json(self) -> dict:
        return asdict(self)


OnResult = Callable[[int, Any], None]


class Executor:
    name = "executor"
    max_retries = DEFAULT_RETRIES
    # where each task of the last run() ran ({"node_id", "node_ip", "host", "pid"}; None for a task that did not
    # return); empty when the executor does not say (the local ones: this machine)
    placements: Sequence[dict | None] = ()

    def run(self, tasks: Sequence[Task], on_result: OnResult | None = None) -> list[Any]:
        raise NotImplementedError

    def map(self, fn, items, *, num_cpus: float = 1, resources: Mapping[str, float] | None = None,
            labels: Sequence[str] | None = None) -> list[Any]:
        labels = list(labels) if labels is not None else [f"{fn.__name__}[{i}]" for i in range(len(items))]
        return self.run([Task(fn, (item,), num_cpus, dict(resources or {}), lab)
                         for item, lab in zip(items, labels, strict=True)])

    @property
    def parallel(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def invoke(fn, args: tuple, label: str = "") -> Any:
    """Run one attempt. A typed EdgepipeError becomes a final Failure; other exceptions propagate (retried)."""
    try:
        return fn(*args)
    except EdgepipeError as err:
        return Failure(label, "input", f"{type(err).__name__}: {err}", 1, err.exit_code,
                       traceback.format_exc(limit=8))


def error_failure(label: str, err: BaseException, attempts: int, tb: str | None) -> Failure:
    return Failure(label, "error", f"{type(err).__name__}: {err}", attempts, None, tb)


# ---- choosing an executor ------------------------------------------------------------------
SPEC = re.compile(r"^(local|process|ray)(?:=(.+))?$")


def parse_spec(spec: str) -> tuple[str, str | None]:
    """`local`, `process`, `process=N`, `ray` or `ray=ADDRESS` -> (kind, argument).

    N is ASCII digits (str.isdigit() also accepts '²' and '٣', which int() then refuses with its own
    message) and at most `bounds.max_threads()` (4 x the cores): each worker is a process that loads
    a toolkit, and `process=99999` on a sweep would start one per candidate at once."""
    from edgepipe.core.bounds import max_threads
    from edgepipe.core.labels import brief

    m = SPEC.match(spec.strip()) if isinstance(spec, str) else None
    n = m.group(2) if m is not None and m.group(1) == "process" else None
    if m is None or (m.group(1) == "local" and m.group(2)) or \
            (n is not None and not (re.fullmatch(r"[0-9]{1,9}", n) and int(n) > 0)):
        raise ConfigError(f"executor: expected 'local', 'process', 'process=N' (N >= 1), 'ray' or "
                          f"'ray=ADDRESS' (e.g. ray=auto, ray=ray://head:10001). Received: {brief(spec)}")
    if n is not None and int(n) > max_threads():
        raise ConfigError(f"executor: expected process=N with N at most 4 x the cores of this host = "
                          f"{max_threads()} worker processes. Received: {spec.strip()!r}")
    return m.group(1), m.group(2)


def machine_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
