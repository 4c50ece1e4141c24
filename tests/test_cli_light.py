"""`edgepipe --help` and `edgepipe targets` must not import TensorFlow or OpenVINO."""

from __future__ import annotations

import json

from tests.fixtures.cli import cli_probe


def test_help_imports_no_toolkit():
    r = cli_probe("--help")
    assert r["code"] == 0 and "run" in r["out"]
    assert r["heavy"] == []


def test_targets_listing_imports_no_toolkit():
    r = cli_probe("targets", "--json")
    assert r["code"] == 0 and r["heavy"] == []
    rows = json.loads(r["out"])
    assert {t["name"] for t in rows} >= {"tflite-arm", "openvino-cpu", "coral-edgetpu", "openvino-npu"}
    for t in rows:
        assert {"accepts", "precisions", "runtime", "available", "missing", "artifact", "compiler", "device",
                "host"} <= set(t)
    coral = next(t for t in rows if t["name"] == "coral-edgetpu")
    assert coral["compiler"] == "edgetpu_compiler" and "Edge TPU" in coral["device"]
    assert coral["host"]["compiler"] == ("edgetpu_compiler" not in coral["missing"])


def test_targets_table_imports_no_toolkit():
    r = cli_probe("targets")
    assert r["code"] == 0 and r["heavy"] == []
    assert "coral-edgetpu" in r["out"] and "edgetpu_compiler" in r["out"] and "this host" in r["out"]
