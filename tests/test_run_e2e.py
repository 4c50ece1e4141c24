"""End-to-end `edgepipe run` on the tiny Xception: artifacts, report, cache, gates, exit codes."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from pipeline.cli.app import app
from tests.fixtures.configs import tiny_config, write_config

runner = CliRunner()

EXPECTED = ["keras/fp32 (reference)", "tflite-arm/fp32", "tflite-arm/int8", "openvino-cpu/fp32", "openvino-cpu/int8"]


def _run(cfg_path, *args):
    return runner.invoke(app, ["run", str(cfg_path), *args], catch_exceptions=False)


@pytest.fixture(scope="module")
def first_run(tiny_assets, tmp_path_factory):
    d = tmp_path_factory.mktemp("e2e")
    cfg = tiny_config(tiny_assets, d / "out")
    path = write_config(d / "pipeline.yaml", cfg)
    res = _run(path)
    return {"dir": d, "cfg": cfg, "path": path, "res": res,
            "report": json.loads((d / "out" / "report.json").read_text())}


def test_first_run_builds_validates_and_passes(first_run):
    res, report = first_run["res"], first_run["report"]
    assert res.exit_code == 0, res.output
    assert [r["artifact"] for r in report["artifacts"]] == EXPECTED
    for row in report["artifacts"][1:]:
        assert row["status"] == "passed", row
        acc, lat = row["accuracy"], row["latency"]
        assert acc["n_images"] == 54 and 0 <= acc["top1"] <= 1
        assert abs(acc["drop_points"] - 100 * (acc["ref_top1"] - acc["top1"])) < 1e-9
        assert lat["runs"] == 50 and 0 < lat["p50_ms"] <= lat["p90_ms"]
    assert all(not s["cached"] for s in report["stages"])
    assert report["data"]["calibration"]["count"] == 30
    assert "tflite-arm/int8" in res.output and "p90 ms" in res.output


def test_artifact_directories_are_complete(first_run):
    out = first_run["dir"] / "out" / "artifacts"
    for name, files in {"tflite-arm-int8": ["model_int8.tflite"],
                        "openvino-cpu-int8": ["model_int8.xml", "model_int8.bin"]}.items():
        d = out / name
        for f in files + ["labels.txt", "artifact.json", "preprocess.json"]:
            assert (d / f).is_file(), d / f
        rec = json.loads((d / "artifact.json").read_text())
        assert rec["precision"] == "int8" and len(rec["sha256"]) == 64
        assert rec["calibration_sha256"] == first_run["report"]["data"]["calibration"]["sha256"]
        assert rec["metrics"]["accuracy"]["top1"] >= 0 and rec["status"] == "passed"
        assert (d / "labels.txt").read_text().split() == ["horizontal", "vertical", "diagonal"]


def test_rerun_runs_no_stage(first_run):
    res = _run(first_run["path"])
    assert res.exit_code == 0, res.output
    report = json.loads((first_run["dir"] / "out" / "report.json").read_text())
    assert report["stages"] and all(s["cached"] for s in report["stages"])
    assert "0 ran" in res.output


def test_changing_one_parameter_reruns_only_what_depends_on_it(first_run):
    cfg = dict(first_run["cfg"])
    cfg["targets"] = [{"name": "tflite-arm", "options": {"int8_io": False}}, {"name": "openvino-cpu"}]
    path = write_config(first_run["dir"] / "changed.yaml", cfg)
    res = _run(path)
    assert res.exit_code == 0, res.output
    report = json.loads((first_run["dir"] / "out" / "report.json").read_text())
    ran = sorted(s["stage"] for s in report["stages"] if not s["cached"])
    assert ran == ["accuracy-tflite-arm-int8", "latency-tflite-arm-int8", "layers-tflite-arm-int8",
                   "probe-tflite-arm-int8", "tflite-int8"]


def test_failed_gate_exits_1_and_names_the_gate(first_run):
    cfg = dict(first_run["cfg"], gates={"max_top1_drop": 10.0, "max_p90_ms": 0.001})
    res = _run(write_config(first_run["dir"] / "gate.yaml", cfg))
    assert res.exit_code == 1
    report = json.loads((first_run["dir"] / "out" / "report.json").read_text())
    rows = report["artifacts"][1:]
    assert all(r["status"] == "failed" for r in rows)
    assert all(any("max_p90_ms 0.001" in reason for reason in r["reasons"]) for r in rows)


def test_bad_config_exits_2_without_output(tmp_path, tiny_assets):
    cfg = tiny_config(tiny_assets, tmp_path / "out", threads=0)
    res = _run(write_config(tmp_path / "p.yaml", cfg))
    assert res.exit_code == 2
    assert "threads" in res.output
    assert not (tmp_path / "out").exists()


def test_bad_model_file_exits_2(tmp_path, tiny_assets):
    bogus = tmp_path / "model.keras"
    bogus.write_bytes(b"\x00\x01not a zip")
    cfg = tiny_config(tiny_assets, tmp_path / "out", model={"path": str(bogus)})
    res = _run(write_config(tmp_path / "p.yaml", cfg))
    assert res.exit_code == 2
    assert "expected a .keras zip archive" in res.output
    assert not (tmp_path / "out" / "report.json").exists()


def test_savedmodel_input_runs_end_to_end(tmp_path, tiny_assets):
    import keras
    import tensorflow as tf

    model = keras.saving.load_model(tiny_assets["model"], compile=False)
    sm = tmp_path / "user_savedmodel"
    model.export(str(sm), format="tf_saved_model", verbose=False,
                 input_signature=[tf.TensorSpec((None, 71, 71, 3), tf.float32, name="image")])
    cfg = tiny_config(tiny_assets, tmp_path / "out", model={"path": str(sm)},
                      targets=[{"name": "tflite-arm", "options": {"precisions": ["fp32"]}}])
    res = _run(write_config(tmp_path / "p.yaml", cfg))
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    ref, tfl = report["artifacts"]
    assert ref["artifact"] == "savedmodel/fp32 (reference)"
    assert tfl["accuracy"]["agreement"] == 1.0 and tfl["accuracy"]["drop_points"] == 0.0


@pytest.mark.parametrize("make, expected", [
    (lambda p: p / "nope.keras", "no such file or directory"),
    (lambda p: (p / "emptydir").mkdir() or p / "emptydir", "a directory without saved_model.pb"),
])
def test_missing_or_non_savedmodel_path_exits_2(tmp_path, tiny_assets, make, expected):
    cfg = tiny_config(tiny_assets, tmp_path / "out", model={"path": str(make(tmp_path))})
    res = _run(write_config(tmp_path / "p.yaml", cfg))
    assert res.exit_code == 2
    assert expected in res.output


def test_device_targets_without_compiler_or_device_are_partial_exit_3(first_run):
    """No edgetpu_compiler and no NPU here: each row is built, validated on the CPU and says what is missing."""
    import targets

    have = [t for t in ("coral-edgetpu", "openvino-npu") if targets.get(t).host_status()["host"]["compiler"]
            or targets.get(t).host_status()["host"]["device"]]
    if have:
        pytest.skip("this host has an Edge TPU toolchain or an NPU")
    cfg = dict(first_run["cfg"], targets=[{"name": "tflite-arm", "options": {"precisions": ["int8"]}},
                                          {"name": "coral-edgetpu"}, {"name": "openvino-npu"}])
    res = _run(write_config(first_run["dir"] / "devices.yaml", cfg))
    assert res.exit_code == 3, res.output
    report = json.loads((first_run["dir"] / "out" / "report.json").read_text())
    rows = {r["artifact"]: r for r in report["artifacts"]}
    assert rows["tflite-arm/int8"]["status"] == "passed" and report["exit_code"] == 3
    coral, npu = rows["coral-edgetpu/int8"], rows["openvino-npu/int8"]
    assert coral["status"] == npu["status"] == "partial"
    assert coral["reasons"][0].startswith("not compiled: edgetpu_compiler not installed")
    assert coral["latency"] == {"skipped": coral["reasons"][1]} and "no Edge TPU" in coral["reasons"][1]
    assert coral["accuracy"]["agreement"] == rows["tflite-arm/int8"]["accuracy"]["agreement"]  # same int8 model
    assert npu["reasons"][0].startswith("not compiled: no NPU device") and npu["accuracy"]["n_images"] == 54
    assert coral["target_info"]["edgetpu"]["preflight"]["all_on_edgetpu"] is True
    d = first_run["dir"] / "out" / "artifacts" / "coral-edgetpu-int8"
    assert {"model_int8.tflite", "preflight.json", "preflight.txt", "artifact.json"} <= {p.name for p in d.iterdir()}
    assert json.loads((d / "artifact.json").read_text())["status"] == "partial"
    ran = {s["stage"] for s in report["stages"] if not s["cached"]}
    assert "tflite-int8" not in ran  # the Edge TPU model is tflite-arm's cached conversion
    assert "partial" in res.output and "not compiled: edgetpu_compiler" in res.output


def test_exit_code_precedence():
    from pipeline.validators.gates import exit_code

    assert exit_code(["reference", "passed"]) == 0
    assert exit_code(["reference", "passed", "partial"]) == 3
    assert exit_code(["reference", "partial", "failed"]) == 1  # a failure wins over partial
    assert exit_code(["reference", "partial", "error"]) == 1
