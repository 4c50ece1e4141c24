"""A sweep on a real two-node Ray cluster on loopback (marker `ray`; tests/fixtures/ray_cluster.py): the head and a
worker node started with `ray start`, the worker node alone owning an sshd board (`board:sshd-01`).

`edgepipe sweep --executor ray=HEAD:PORT` and the Ray client (`ray=ray://HEAD:PORT`) each run the tiny sweep
(one recipe, two targets) across both nodes, the board's benchmarks start on the worker node (the only one that
reaches the board), and the artifacts and accuracies equal the local executor's. A worker node killed mid-task:
its CPU task is retried on the head; a task for its board, which no other node has, becomes a failure (a row of
the client-mode sweep, whose benchmark is killed with its node) instead of waiting forever. The cluster starts
once per module; the worker node is started again after a test killed it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import yaml

from tests.fixtures.ray_cluster import HEAD_IP, ROOT, WORKER_IP
from tests.fixtures.tiny_sweep import RECIPES, same_results, tiny_sweep_raw

pytest.importorskip("ray")
pytestmark = pytest.mark.ray

SSH_BENCH = "tests.fixtures.board_bench:ssh_bench"
FAST = {"recipes": RECIPES[:1], "latency": {"warmup": 1, "runs": 50, "end_to_end": False}}  # a 2-cell sweep


@pytest.fixture(scope="module")
def local_sweep(tiny_assets, tmp_path_factory) -> dict:
    """The reference: the same sweep on the local executor, in this process."""
    from edgepipe.executors.local import LocalExecutor
    from edgepipe.sweeps.config import parse_sweep
    from edgepipe.sweeps.runner import run_sweep

    d = tmp_path_factory.mktemp("local_sweep")
    sweep = parse_sweep(tiny_sweep_raw(tiny_assets, d / "out", **FAST), base_dir=d)
    return run_sweep(sweep, LocalExecutor(1, resources={"board:rpi4-01": 1}))


def cli_sweep(cluster, assets, d, executor: str, bench: str = SSH_BENCH):
    """`edgepipe sweep FILE --executor EXECUTOR --json` in a fresh interpreter (the driver), as a user runs it."""
    d.mkdir(parents=True, exist_ok=True)
    cfg = d / "sweep.yaml"
    cfg.write_text(yaml.safe_dump(tiny_sweep_raw(assets, d / "out", board=cluster.board, board_bench=bench, **FAST)))
    cmd = [sys.executable, "-m", "edgepipe.cli.app", "sweep", str(cfg), "--executor", executor, "--json"]
    return subprocess.Popen(cmd, cwd=ROOT, env=cluster.driver_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finish(proc, timeout: float = 600) -> tuple[int, dict | None, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the sweep did not finish within {timeout} s: {err[-3000:]}")
    try:
        return proc.returncode, json.loads(out), err  # stdout holds only the JSON, whatever the workers printed
    except json.JSONDecodeError:
        return proc.returncode, None, f"stdout is not JSON: {out[:2000]}\nstderr: {err}"


def check_across_nodes(report: dict, local: dict, node_ids: dict[str, str]) -> list[dict]:
    """The cells ran on both nodes and built what the local executor built; returns the benchmarked rows."""
    assert report["exit_code"] == 0 and report["failed_cells"] == 0
    same_results(local, report)  # the same artifacts, byte for byte, and the same accuracy
    assert {c["worker"]["node_ip"] for c in report["cells"]} == {HEAD_IP, WORKER_IP}, report["cells"]
    for c in report["cells"]:
        assert c["worker"]["node_id"] == node_ids[c["worker"]["node_ip"]]
    assert report["models"]["tiny"]["worker"]["node_id"] in node_ids.values()
    assert not any(r.get("boards") for r in report["rows"] if r["target"] != "tflite-arm")
    benched = [r for r in report["rows"] if r["target"] == "tflite-arm"]
    assert len(benched) == 1
    return benched


@pytest.fixture(scope="module")
def node_ids(two_nodes) -> dict[str, str]:
    nodes = two_nodes.nodes()
    assert sorted(n["ip"] for n in nodes) == [HEAD_IP, WORKER_IP]
    assert [n["ip"] for n in nodes if "board:sshd-01" in n["resources"]] == [WORKER_IP]  # one node owns the board
    return {n["ip"]: n["id"] for n in nodes}


def test_sweep_on_a_cluster_address_runs_on_both_nodes_and_benches_where_the_board_is(two_nodes, node_ids,
                                                                                     local_sweep, tiny_assets,
                                                                                     tmp_path):
    executor = f"ray={two_nodes.address}"
    code, report, err = finish(cli_sweep(two_nodes, tiny_assets, tmp_path, executor))
    assert code == 0 and report is not None, err[-3000:]
    assert report["executor"] == executor
    for r in check_across_nodes(report, local_sweep, node_ids):
        entry = r["boards"]["sshd-01"]
        # ran on the node that owns the board (its environment, and Ray's own node id), and reached the board
        assert entry["node"] == "worker" and entry["worker"]["node_id"] == node_ids[WORKER_IP], entry
        assert r["sha256"] in entry["files"].values(), (r["sha256"], entry["files"])
        # the worker imported the edgepipe the driver shipped with the job (runtime_env py_modules), not its own
        assert "/runtime_resources/py_modules_files/" in entry["edgepipe"], entry["edgepipe"]


def wait_for(paths, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while not all(p.exists() and p.stat().st_size for p in paths):
        if time.monotonic() > deadline:
            pytest.fail(f"never appeared: {[str(p) for p in paths if not p.exists()]}")
        time.sleep(0.2)


DRIVER = """
import json, sys
from edgepipe.executors.base import Failure, Task
from edgepipe.executors.ray_executor import RayExecutor
from tests.fixtures.board_bench import mark_and_sleep
address, markers, board = sys.argv[1:]
with RayExecutor(address, max_retries=2) as ex:
    out = ex.run([Task(mark_and_sleep, (markers, "a", 6), num_cpus=1, label="a"),
                  Task(mark_and_sleep, (markers, "b", 6), num_cpus=1, label="b"),
                  Task(mark_and_sleep, (markers, "board", 60), num_cpus=0, resources={board: 1}, label="board")])
    print("RESULT", json.dumps({"out": [r.to_json() if isinstance(r, Failure) else r for r in out],
                                "placements": list(ex.placements)}))
"""


def test_a_killed_worker_node_retries_its_task_on_the_head_and_fails_its_board_task(two_nodes, tmp_path):
    two_nodes.ensure_worker()
    markers = tmp_path / "m"
    markers.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, two_nodes.address, str(markers), "board:sshd-01"],
                            cwd=ROOT, env=two_nodes.driver_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        wait_for([markers / "a", markers / "b", markers / "board"])
        first = {n: (markers / n).read_text().split() for n in ("a", "b", "board")}
        assert sorted(first["a"] + first["b"]) == ["head", "worker"] and first["board"] == ["worker"], first
        victim = "a" if first["a"] == ["worker"] else "b"
        t0 = time.monotonic()
        two_nodes.kill("worker")
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    (res,) = [json.loads(line[7:]) for line in out.splitlines() if line.startswith("RESULT ")]
    by = dict(zip(("a", "b", "board"), zip(res["out"], res["placements"], strict=True), strict=True))
    result, where = by[victim]
    assert result == {"name": victim, "node": "head"} and where["node_ip"] == HEAD_IP  # retried elsewhere
    assert (markers / victim).read_text().split() == ["worker", "head"]
    fail, where = by["board"]
    assert fail["kind"] == "died" and "left the cluster" in fail["reason"] and "board:sshd-01" in fail["reason"]
    assert fail["attempts"] == 1
    assert where is None
    assert time.monotonic() - t0 < 60  # noticed in seconds, not a hang


def test_client_mode_sweep_and_a_board_node_killed_mid_benchmark(two_nodes, local_sweep, tiny_assets, tmp_path):
    """The Ray client (`ray://`): the cells run across both nodes and match the local executor; the benchmark
    starts on the board's node, which is then killed: the sweep still finishes, the board's result is an error."""
    two_nodes.ensure_worker()
    node_ids = {n["ip"]: n["id"] for n in two_nodes.nodes()}
    for old in two_nodes.markers.iterdir():
        old.unlink()
    executor = f"ray={two_nodes.client_address}"
    proc = cli_sweep(two_nodes, tiny_assets, tmp_path, executor, bench="tests.fixtures.board_bench:slow_bench")
    try:
        deadline = time.monotonic() + 400
        while not any(two_nodes.markers.iterdir()):  # a benchmark holds the board now
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no benchmark started: {proc.communicate()[1][-3000:]}")
            time.sleep(0.5)
        (marker,) = two_nodes.markers.iterdir()
        assert marker.name == "worker-tiny_fast_tflite-arm_int8"  # on the board's node
        t0 = time.monotonic()
        two_nodes.kill("worker")
        code, report, err = finish(proc, timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert code == 0 and report is not None, err[-3000:]
    assert time.monotonic() - t0 < 60  # noticed in seconds, not a hang
    assert report["executor"] == executor
    (row,) = check_across_nodes(report, local_sweep, node_ids)
    entry = row["boards"]["sshd-01"]
    assert "left the cluster" in entry["error"] and "board:sshd-01" in entry["error"], entry
