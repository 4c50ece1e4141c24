"""What a board can run, decided without a board: the ISA check (pre-flight and runner), the manifest's
"isa" field, and how bench rows and `board status` present a board (emulated or not).

The same checks against a real sshd whose python is aarch64 under qemu-user: tests/test_arm64_board.py
(marker arm64).
"""

from __future__ import annotations

import pytest

from edgepipe import formats
from edgepipe.boards import device_runner
from edgepipe.boards.board_ops import describe_board
from edgepipe.boards.device_bench import device_line, summarise
from edgepipe.boards.preflight import evaluate
from edgepipe.boards.remote import Device

FACTS = {"python": "3.11.2", "executable": "/usr/bin/python3", "machine": "aarch64", "emulated": None,
         "numpy": {"version": "1.26.4"}, "runtimes": {"openvino": {"version": "2025.1.0"}},
         "user": "pi", "root": "/opt/edge", "base": "/opt", "unwritable": [], "free_bytes": 1 << 30}
OV = {"name": "openvino-cpu-fp32", "bundle_version": 1, "model": {"format": "openvino-ir"}, "requires": {}}


def test_formats_table_gives_openvino_two_isas_and_tflite_any():
    assert formats.find("openvino-ir").board_isas == ("x86_64", "aarch64")
    assert formats.find("tflite").board_isas == ()


def test_preflight_refuses_a_bundle_for_another_isa_with_expected_received_fix():
    device = Device.parse("ssh://pi@b/opt/edge")
    assert evaluate(FACTS, {**OV, "isa": ["x86_64", "aarch64"]}, 1, device) == []
    assert evaluate(FACTS, OV, 1, device) == []  # an older manifest without "isa": any
    assert evaluate({**FACTS, "machine": "arm64"}, {**OV, "isa": ["aarch64"]}, 1, device) == []  # macOS spelling
    problems = evaluate({**FACTS, "machine": "armv7l", "emulated": "qemu-user"}, {**OV, "isa": ["x86_64", "aarch64"]},
                        1, device)
    assert [p[0] for p in problems] == ["isa"], problems
    msg = problems[0][1]
    assert "expected a board whose CPU is one of x86_64, aarch64 (the bundle's openvino-ir model needs it)" in msg
    assert "Received: armv7l (platform.machine() on the board, emulated: qemu-user)" in msg and "Fix:" in msg


def test_runner_checks_the_isa_field_and_refuses_another_isa(monkeypatch):
    assert device_runner.isa_problem({"isa": None}, "x86_64") is None
    assert device_runner.isa_problem({"isa": ["x86_64"]}, "AMD64") is None
    assert "Received: aarch64" in device_runner.isa_problem({"isa": ["x86_64"], "model": {"format": "x"}}, "aarch64")
    base = {"files": [], "model": {"file": "m.xml", "format": "openvino-ir"}}
    device_runner.check_manifest({**base, "isa": ["x86_64"]})
    for bad in ("x86_64", [], [1]):
        with pytest.raises(device_runner.RunnerError) as err:
            device_runner.check_manifest({**base, "isa": bad})
        assert err.value.kind == "verification" and "isa: expected null (any ISA)" in str(err.value)
    monkeypatch.delenv(device_runner.EMULATED_ENV, raising=False)
    assert "emulated" not in device_runner.environment()
    monkeypatch.setenv(device_runner.EMULATED_ENV, "qemu-user")
    assert device_runner.environment()["emulated"] == "qemu-user"


def _entry(**result):
    lat = {"load_ms": 5.0, "first_ms": 3.0, "p50_ms": 812.5, "p90_ms": 900.0, "p99_ms": 910.0, "mean_ms": 830.0,
           "runs": 2, "warmup": 0}
    return {"device": "ssh://b/x", "status": "ok", "seconds": 9.0, "bundle": "b",
            "result": {"ok": True, "latency": lat, "python": "3.11.2", **result}}


def test_bench_rows_of_an_emulated_board_never_carry_a_device_latency():
    row = summarise(_entry(machine="aarch64", emulated="qemu-user"))
    assert row["isa"] == "aarch64" and row["emulated"] == "qemu-user" and row["platform"] == "arm64 (emulated)"
    assert row["latency"] is None and row["emulated_latency"]["p50_ms"] == 812.5
    assert "not a device figure" in row["emulated_latency"]["note"]
    assert device_line(row) == "ssh://b/x [arm64 (emulated)]: ok emulated p50 812.50 ms (not a device figure)"
    real = summarise(_entry(machine="aarch64"))  # a real board: its latency is its speed
    assert real["platform"] == "arm64" and real["emulated"] is None and real["latency"]["p50_ms"] == 812.5
    assert "emulated_latency" not in real and device_line(real) == "ssh://b/x [arm64]: ok p50 812.50 ms"
    failed = summarise({"device": "ssh://b/x", "status": "unreachable", "error": "refused", "seconds": 1.0})
    assert failed["platform"] is None and device_line(failed) == "ssh://b/x: unreachable refused"


def test_board_status_describes_what_the_board_runs():
    facts = {"isa": "aarch64", "machine": "aarch64", "emulated": "qemu-user", "python": "3.9.2",
             "numpy": {"version": "1.26.4"}, "runtimes": {"ai_edge_litert": {"error": "ModuleNotFoundError: x"},
                                                          "tflite_runtime": {"version": "2.11.0"}}}
    assert describe_board(facts) == ("aarch64 (emulated: qemu-user), Python 3.9.2, numpy 1.26.4, tflite_runtime "
                                     "2.11.0 (not importable: ai_edge_litert)")
    assert describe_board({"error": "no python"}) == "unknown (no python)" and describe_board(None) == "unknown"


def test_preflight_refuses_a_board_without_tar_and_an_older_facts_record_is_not_judged():
    device = Device.parse("ssh://pi@b/opt/edge")
    problems = evaluate({**FACTS, "machine": "x86_64", "tar": False}, OV, 1, device)
    assert [p[0] for p in problems] == ["no tar"], problems
    assert "expected `tar` on the board's PATH" in problems[0][1] and "Received: not found" in problems[0][1]
    assert evaluate({**FACTS, "machine": "x86_64", "tar": True}, OV, 1, device) == []
    assert evaluate({**FACTS, "machine": "x86_64"}, OV, 1, device) == []  # no "tar" key: not checked


def test_the_venv_fix_names_the_boards_own_home():
    facts = {**FACTS, "machine": "x86_64", "user": "root", "home": "/root", "runtimes": {"openvino": {"error": "x"}}}
    (status, message), = evaluate(facts, OV, 1, Device.parse("ssh://root@b/opt/edge"))
    assert status == "runtime" and "?python=/root/edgepipe-venv/bin/python" in message
    assert "/home/root" not in message
