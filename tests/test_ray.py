"""With a real local Ray instance (`tox -e ray`, marker `ray`): retries and worker death,
boards as custom resources, and a tiny sweep whose artifacts and metrics are identical to
the local executor's, with a deliberately broken model reported while the other cells finish."""

from __future__ import annotations

import pytest

from edgepipe.executors.base import Failure, Task
from edgepipe.executors.local import LocalExecutor
from tests.fixtures.executor_tasks import always_die, count_and_fail, die_once, hold_board, overlaps, square
from tests.fixtures.tiny_sweep import same_results, tiny_sweep_raw

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray

BOARDS = {"board:rpi4-01": 1, "board:rpi4-02": 1}


@pytest.fixture(scope="module")
def ray_executor():
    from edgepipe.executors.ray_executor import RayExecutor

    ray.init(address="local", num_cpus=2, include_dashboard=False, resources=BOARDS, logging_level="WARNING")
    try:
        ex = RayExecutor(max_retries=2)  # attaches to the instance above
        assert ex.parallel and ex.name == "ray"
        yield ex
    finally:
        ray.shutdown()


def test_ray_tasks_return_in_order(ray_executor):
    assert [r["x"] for r in ray_executor.map(square, [1, 2, 3])] == [1, 4, 9]


def test_ray_worker_death_is_retried_then_reported(ray_executor, tmp_path):
    counter = tmp_path / "n"
    out = ray_executor.run([Task(die_once, (str(tmp_path / "m"),), label="flaky"),
                            Task(always_die, label="doomed"),
                            Task(count_and_fail, (str(counter),), label="err"),
                            Task(square, (5,))])
    assert out[0] == "survived" and (tmp_path / "m").read_text() == "died"
    assert isinstance(out[1], Failure) and out[1].kind == "died" and "after 3 attempts" in out[1].reason
    assert isinstance(out[2], Failure) and out[2].kind == "error" and "converter crashed" in out[2].reason
    assert counter.read_text() == "xxx"  # 1 attempt + max_retries=2, bounded
    assert out[3]["x"] == 25


def test_ray_never_runs_two_benchmarks_on_one_board(ray_executor):
    ray_executor.run([Task(hold_board, ("warm-up", 1.0), num_cpus=1) for _ in range(2)])  # two live workers
    tasks = [Task(hold_board, (b, 1.5), num_cpus=0, resources={f"board:{b}": 1}, label=f"{b}-{i}")
             for i in range(2) for b in ("rpi4-01", "rpi4-02")]
    out = ray_executor.run(tasks)
    assert not any(isinstance(r, Failure) for r in out), out
    assert overlaps(out) == []
    assert any(a["board"] != b["board"] and a["start"] < b["end"] and b["start"] < a["end"] for a in out for b in out)


def test_ray_task_for_an_undeclared_board_fails_instead_of_hanging(ray_executor):
    (fail,) = ray_executor.run([Task(hold_board, ("coral-9", 0.0), num_cpus=0, resources={"board:coral-9": 1})])
    assert isinstance(fail, Failure) and "board:coral-9" in fail.reason and "ray start --resources" in fail.reason


def test_tiny_sweep_on_ray_matches_the_local_executor(tiny_assets, tmp_path, ray_executor):
    from edgepipe.core.errors import InputError
    from edgepipe.sweeps.config import parse_sweep
    from edgepipe.sweeps.runner import run_sweep

    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"\x00not a zip archive")

    def sweep(out: str, with_broken: bool = False):
        extra = [{"name": "broken", "path": str(broken)}] if with_broken else []
        return parse_sweep(tiny_sweep_raw(tiny_assets, out, extra_models=extra), base_dir=tmp_path)

    # a model that is not a model is refused before anything is written, whichever the executor
    for name, executor in (("local-broken", LocalExecutor(1, resources=BOARDS)), ("ray-broken", ray_executor)):
        with pytest.raises(InputError, match="broken.keras': expected a .keras zip archive"):
            run_sweep(sweep(str(tmp_path / name), with_broken=True), executor)
        assert not (tmp_path / name).exists()

    local = run_sweep(sweep(str(tmp_path / "local")), LocalExecutor(1, resources=BOARDS))
    remote = run_sweep(sweep(str(tmp_path / "ray")), ray_executor)
    assert remote["executor"] == "ray" and local["executor"] == "local"
    for rep in (local, remote):
        assert rep["exit_code"] == 0 and rep["failed_cells"] == 0
        good = [r for r in rep["rows"] if r["model"] == "tiny"]
        assert len(good) == 4 and all(r["status"] == "passed" for r in good)
        assert len(rep["references"]) == 1
        benched = [r for r in good if r["target"] == "tflite-arm"]
        assert all(r["boards"]["rpi4-01"]["sha256"] == r["sha256"] for r in benched)
    same_results(local, remote)
    # a Ray sweep says where each cell ran; the local executors say nothing
    assert all(c["worker"]["node_id"] for c in remote["cells"]) and not any("worker" in c for c in local["cells"])
    # the two presets / int8_io settings really made four different artifacts
    assert len({r["sha256"] for r in local["rows"] if r["model"] == "tiny"}) == 4
    assert {t: s["candidates"] for t, s in remote["targets"].items()} == {"openvino-cpu": 2, "tflite-arm": 2}
