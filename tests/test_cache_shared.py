"""Two workers sharing one stage cache: a stage is computed once, the other worker waits and
gets the cached result; a failed stage publishes nothing."""

from __future__ import annotations

import time
from pathlib import Path

from edgepipe.core.cache import MARKER, StageCache
from edgepipe.executors.base import Failure, Task
from edgepipe.executors.local import LocalExecutor


def _slow_stage(root: str, counter: str, seconds: float):
    def fn(out: Path) -> dict:
        with open(counter, "a") as f:
            f.write("run\n")
        time.sleep(seconds)
        (out / "model.bin").write_bytes(b"\x01" * 1000)
        return {"file": "model.bin"}

    res = StageCache(Path(root)).run("convert", {"model": "abc"}, fn)
    return {"cached": res.cached, "path": str(res.path), "meta": res.meta}


def _failing_stage(root: str):
    def fn(out: Path) -> dict:
        (out / "half.bin").write_bytes(b"\x00" * 10)
        raise RuntimeError("converter crashed half-way")

    StageCache(Path(root)).run("convert", {"model": "bad"}, fn)


def test_racing_workers_compute_a_stage_once(tmp_path):
    counter = tmp_path / "runs.txt"
    with LocalExecutor(2) as ex:
        out = ex.run([Task(_slow_stage, (str(tmp_path / "stages"), str(counter), 1.5)) for _ in range(2)])
    assert not any(isinstance(r, Failure) for r in out), out
    assert counter.read_text() == "run\n"  # computed by exactly one worker
    assert sorted(r["cached"] for r in out) == [False, True]  # the other one waited and found it cached
    assert out[0]["path"] == out[1]["path"] and out[0]["meta"] == out[1]["meta"] == {"file": "model.bin"}
    assert (Path(out[0]["path"]) / "model.bin").stat().st_size == 1000


def test_a_failed_stage_leaves_nothing_cached(tmp_path):
    root = tmp_path / "stages"
    (fail,) = LocalExecutor(1, max_retries=1).run([Task(_failing_stage, (str(root),))])
    assert isinstance(fail, Failure) and "converter crashed half-way" in fail.reason and fail.attempts == 2
    assert StageCache(root).lookup("convert", {"model": "bad"}) is None
    assert not list(root.glob(f"*/{MARKER}")) and not list(root.glob(".tmp-*"))
