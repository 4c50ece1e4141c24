"""The tiny Xception's TFLite artifacts on an arm64 userland under qemu-user, compared with the host.

Marker `arm64` (not in the default suite): `tox -e arm64` or `pytest -m arm64`. The first run
builds the arm64 userland into the edgepipe cache (debootstrap + aarch64 wheels, ~1 min, needs
qemu-user-static, debootstrap, root and the package registries); later runs reuse it.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from edgepipe.cli.app import app
from tests.fixtures.configs import tiny_config, write_config

pytestmark = pytest.mark.arm64
runner = CliRunner()
N_IMAGES = 4


@pytest.fixture(scope="module")
def emulated_run(tiny_assets, tmp_path_factory):
    from edgepipe.targets.arm64.userland import host_problems

    problem = host_problems()
    if problem is not None:
        pytest.fail(f"the arm64 tests need emulation on this host: {problem}")
    d = tmp_path_factory.mktemp("arm64")
    cfg = tiny_config(tiny_assets, d / "out",
                      targets=[{"name": "tflite-arm", "options": {"verify_arm64": N_IMAGES}}])
    path = write_config(d / "pipeline.yaml", cfg)
    res = runner.invoke(app, ["run", str(path)], catch_exceptions=False)
    report = json.loads((d / "out" / "report.json").read_text())
    return {"dir": d, "path": path, "res": res, "report": report,
            "rows": {r["artifact"]: r for r in report["artifacts"]}}


def test_run_report_has_an_emulated_row_per_artifact(emulated_run):
    res, rows = emulated_run["res"], emulated_run["rows"]
    assert res.exit_code == 0, res.output
    assert list(rows) == ["keras/fp32 (reference)", "tflite-arm/fp32", "tflite-arm/int8",
                          "tflite-arm/fp32 (arm64, emulated)", "tflite-arm/int8 (arm64, emulated)"]
    for p in ("fp32", "int8"):
        row = rows[f"tflite-arm/{p} (arm64, emulated)"]
        assert row["status"] == "passed" and row["target"] == "arm64-emulated", row
        assert row["sha256"] == rows[f"tflite-arm/{p}"]["sha256"]  # the very artifact that was validated
        arm, host = row["arm64"]["arm64"], row["arm64"]["host"]
        assert arm["machine"] == "aarch64" and host["machine"] == "x86_64"
        assert arm["runtime"] == host["runtime"] and arm["runtime"]["name"] == "ai_edge_litert"
        assert "latency" not in row  # no device latency column for an emulator
        lat = row["emulated_latency"]
        assert lat["p50_ms"] > 0 and lat["runs"] == N_IMAGES and "not a device figure" in lat["note"]
    flat = " ".join(res.output.replace("│", " ").split())  # the note column wraps wherever the numbers put it
    assert "(arm64, emulated)" in res.output and "(not a device figure)" in flat


def test_int8_outputs_are_bit_exact_on_arm64(emulated_run):
    a = emulated_run["rows"]["tflite-arm/int8 (arm64, emulated)"]["arm64"]["agreement"]
    assert a["dtype"] == "int8" and a["images"] == N_IMAGES and a["outputs"] == N_IMAGES * 3
    assert a["bit_exact"] and a["max_lsb_diff"] == 0 and a["differing_outputs"] == 0
    assert a["scores_max_abs_diff"] == 0.0 and a["top1_agreement"] == 1.0


def test_fp32_outputs_agree_within_1e_4_on_arm64(emulated_run):
    a = emulated_run["rows"]["tflite-arm/fp32 (arm64, emulated)"]["arm64"]["agreement"]
    assert a["dtype"] == "float32" and a["images"] == N_IMAGES
    assert a["max_abs_diff"] <= 1e-4 and a["top1_agreement"] == 1.0


def test_rerun_reuses_the_emulated_stage(emulated_run):
    res = runner.invoke(app, ["run", str(emulated_run["path"])], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    report = json.loads((emulated_run["dir"] / "out" / "report.json").read_text())
    stages = {s["stage"]: s["cached"] for s in report["stages"]}
    assert stages["arm64-emulated-int8"] and stages["arm64-emulated-fp32"] and all(stages.values())


def test_verify_arm_cli_on_the_published_artifact(emulated_run):
    art = emulated_run["dir"] / "out" / "artifacts" / "tflite-arm-int8"
    res = runner.invoke(app, ["verify-arm", str(art), "--images", str(N_IMAGES), "--cpu", "cortex-a72", "--json"])
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout)
    assert rec["status"] == "passed" and rec["arm64"]["machine"] == "aarch64" and rec["arm64"]["cpu"] == "cortex-a72"
    assert rec["data"]["source"].endswith("data") and rec["data"]["split"] == "test" and rec["images"] == N_IMAGES
    assert rec["agreement"]["bit_exact"] and rec["agreement"]["top1_agreement"] == 1.0
