"""Choose an executor from its spec (`local`, `process[=N]`, `ray[=ADDRESS]`); Ray is imported only for `ray`."""

from __future__ import annotations

from collections.abc import Mapping

from edgepipe.executors.base import DEFAULT_RETRIES, Executor, machine_cpus, parse_spec
from edgepipe.executors.local import LocalExecutor


def make_executor(spec: str, *, resources: Mapping[str, float] | None = None,
                  max_retries: int = DEFAULT_RETRIES) -> Executor:
    kind, arg = parse_spec(spec)
    if kind == "local":
        return LocalExecutor(1, processes=False, max_retries=max_retries, resources=resources)
    if kind == "process":
        return LocalExecutor(int(arg) if arg else machine_cpus(), processes=True, max_retries=max_retries,
                             resources=resources)
    from edgepipe.executors.ray_executor import RayExecutor

    return RayExecutor(arg, resources=resources, max_retries=max_retries)
