"""RayExecutor: the executor's tasks as Ray tasks (`pip install edgepipe[ray]`).

- `RayExecutor()` starts a local Ray instance sized to this machine; board resources
  (`{"board:rpi4-01": 1}`) are declared on it.
- `RayExecutor("auto")` / `RayExecutor("ray://head:10001")` connects to an existing
  cluster. There the nodes declare their own resources (`ray start --resources=
  '{"board:rpi4-01": 1}'` on the node that can reach the board), edgepipe's own packages
  are shipped with the job (`runtime_env.py_modules`), and the output directory must be
  on a file system every node mounts at the same path: artifacts and the stage cache move
  through it, not through the object store.

Each task asks for its `num_cpus` and resources, so Ray never runs two tasks on one board
at once. `max_retries` covers both a dead worker and an exception (`retry_exceptions`); a
typed EdgepipeError comes back as a Failure and is not retried. A task whose resources only a
node that has since died provided (its board's node) is cancelled and becomes a Failure, instead
of waiting forever for a node that may never come back. `placements` says where each task of the
last `run` ran: the Ray node's id and IP, the worker's host name and pid.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edgepipe.core.errors import ConfigError
from edgepipe.executors.base import DEFAULT_RETRIES, Executor, Failure, OnResult, Task, invoke

WATCH_SECONDS = 2.0  # how often a wait looks for tasks whose resources left the cluster with their node


class RayExecutor(Executor):
    def __init__(self, address: str | None = None, *, num_cpus: int | None = None,
                 resources: Mapping[str, float] | None = None, max_retries: int = DEFAULT_RETRIES,
                 ship_code: bool = True):
        try:
            import ray
        except ImportError as err:
            from edgepipe.core.extras import pip_hint

            raise ConfigError(f"executor 'ray': expected the ray package ({pip_hint(['ray'])}). "
                              "Received: ray is not installed") from err
        self.ray = ray
        self.address = address
        self.max_retries = max_retries
        self.name = f"ray={address}" if address else "ray"
        self._owns = not ray.is_initialized()
        self._staged: Path | None = None  # a temporary copy of the package shipped to the cluster, removed on close
        if self._owns:
            env = {"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2"}}
            if address is None:
                # "local": always a new instance, even if `ray start` left a cluster address behind
                ray.init(address="local", num_cpus=num_cpus, resources=dict(resources or {}),
                         include_dashboard=False, runtime_env=env, logging_level="WARNING")
            else:
                if ship_code:
                    shipped, self._staged = package_dir()
                    env["py_modules"] = [str(shipped)]
                try:
                    ray.init(address=address, runtime_env=env, logging_level="WARNING")
                except (ConnectionError, RuntimeError, ValueError) as err:
                    self._remove_staged()
                    raise ConfigError(f"executor 'ray={address}': expected a reachable Ray cluster "
                                      f"(ray start --head, then ray=auto or ray://HOST:10001; a cluster with "
                                      f"token authentication also needs RAY_AUTH_MODE=token here). "
                                      f"Received: {err}") from err
        self._remote = ray.remote(invoke_on_node)

    @property
    def parallel(self) -> bool:
        return True

    def _node_capacity(self) -> list[dict]:
        return [n.get("Resources", {}) for n in self.ray.nodes() if n.get("Alive")]

    def run(self, tasks: Sequence[Task], on_result: OnResult | None = None) -> list[Any]:
        ray = self.ray
        nodes = self._node_capacity()
        max_cpu = max((n.get("CPU", 0.0) for n in nodes), default=0.0)
        results: list[Any] = [None] * len(tasks)
        self.placements = [None] * len(tasks)
        refs, needs = {}, {}
        for i, t in enumerate(tasks):
            need = {k: float(v) for k, v in t.resources.items()}
            if need and not _provided(need, nodes):
                # an infeasible task would wait forever: say so instead
                results[i] = Failure(t.label, "error", f"expected a Ray node providing {need} (declare it with "
                                     f"ray start --resources=...). Received: no such node", 0)
                if on_result:
                    on_result(i, results[i])
                continue
            opts = {"num_cpus": min(float(t.num_cpus), max_cpu), "max_retries": self.max_retries,
                    "retry_exceptions": True, "name": t.label or t.fn.__name__}
            if need:
                opts["resources"] = need
            ref = self._remote.options(**opts).remote(t.fn, t.args, t.label)
            refs[ref], needs[ref] = i, need
        waiting = list(refs)
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1, timeout=WATCH_SECONDS)
            if not ready:
                ready, waiting, stranded = self._stranded(waiting, needs)
                for ref in stranded:
                    ray.cancel(ref)
                    t = tasks[refs[ref]]
                    results[refs[ref]] = Failure(
                        t.label, "died", f"the Ray node providing {needs[ref]} left the cluster and no alive node "
                        f"provides it now: the task was cancelled (restart that node with ray start "
                        f"--resources=... and run again)", 1)  # at least the attempt on the dead node
                    if on_result:
                        on_result(refs[ref], results[refs[ref]])
            for ref in ready:
                i = refs[ref]
                results[i], self.placements[i] = self._outcome(tasks[i], ref)
                if on_result:
                    on_result(i, results[i])
        return results

    def _stranded(self, waiting: list, needs: dict) -> tuple[list, list, list]:
        """(ready, still waiting, stranded): a stranded task needs a resource no alive node provides any more."""
        nodes = self._node_capacity()
        lost = [ref for ref in waiting if needs[ref] and not _provided(needs[ref], nodes)]
        if not lost:
            return [], waiting, []
        done, lost = self.ray.wait(lost, num_returns=len(lost), timeout=0)  # finished just now: not stranded
        return done, [ref for ref in waiting if ref not in done and ref not in lost], lost

    def _outcome(self, t: Task, ref) -> tuple[Any, dict | None]:
        """(the task's outcome, where it ran or None)."""
        exc = self.ray.exceptions
        attempts = self.max_retries + 1
        try:
            return self.ray.get(ref)
        except exc.RayTaskError as err:
            cause = err.cause if getattr(err, "cause", None) is not None else err
            return Failure(t.label, "error", f"{type(cause).__name__}: {cause} (after {attempts} attempts)",
                           attempts, None, str(err)[-4000:]), None
        except (exc.WorkerCrashedError, exc.NodeDiedError) as err:
            return Failure(t.label, "died", f"worker died: {type(err).__name__} (after {attempts} attempts)",
                           attempts, None, str(err)[-2000:]), None
        except exc.RayError as err:  # e.g. out of memory, cancelled
            return Failure(t.label, "died", f"{type(err).__name__}: {str(err)[:300]}", attempts), None

    def close(self) -> None:
        if self._owns and self.ray.is_initialized():
            self.ray.shutdown()
            self._owns = False
        self._remove_staged()

    def _remove_staged(self) -> None:
        if self._staged is not None:
            import shutil

            shutil.rmtree(self._staged, ignore_errors=True)
            self._staged = None


def invoke_on_node(fn, args: tuple, label: str = "") -> tuple[Any, dict]:
    """`invoke` in a Ray worker: (its outcome, where it ran)."""
    import ray

    where = {"node_id": ray.get_runtime_context().get_node_id(), "node_ip": ray.util.get_node_ip_address(),
             "host": socket.gethostname(), "pid": os.getpid()}
    return invoke(fn, args, label), where


def _provided(need: Mapping[str, float], nodes: list[dict]) -> bool:
    return any(all(n.get(k, 0.0) >= v for k, v in need.items()) for n in nodes)


def package_dir() -> tuple[Path, Path | None]:
    """(a folder named `edgepipe` holding the whole package as it is installed, for Ray's `py_modules` (the
    workers import it by the folder's name), the temporary directory to remove once it is shipped, or None).
    An installed wheel is that folder already; a repository checkout (editable install) keeps targets/ and
    calibration/ beside pipeline/, so they are copied into one under a new temporary directory."""
    import shutil
    import tempfile

    import edgepipe
    from edgepipe import calibration, targets

    root = Path(edgepipe.__file__).parent
    parts = {"targets": Path(targets.__file__).parent, "calibration": Path(calibration.__file__).parent}
    if root.name == "edgepipe" and all(p == root / name for name, p in parts.items()):
        return root, None
    tmp = Path(tempfile.mkdtemp(prefix="edgepipe-ray-"))
    stage = tmp / "edgepipe"
    junk = shutil.ignore_patterns("__pycache__", "*.pyc")
    try:
        shutil.copytree(root, stage, ignore=junk)
        for name, path in parts.items():
            shutil.copytree(path, stage / name, ignore=junk)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return stage, tmp
