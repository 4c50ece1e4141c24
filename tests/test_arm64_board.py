"""Ship, roll back, bench and pre-flight on an arm64 board behind SSH (tests/fixtures/arm64_board.py).

The board's Python, numpy and runtime are aarch64 under qemu-user (its shell utilities and scp are
the host's); it says so with EDGEPIPE_BOARD_EMULATED=qemu-user. Two stacks: bookworm (Python 3.11,
numpy 2, ai-edge-litert, the host's versions) and the old board (bullseye: Python 3.9, numpy 1.26,
tflite-runtime 2.11). Emulated Python is slow (~3 s to start, ~10 s to import numpy and LiteRT), so
each test ships the tiny fixture model with few runs. Marker `arm64`.
"""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from edgepipe.boards.bundle import build_bundle, read_manifest, seal
from edgepipe.boards.ship import remote_dir_name
from edgepipe.cli.app import app
from edgepipe.core.versions import version_of
from tests.fixtures.configs import tiny_config, write_config
from tests.fixtures.ship_board import current, ship, ship_json, ssh_args, url  # fixture bundles: conftest plugin

pytestmark = pytest.mark.arm64
runner = CliRunner()
PY = "python3"  # the board's own python3: the fixture's aarch64 one, first on the session's PATH


@pytest.fixture(scope="module")
def odd_bundles(bundles, tiny_assets, tmp_path_factory):  # noqa: F811
    """Validly signed bundles this board cannot take: a runtime newer than any, an x86-only ISA, and a real
    OpenVINO IR bundle of the tiny model (OpenVINO is not installed on the arm64 board)."""
    store = tmp_path_factory.mktemp("odd-bundles")
    key = bundles["run"]["key"]
    made = {}
    for name, change in (("too-new", {"requires": {"ai_edge_litert": "99.0", "tflite_runtime": "99.0"}}),
                         ("x86-only", {"isa": ["x86_64"]})):
        made[name] = store / f"tflite-arm-int8-{name}"
        shutil.copytree(bundles["v2"], made[name])
        seal(made[name], {**read_manifest(made[name]), **change}, key)
    d = tmp_path_factory.mktemp("ovrun")
    cfg = tiny_config(tiny_assets, d / "out", targets=[{"name": "openvino-cpu", "options": {"precisions": ["fp32"]}}])
    res = runner.invoke(app, ["run", str(write_config(d / "pipeline.yaml", cfg))], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    made["openvino"] = build_bundle(d / "out" / "artifacts" / "openvino-cpu-fp32", store, key)
    return made


def test_ship_verifies_switches_smoke_tests_and_rolls_back_on_the_arm64_board(arm64_board, bundles,  # noqa: F811
                                                                              tmp_path):
    root = tmp_path / "board"
    res, rep = ship(arm64_board, bundles, bundles["v1"], root, python=PY)
    assert res.exit_code == 0, res.output
    name1 = remote_dir_name(bundles["v1"], read_manifest(bundles["v1"]))
    assert rep["status"] == "ok" and current(root) == f"bundles/{name1}"
    pre = rep["preflight"]  # what the board said about itself before anything was written
    assert pre["machine"] == "aarch64" and pre["emulated"] == "qemu-user" and pre["python"].startswith("3.11.")
    assert pre["runtimes"]["ai_edge_litert"]["version"] == version_of("ai-edge-litert")
    assert rep["verify"]["files"] == "ok" and rep["verify"]["signature"] == "valid"  # checked by the aarch64 runner
    smoke = rep["smoke"]
    assert smoke["ok"] and smoke["machine"] == "aarch64" and smoke["emulated"] == "qemu-user"
    assert smoke["runtime"]["name"] == "ai_edge_litert" and smoke["eval"]["n_images"] == 6
    assert smoke["eval"]["agreement_with_host"] >= 0.75
    # a bundle whose model cannot load: switched, smoke test failed, switched back, the new bundle removed
    res, rep = ship(arm64_board, bundles, bundles["broken"], root, python=PY)
    assert res.exit_code == 3, res.output
    assert rep["status"] == "rolled back" and rep["rolled_back_to"] == f"bundles/{name1}" and rep["switched"]
    assert current(root) == f"bundles/{name1}" and (root / "current" / "manifest.json").is_file()
    assert not (root / "bundles" / remote_dir_name(bundles["broken"], read_manifest(bundles["broken"]))).exists()
    assert not (root / ".lock").exists() and list((root / ".staging").iterdir()) == []
    # board status: the board reports its own ISA, python, numpy and runtimes
    args = ["board", "status", url(arm64_board, root, PY), *ssh_args(arm64_board, bundles)[:4]]
    res = runner.invoke(app, [*args, "--json"], catch_exceptions=False)  # the text form: tests/test_board_ops.py
    out = json.loads(res.stdout)
    assert res.exit_code == 0 and out["current"]["dir"] == name1, res.output
    b = out["board"]
    assert b["isa"] == "aarch64" and b["emulated"] == "qemu-user" and b["python"].startswith("3.11.")
    assert b["numpy"]["version"] == version_of("numpy")
    assert b["runtimes"]["ai_edge_litert"]["version"] == version_of("ai-edge-litert")
    assert "error" in b["runtimes"]["openvino"] and "error" in b["runtimes"]["tflite_runtime"]


def test_bench_on_the_arm64_board_is_labelled_emulated_not_a_device_speed(arm64_board, bundles,  # noqa: F811
                                                                          tmp_path):
    report = tmp_path / "report.json"
    shutil.copyfile(bundles["run"]["out"] / "report.json", report)
    res = runner.invoke(app, ["bench", str(bundles["v2"]), "--device", url(arm64_board, tmp_path / "b", PY),
                              "--runs", "2", "--warmup", "0", "--report", str(report),
                              *ssh_args(arm64_board, bundles, timeout=120)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout[: res.stdout.rindex("}") + 1])["devices"][0]
    assert row["status"] == "ok" and row["signature"] == "valid", row
    assert row["isa"] == "aarch64" and row["emulated"] == "qemu-user" and row["platform"] == "arm64 (emulated)"
    assert row["latency"] is None  # never a board's speed
    emu = row["emulated_latency"]
    assert emu["runs"] == 2 and emu["p50_ms"] > 0 and "not a device figure" in emu["note"]
    line = " ".join(res.stderr.split())
    assert "[arm64 (emulated)]: ok emulated p50" in line and "(not a device figure)" in line
    merged = [d for d in json.loads(report.read_text())["devices"] if d["artifact"] == "tflite-arm-int8"]
    assert len(merged) == 1 and merged[0]["platform"] == "arm64 (emulated)" and merged[0]["latency"] is None


def test_preflight_refuses_what_the_arm64_board_cannot_run_before_writing_anything(arm64_board, bundles,  # noqa: F811
                                                                                    odd_bundles, tmp_path):
    root = tmp_path / "board"
    res, out = ship_json(arm64_board, bundles, odd_bundles["too-new"], root, python=PY)
    assert res.exit_code == 3 and out["status"] == "runtime", out
    assert f"ai_edge_litert {version_of('ai-edge-litert')} (older than 99.0)" in out["error"]
    assert "pip install" in out["error"] and not root.exists()  # nothing written, not even trusted.pub
    res, out = ship_json(arm64_board, bundles, odd_bundles["x86-only"], root, python=PY)
    assert res.exit_code == 3 and out["status"] == "isa", out
    assert "ISA: expected a board whose CPU is one of x86_64" in out["error"]
    assert "Received: aarch64 (platform.machine() on the board, emulated: qemu-user)" in out["error"]
    assert not root.exists()
    ov = read_manifest(odd_bundles["openvino"])
    assert ov["model"]["format"] == "openvino-ir" and ov["isa"] == ["x86_64", "aarch64"]
    res, out = ship_json(arm64_board, bundles, odd_bundles["openvino"], root, python=PY)
    assert res.exit_code == 3 and out["status"] == "runtime", out  # the ISA is fine, the runtime is missing
    assert "ISA" not in out["error"] and "openvino: ModuleNotFoundError" in out["error"]
    assert "pip install 'openvino>=" in out["error"], out["error"]
    assert not root.exists()


def test_ship_on_the_old_board_stack(old_arm64_board, bundles, tmp_path):  # noqa: F811
    """Python 3.9 (Debian bullseye; buster's 3.7 is only on archive.debian.org), numpy 1.x, tflite-runtime 2.11."""
    root = tmp_path / "board"
    res, rep = ship(old_arm64_board, bundles, bundles["v1"], root, python=PY)
    assert res.exit_code == 0, res.output
    pre = rep["preflight"]
    assert pre["machine"] == "aarch64" and pre["python"].startswith("3.9.") and pre["numpy"]["version"] == "1.26.4"
    assert pre["runtimes"]["tflite_runtime"]["version"] == "2.11.0" and "error" in pre["runtimes"]["ai_edge_litert"]
    assert rep["verify"]["signature"] == "valid"
    smoke = rep["smoke"]
    assert smoke["ok"] and smoke["runtime"] == {"name": "tflite_runtime", "version": "2.11.0"}
    assert smoke["python"].startswith("3.9.") and smoke["machine"] == "aarch64" and smoke["emulated"] == "qemu-user"
    assert smoke["eval"]["agreement_with_host"] >= 0.75
    assert current(root) == f"bundles/{remote_dir_name(bundles['v1'], read_manifest(bundles['v1']))}"
