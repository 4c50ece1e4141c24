"""The executor seam without Ray: in-process and process-pool executors, retries, worker
death, board resources, and the spec parser. Task functions live at module level so spawned
workers import them by name."""

from __future__ import annotations

import os
import time

import pytest

from edgepipe.core.errors import ConfigError
from edgepipe.executors.base import Failure, Task, parse_spec
from edgepipe.executors.factory import make_executor
from edgepipe.executors.local import LocalExecutor
from tests.fixtures.executor_tasks import always_die, bad_input, count_and_fail, die_once, hold_board, overlaps, square


def test_inline_executor_runs_in_order_in_this_process():
    ex = LocalExecutor(1)
    seen = []
    out = ex.run([Task(square, (i,)) for i in range(4)], on_result=lambda i, r: seen.append(i))
    assert [r["x"] for r in out] == [0, 1, 4, 9]
    assert {r["pid"] for r in out} == {os.getpid()} and seen == [0, 1, 2, 3]
    assert not ex.parallel


def test_inline_exception_is_retried_then_a_failure(tmp_path):
    counter = tmp_path / "n"
    out = LocalExecutor(1, max_retries=2).run([Task(count_and_fail, (str(counter),), label="cell-a"),
                                               Task(square, (3,))])
    fail = out[0]
    assert isinstance(fail, Failure) and fail.kind == "error" and fail.label == "cell-a"
    assert "RuntimeError: converter crashed" in fail.reason and fail.attempts == 3
    assert counter.read_text() == "xxx"  # 1 attempt + 2 retries, bounded
    assert out[1]["x"] == 9  # the other task still ran


def test_typed_input_error_is_not_retried(tmp_path):
    counter = tmp_path / "n"
    (fail,) = LocalExecutor(1, max_retries=2).run([Task(bad_input, (str(counter),))])
    assert fail.kind == "input" and fail.exit_code == 2 and fail.attempts == 1
    assert "expected a .keras file" in fail.reason and counter.read_text() == "x"


def test_process_pool_runs_in_other_processes_and_keeps_order():
    with LocalExecutor(2) as ex:
        assert ex.parallel and ex.name == "process=2"
        out = ex.map(square, [1, 2, 3, 4, 5])
    assert [r["x"] for r in out] == [1, 4, 9, 16, 25]
    assert os.getpid() not in {r["pid"] for r in out}
    assert len({r["pid"] for r in out}) <= 2  # long-lived workers are reused


def test_process_pool_worker_death_is_retried(tmp_path):
    with LocalExecutor(2, max_retries=1) as ex:
        out = ex.run([Task(die_once, (str(tmp_path / "m"),), label="flaky"), Task(square, (2,))])
    assert out[0] == "survived" and out[1]["x"] == 4
    assert (tmp_path / "m").read_text() == "died"  # it really died once


def test_process_pool_worker_death_becomes_a_failed_row_and_others_finish(tmp_path):
    counter = tmp_path / "n"
    with LocalExecutor(2, max_retries=2) as ex:
        out = ex.run([Task(always_die, label="doomed"), Task(square, (3,)),
                      Task(count_and_fail, (str(counter),), label="err"), Task(square, (4,))])
    assert isinstance(out[0], Failure) and out[0].kind == "died" and out[0].attempts == 3
    assert "worker died (exit code 7)" in out[0].reason and "after 3 attempts" in out[0].reason
    assert out[2].kind == "error" and counter.read_text() == "xxx"
    assert out[1]["x"] == 9 and out[3]["x"] == 16


def test_process_pool_never_runs_two_tasks_on_one_board():
    boards = {"board:a": 1, "board:b": 1}
    tasks = [Task(hold_board, (b, 0.4), num_cpus=0, resources={f"board:{b}": 1}, label=f"{b}{i}")
             for i in range(3) for b in "ab"]
    with LocalExecutor(2, resources=boards) as ex:
        ex.map(square, [0, 0])  # start both workers before timing
        t0 = time.monotonic()
        out = ex.run(tasks)
        wall = time.monotonic() - t0
    assert not any(isinstance(r, Failure) for r in out)
    assert overlaps(out) == []
    # the two boards did work side by side (3 x 0.4 s per board, not 6 x 0.4 s in a row)
    a_b_parallel = any(a["board"] != b["board"] and a["start"] < b["end"] and b["start"] < a["end"]
                       for a in out for b in out)
    assert a_b_parallel and wall < 6 * 0.4


def test_task_needing_an_unknown_board_fails_at_once():
    with LocalExecutor(2, resources={"board:a": 1}) as ex:
        out = ex.run([Task(hold_board, ("z", 0.0), resources={"board:z": 1}), Task(square, (2,))])
    assert isinstance(out[0], Failure) and "board:z" in out[0].reason and out[0].attempts == 0
    assert out[1]["x"] == 4


@pytest.mark.parametrize("spec, expected", [
    ("local", ("local", None)), ("process", ("process", None)), ("process=3", ("process", "3")),
    ("ray", ("ray", None)), ("ray=auto", ("ray", "auto")), ("ray=ray://head:10001", ("ray", "ray://head:10001")),
])
def test_parse_spec(spec, expected):
    assert parse_spec(spec) == expected


@pytest.mark.parametrize("spec", ["dask", "process=0", "process=two", "local=4", "", "ray="])
def test_parse_spec_rejects_with_what_was_expected(spec):
    with pytest.raises(ConfigError, match=r"expected 'local', 'process'.*Received: "):
        parse_spec(spec)


def test_make_executor_sizes_the_process_pool():
    assert make_executor("local").name == "local"
    assert make_executor("process=3").workers == 3
    assert make_executor("process").workers == len(os.sched_getaffinity(0))


def test_ray_workers_get_the_whole_package_under_its_installed_name(tmp_path):
    """`ray=ADDRESS` ships the code as py_modules: one folder named edgepipe that imports, with the
    registry and data packages inside it (a checkout keeps them beside pipeline/, the wheel inside)."""
    import shutil
    import subprocess
    import sys

    from edgepipe.executors.ray_executor import package_dir

    d, staged = package_dir()
    try:
        assert d.name == "edgepipe" and (d / "targets" / "__init__.py").is_file()
        assert (d / "calibration" / "preprocess.py").is_file() and (d / "boards" / "device_runner.py").is_file()
        assert staged is None or d.parent == staged  # a checkout's copy lives in its own temporary directory
        code = ("import edgepipe, edgepipe.targets as t, edgepipe.engine.orchestrate; "
                "print(edgepipe.__file__, len(t.REGISTRY))")
        out = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(d.parent)!r}); "
                              f"{code}"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split()[0].startswith(str(d)) and int(out.stdout.split()[1]) >= 5
    finally:
        if staged is not None:
            shutil.rmtree(staged)


@pytest.mark.parametrize("connects", [True, False])
def test_a_shipped_copy_of_the_package_is_removed_when_the_executor_closes_or_cannot_connect(
        tmp_path, monkeypatch, connects):
    """A checkout's package is copied into a temporary directory to ship to a Ray cluster; nothing of it stays
    behind: not after the run (close), and not when the cluster cannot be reached. Ray itself is a stand-in
    here (the real cluster: tests/test_ray_cluster.py, marker `ray`)."""
    import sys
    import types

    from edgepipe.executors import ray_executor

    staged = tmp_path / "edgepipe-ray-x"
    (staged / "edgepipe").mkdir(parents=True)
    monkeypatch.setattr(ray_executor, "package_dir", lambda: (staged / "edgepipe", staged))
    calls = []

    def init(**kw):
        calls.append(kw["runtime_env"]["py_modules"])
        if not connects:
            raise ConnectionError("no cluster at ray://nowhere:1")
        fake.initialized = True

    fake = types.SimpleNamespace(initialized=False, init=init, remote=lambda fn: fn)
    fake.is_initialized = lambda: fake.initialized
    fake.shutdown = lambda: setattr(fake, "initialized", False)
    monkeypatch.setitem(sys.modules, "ray", fake)
    if connects:
        ex = ray_executor.RayExecutor("ray://head:10001")
        assert staged.is_dir()  # still there while the job runs
        ex.close()
    else:
        with pytest.raises(ConfigError, match="expected a reachable Ray cluster"):
            ray_executor.RayExecutor("ray://nowhere:1")
    assert calls == [[str(staged / "edgepipe")]] and not staged.exists()
