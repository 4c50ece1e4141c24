"""LocalExecutor: tasks in this process one after another (the serial loop), or a pool of worker processes."""

from __future__ import annotations

import multiprocessing as mp
import os
import traceback
from collections import deque
from collections.abc import Mapping, Sequence
from multiprocessing.connection import wait
from typing import Any

from edgepipe.core.errors import ConfigError
from edgepipe.executors.base import DEFAULT_RETRIES, Executor, Failure, OnResult, Task, error_failure, invoke


class LocalExecutor(Executor):
    def __init__(self, workers: int = 1, *, processes: bool | None = None, max_retries: int = DEFAULT_RETRIES,
                 resources: Mapping[str, float] | None = None):
        if workers < 1:
            raise ConfigError(f"executor: expected at least 1 worker. Received: {workers}")
        self.workers = workers
        self.processes = workers > 1 if processes is None else processes
        self.max_retries = max_retries
        self.capacity = {"CPU": float(workers), **{k: float(v) for k, v in (resources or {}).items()}}
        self.name = f"process={workers}" if self.processes else "local"
        self._pool: list[_Worker] = []

    @property
    def parallel(self) -> bool:
        return self.processes

    def run(self, tasks: Sequence[Task], on_result: OnResult | None = None) -> list[Any]:
        if self.processes:
            return self._run_pool(tasks, on_result)
        out = []
        for i, t in enumerate(tasks):
            out.append(self._run_inline(t))
            if on_result:
                on_result(i, out[-1])
        return out

    def _run_inline(self, t: Task) -> Any:
        for attempt in range(1, self.max_retries + 2):
            try:
                return invoke(t.fn, t.args, t.label)
            except Exception as err:  # noqa: BLE001 - any toolchain failure: retried, then a Failure
                if attempt > self.max_retries:
                    return error_failure(t.label, err, attempt, traceback.format_exc(limit=8))
        raise AssertionError("unreachable")

    # ---- process pool ------------------------------------------------------------------
    def _demand(self, t: Task) -> dict[str, float]:
        # a task asking for more CPUs than the pool has still runs, alone
        return {"CPU": min(float(t.num_cpus), self.capacity["CPU"]), **{k: float(v) for k, v in t.resources.items()}}

    def _run_pool(self, tasks: Sequence[Task], on_result: OnResult | None) -> list[Any]:
        results: list[Any] = [None] * len(tasks)
        attempts = [0] * len(tasks)
        free = dict(self.capacity)
        pending: deque[int] = deque()
        done = 0

        def finish(i: int, outcome: Any) -> None:
            nonlocal done
            results[i] = outcome
            done += 1
            if on_result:
                on_result(i, outcome)

        for i, t in enumerate(tasks):
            missing = sorted(k for k, v in self._demand(t).items() if v > self.capacity.get(k, 0.0))
            if missing:
                have = {k: self.capacity.get(k, 0.0) for k in missing}
                finish(i, Failure(t.label, "error", f"expected resources this executor provides "
                                  f"({sorted(self.capacity)}). Received a task needing {missing} "
                                  f"(available: {have})", 0))
            else:
                pending.append(i)
        busy: dict[_Worker, int] = {}
        try:
            while done < len(tasks):
                for i in list(pending):  # start every pending task that fits, in order
                    demand = self._demand(tasks[i])
                    if len(busy) >= self.workers or any(free.get(k, 0.0) < v for k, v in demand.items()):
                        continue
                    pending.remove(i)
                    for k, v in demand.items():
                        free[k] -= v
                    attempts[i] += 1
                    w = self._idle_worker(busy)
                    w.send(tasks[i])
                    busy[w] = i
                for w, kind, payload in _wait_any(list(busy)):
                    i = busy.pop(w)
                    for k, v in self._demand(tasks[i]).items():
                        free[k] += v
                    label = tasks[i].label
                    if kind == "ok":
                        finish(i, payload)
                        continue
                    if kind == "died":
                        self._pool.remove(w)
                        reason = f"worker died (exit code {payload})"
                        fail = Failure(label, "died", reason, attempts[i])
                    else:
                        fail = Failure(label, "error", payload[0], attempts[i], None, payload[1])
                    if attempts[i] <= self.max_retries:
                        pending.appendleft(i)
                    else:
                        finish(i, Failure(fail.label, fail.kind, f"{fail.reason} (after {attempts[i]} attempts)",
                                          attempts[i], None, fail.traceback))
        except BaseException:
            self.close()  # interrupted: do not leave workers computing behind our back
            raise
        return results

    def _idle_worker(self, busy) -> _Worker:
        for w in self._pool:
            if w not in busy and w.alive():
                return w
        self._pool = [w for w in self._pool if w.alive() or w in busy]
        w = _Worker()
        self._pool.append(w)
        return w

    def close(self) -> None:
        for w in self._pool:
            w.stop()
        self._pool = []


class _Worker:
    """A long-lived spawned process running tasks sent over its own pipe (so a death is
    charged to exactly the task it was running)."""

    def __init__(self):
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_loop, args=(child,), daemon=True, name="edgepipe-worker")
        self.proc.start()
        child.close()

    def alive(self) -> bool:
        return self.proc.is_alive()

    def send(self, t: Task) -> None:
        self.conn.send((t.fn, t.args, t.label))

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(timeout=5)
        self.conn.close()


def _wait_any(busy: list[_Worker]):
    """Block until at least one busy worker answered or died; yield (worker, kind, payload)."""
    by_handle = {}
    for w in busy:
        by_handle[w.conn] = w
        by_handle[w.proc.sentinel] = w
    ready = wait(list(by_handle))
    seen = set()
    for h in ready:
        w = by_handle[h]
        if w in seen:
            continue
        seen.add(w)
        if w.conn.poll():
            try:
                kind, payload = w.conn.recv()
                yield w, kind, payload
                continue
            except (EOFError, OSError):
                pass
        if not w.proc.is_alive() or h is w.proc.sentinel:
            w.proc.join(timeout=5)
            yield w, "died", w.proc.exitcode


def _worker_loop(conn) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        fn, args, label = msg
        try:
            answer = ("ok", invoke(fn, args, label))
        except Exception as err:  # noqa: BLE001 - reported to the parent, which retries
            answer = ("error", (f"{type(err).__name__}: {err}", traceback.format_exc(limit=8)))
        try:
            conn.send(answer)
        except Exception as err:  # noqa: BLE001 - e.g. an unpicklable result
            conn.send(("error", (f"result not transferable: {type(err).__name__}: {err}", None)))


