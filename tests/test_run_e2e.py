"""End-to-end `edgepipe run` on the tiny Xception: artifacts, report, cache, gates, exit codes."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from edgepipe.cli.app import app
from tests.fixtures.configs import tiny_config, write_config
from tests.fixtures.tiny_runs import copy_run

pytestmark = pytest.mark.heavy(seconds=18)  # worker-seconds measured: longest first (tests/fixtures/scheduling.py)

runner = CliRunner()

EXPECTED = ["keras/fp32 (reference)", "tflite-arm/fp32", "tflite-arm/int8", "openvino-cpu/fp32", "openvino-cpu/int8",
            "onnx-cpu/fp32", "onnx-cpu/int8"]


def _run(cfg_path, *args):
    return runner.invoke(app, ["run", str(cfg_path), *args], catch_exceptions=False)


@pytest.fixture(scope="module")
def first_run(tiny_full_run, tmp_path_factory):
    """The suite's one cold run of every host target (tests/fixtures/tiny_runs.py), copied here: the tests
    below check the cold run and run again into the copy."""
    return copy_run(tiny_full_run, tmp_path_factory.mktemp("e2e"))


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


def test_first_run_profile_says_where_the_time_went(first_run):
    prof = first_run["report"]["profile"]
    kinds = prof["by_kind"]
    # every stage mapped to a kind by the one table (nothing "other"), each counted once
    assert {"reference", "convert", "quantize", "compile", "probe", "accuracy", "latency", "diagnose", "load"} \
        <= set(kinds) and "other" not in kinds
    assert sum(k["ran"] for name, k in kinds.items() if name != "load") == len(first_run["report"]["stages"])
    assert [s["stage"] for s in prof["stages"]] == [s["stage"] for s in first_run["report"]["stages"]]
    assert {x["what"] for x in prof["loads"]} >= {"validation images", "calibration images", "keras model"}
    for name in ("reference", "convert", "quantize", "accuracy", "latency", "diagnose", "load"):
        assert kinds[name]["wall_seconds"] > 0 and kinds[name]["cpu_seconds"] > 0, (name, kinds[name])
    # the latency stages' child processes are in their CPU time; own times add up to no more than the run
    own = sum(k["wall_seconds"] for k in kinds.values())
    assert own <= prof["run"]["wall_seconds"] + 0.1 and prof["run"]["cpu_seconds"] > 0
    assert abs(own + prof["outside_stages"]["wall_seconds"] - prof["run"]["wall_seconds"]) < 0.1
    assert "time by kind" in first_run["res"].output and "quantize" in first_run["res"].output


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
    # the warm run's profile: no stage ran, no model was loaded (images are, for their hash), and what the
    # cache saved (what the stages cost when they ran)
    kinds, loads = report["profile"]["by_kind"], report["profile"]["loads"]
    assert all(k["ran"] == 0 for name, k in kinds.items() if name != "load"), kinds
    assert "keras model" not in {x["what"] for x in loads}, loads
    assert kinds["accuracy"]["cached_cost_wall_seconds"] > 0 and kinds["quantize"]["cached_cost_cpu_seconds"] > 0


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


def test_fidelity_of_every_quantized_artifact_is_reported_and_gated(first_run):
    """Agreement (CI), output SNR, KL and flips on each INT8 row (report.json, terminal, HTML, model card);
    `min_output_snr_db` fails an artifact below it, naming the gate; float rows have parity, not fidelity."""
    report = first_run["report"]
    rows = {r["artifact"]: r for r in report["artifacts"]}
    for name, row in rows.items():
        if name.endswith("/int8"):
            fid = row["fidelity"]
            assert fid["agreement"] == pytest.approx(row["accuracy"]["agreement"])
            lo, hi = fid["agreement_ci95"]
            assert lo <= fid["agreement"] <= hi and fid["flipped"] == len(fid["flips"])
            assert fid["output_snr_db"] > 0 and fid["kl_mean"] >= 0
        elif name.endswith("/fp32") and "reference" not in name:
            assert row.get("fidelity") is None and row["parity"]
    assert "SNR dB" in first_run["res"].output
    html = (first_run["dir"] / "out" / "report.html").read_text()
    assert "SNR dB" in html
    card = (first_run["dir"] / "out" / "artifacts" / "tflite-arm-int8" / "README.md").read_text()
    assert "output_snr_db" in card and "agreement_ci95" in card

    worst = min(r["fidelity"]["output_snr_db"] for r in rows.values() if r.get("fidelity"))
    cfg = dict(first_run["cfg"], gates={"max_top1_drop": 10.0, "min_output_snr_db": worst + 50.0})
    res = _run(write_config(first_run["dir"] / "fidelity.yaml", cfg))
    assert res.exit_code == 1, res.output
    gated = json.loads((first_run["dir"] / "out" / "report.json").read_text())
    for row in gated["artifacts"]:
        if row["artifact"].endswith("/int8"):
            assert row["status"] == "failed"
            assert any(f"< min_output_snr_db {worst + 50.0:g} dB" in x for x in row["reasons"]), row["reasons"]
        elif row["artifact"].endswith("/fp32") and "reference" not in row["artifact"]:
            assert row["status"] == "passed"
    assert all(s["cached"] for s in gated["stages"] if s["stage"].startswith(("tflite", "nncf", "ov-")))


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


def test_device_targets_without_compiler_or_device_are_not_available_here_exit_0(first_run):
    """No edgetpu_compiler and no NPU here: each row is built, validated on the CPU, says what is missing and
    how to finish it, and does not fail the run; --strict makes the same (cached) run partial, exit 3."""
    from edgepipe import targets

    have = [t for t in ("coral-edgetpu", "openvino-npu") if targets.get(t).host_status()["host"]["compiler"]
            or targets.get(t).host_status()["host"]["device"]]
    if have:
        pytest.skip("this host has an Edge TPU toolchain or an NPU")
    cfg = dict(first_run["cfg"], targets=[{"name": "tflite-arm", "options": {"precisions": ["int8"]}},
                                          {"name": "coral-edgetpu"}, {"name": "openvino-npu"}])
    path = write_config(first_run["dir"] / "devices.yaml", cfg)
    res = _run(path)
    assert res.exit_code == 0, res.output
    report = json.loads((first_run["dir"] / "out" / "report.json").read_text())
    rows = {r["artifact"]: r for r in report["artifacts"]}
    assert rows["tflite-arm/int8"]["status"] == "passed" and report["exit_code"] == 0
    coral, npu = rows["coral-edgetpu/int8"], rows["openvino-npu/int8"]
    assert coral["status"] == npu["status"] == "partial"  # report.json keeps `partial`, and says why
    assert coral["not_available_here"] is npu["not_available_here"] is True
    assert report["not_available_here"] == ["coral-edgetpu/int8", "openvino-npu/int8"] and report["strict"] is False
    assert coral["how_to_finish"] == targets.get("coral-edgetpu").how_to_finish()
    assert "apt-get install edgetpu-compiler" in coral["how_to_finish"]
    assert coral["reasons"][0] == "not compiled: edgetpu_compiler not installed"
    assert coral["latency"] == {"skipped": coral["reasons"][1]} and "no Edge TPU" in coral["reasons"][1]
    assert coral["reasons"][-1].startswith("not available here (missing: edgetpu_compiler")
    assert coral["reasons"][-1].endswith(coral["how_to_finish"])
    assert coral["accuracy"]["agreement"] == rows["tflite-arm/int8"]["accuracy"]["agreement"]  # same int8 model
    assert npu["reasons"][0].startswith("not compiled: no NPU device") and npu["accuracy"]["n_images"] == 54
    assert "linux-npu-driver" in npu["how_to_finish"]
    assert npu["target_info"]["npu"]["quantization"]["reuses_cpu_ir"] is False  # and says why not
    assert "target_device=NPU" in npu["target_info"]["npu"]["quantization"]["why_not"]
    assert coral["target_info"]["edgetpu"]["preflight"]["all_on_edgetpu"] is True
    d = first_run["dir"] / "out" / "artifacts" / "coral-edgetpu-int8"
    assert {"model_int8.tflite", "preflight.json", "preflight.txt", "artifact.json"} <= {p.name for p in d.iterdir()}
    record = json.loads((d / "artifact.json").read_text())
    assert record["status"] == "partial" and record["not_available_here"] is True
    assert record["how_to_finish"] == coral["how_to_finish"]
    ran = {s["stage"] for s in report["stages"] if not s["cached"]}
    assert "tflite-int8" not in ran  # the Edge TPU model is tflite-arm's cached conversion
    # ... and, the very same file on the same CPU interpreter, scored once: tflite-arm's scores stage serves both
    assert coral["sha256"] == rows["tflite-arm/int8"]["sha256"] and coral["scores_shared_with"] == "tflite-arm/int8"
    assert not any(s["stage"].startswith("accuracy-coral") for s in report["stages"])
    assert "scores_shared_with" not in npu and any(s["stage"] == "accuracy-openvino-npu-int8" for s in report["stages"])
    flat = " ".join(res.output.replace("│", " ").split())  # the table's cells, whatever the terminal's width
    assert "not available here" in flat and "not compiled: edgetpu_compiler not installed" in flat
    # the way to finish is printed whole, on its own line under the table, not cut in a cell
    assert f"  {coral['how_to_finish']}" in res.output.splitlines()
    html = (first_run["dir"] / "out" / "report.html").read_text()
    assert "not available here" in html and "apt-get install edgetpu-compiler" in html

    strict = _run(path, "--strict")
    assert strict.exit_code == 3, strict.output
    report = json.loads((first_run["dir"] / "out" / "report.json").read_text())
    assert report["exit_code"] == 3 and report["strict"] is True
    assert all(s["cached"] for s in report["stages"])


def test_exit_code_precedence():
    from edgepipe.validators.gates import exit_code, run_exit_code

    assert exit_code(["reference", "passed"]) == 0
    assert exit_code(["reference", "passed", "partial"]) == 3
    assert exit_code(["reference", "partial", "failed"]) == 1  # a failure wins over partial
    assert exit_code(["reference", "partial", "error"]) == 1
    nah = {"status": "partial", "target": "coral-edgetpu", "not_available_here": True}
    rows = [{"status": "reference"}, {"status": "passed", "target": "tflite-arm"}, nah]
    assert run_exit_code(rows) == 0  # not available here: reported, not counted
    assert run_exit_code(rows, strict=True) == 3
    assert run_exit_code(rows, required=["coral-edgetpu"]) == 3
    assert run_exit_code(rows, required=["tflite-arm"]) == 0
    assert run_exit_code([*rows, {"status": "partial", "target": "openvino-cpu"}]) == 3  # other partials count
    assert run_exit_code([*rows, {"status": "failed", "target": "openvino-cpu"}]) == 1
