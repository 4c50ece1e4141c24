"""`edgepipe --help` and `edgepipe targets` must not import TensorFlow or OpenVINO."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("tensorflow", "keras", "openvino", "nncf", "onnx", "onnxruntime", "tf2onnx", "ray")

PROBE = """
import sys, json
from typer.testing import CliRunner
from pipeline.cli.app import app
r = CliRunner().invoke(app, sys.argv[1:])
print(json.dumps({"code": r.exit_code, "out": r.output,
                  "heavy": sorted(m for m in sys.modules if m.split('.')[0] in HEAVY)}))
""".replace("HEAVY", repr(HEAVY))


def _probe(*args):
    out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_help_imports_no_toolkit():
    r = _probe("--help")
    assert r["code"] == 0 and "run" in r["out"]
    assert r["heavy"] == []


def test_targets_listing_imports_no_toolkit():
    r = _probe("targets", "--json")
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
    r = _probe("targets")
    assert r["code"] == 0 and r["heavy"] == []
    assert "coral-edgetpu" in r["out"] and "edgetpu_compiler" in r["out"] and "this host" in r["out"]
