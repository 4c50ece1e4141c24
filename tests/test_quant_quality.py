"""INT8 quality on the tiny Xception: the ONNX Runtime quantizer, recipes reaching the toolchains,
per-layer error reports, calibration hashes, and the cross-quantizer check on a broken artifact."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgepipe.cli.app import app
from edgepipe.diagnostics.layer_errors import keras_layer_names
from tests.fixtures.configs import INPUT, tiny_config, write_config
from tests.fixtures.tiny_runs import copy_run

pytestmark = pytest.mark.heavy(seconds=11)  # worker-seconds measured: longest first (tests/fixtures/scheduling.py)

INT8 = ["tflite-arm/int8", "openvino-cpu/int8", "onnx-cpu/int8"]


def _run(tmp, cfg, name="pipeline.yaml"):
    path = write_config(tmp / name, cfg)
    res = CliRunner().invoke(app, ["run", str(path)], catch_exceptions=False)
    report = json.loads((Path(cfg["output"]) / "report.json").read_text())
    return res, report


@pytest.fixture(scope="module")
def three(tiny_full_run, tmp_path_factory):
    """The suite's one cold run of every host target (tests/fixtures/tiny_runs.py), copied here: three
    quantizers; the tests below run again from the copy's stages."""
    run = copy_run(tiny_full_run, tmp_path_factory.mktemp("quality"))
    return {**run, "rows": {r["artifact"]: r for r in run["report"]["artifacts"]}}


def test_three_quantizers_pass_and_agree(three):
    assert three["res"].exit_code == 0, three["res"].output
    rows = three["rows"]
    assert set(INT8) | {"onnx-cpu/fp32"} <= set(rows)
    for name in INT8:
        assert rows[name]["status"] == "passed", rows[name]
        assert rows[name]["cross_quantizer"]["flagged"] is False
    assert three["report"]["cross_quantizer"]["flagged"] == []


def test_onnx_fp32_matches_keras_and_qdq_int8_is_close(three):
    import onnx

    from edgepipe.formats.runners import ONNXRunner

    fp32, int8 = three["rows"]["onnx-cpu/fp32"], three["rows"]["onnx-cpu/int8"]
    assert fp32["accuracy"]["agreement"] == 1.0 and fp32["accuracy"]["drop_points"] == 0.0
    assert int8["accuracy"]["agreement"] >= 0.9 and abs(int8["accuracy"]["drop_points"]) <= 5.0
    path = Path(int8["dir"]) / "model_int8.onnx"
    model = onnx.load(str(path))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") > 10 and ops.count("DequantizeLinear") > 10
    runner = ONNXRunner(path, 1)
    assert runner.shape == (1, INPUT, INPUT, 3)  # tf2onnx kept the Keras NHWC input
    out = runner.predict(np.zeros((INPUT, INPUT, 3), np.float32))
    assert out.shape == (3,) and np.isfinite(out).all()


def test_every_int8_artifact_records_calibration_hash_and_recipe(three):
    calib = three["report"]["data"]["calibration"]["sha256"]
    for name in INT8:
        rec = json.loads((Path(three["rows"][name]["dir"]) / "artifact.json").read_text())
        assert rec["calibration_sha256"] == calib, name
        assert rec["recipe"]["name"] == "default" and rec["recipe"]["weights"] == "per_channel"


def test_per_layer_report_names_keras_layers(three, tiny_assets):
    known = keras_layer_names(tiny_assets["model"])
    for name in INT8:
        rows = three["rows"][name]["per_layer"]
        assert 5 <= len(rows) <= 25, name
        snr = [r["snr_db"] for r in rows]
        assert snr == sorted(snr), "worst (lowest SNR) first"
        named = [r for r in rows if r["layer"] in known]
        assert len(named) >= 0.8 * len(rows), (name, [r["layer"] for r in rows])
        assert any("sepconv" in r["layer"] for r in rows)
        for r in rows:
            assert r["mse"] >= 0 and -1.0 <= r["cosine"] <= 1.0 + 1e-9 and r["op"]
        assert min(r["cosine"] for r in rows) > 0.5  # a working quantizer: tensors still point the same way
        rec = json.loads((Path(three["rows"][name]["dir"]) / "artifact.json").read_text())
        assert rec["per_layer"] == rows


def _corrupt_weight_scales(path):
    """A genuinely broken QDQ model: every weight DequantizeLinear scale multiplied by random factors."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    rng = np.random.default_rng(0)
    n = 0
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits and node.input[1] in inits:
            scale = numpy_helper.to_array(inits[node.input[1]])
            bad = (scale * rng.uniform(-30, 30, scale.shape)).astype(scale.dtype)
            inits[node.input[1]].CopyFrom(numpy_helper.from_array(bad, node.input[1]))
            n += 1
    assert n > 5
    onnx.save(model, str(path))


def _as_if_the_stage_wrote_it(entry: Path) -> None:
    """Record the entry's files as they are now: the cache serves its content (a damaged entry is recomputed)."""
    from edgepipe.core.cache import FILES, MARKER, file_record

    marker = entry / MARKER
    marker.write_text(json.dumps({**json.loads(marker.read_text()), FILES: file_record(entry)}))


def test_cross_quantizer_check_fails_a_broken_artifact(three):
    d = three["dir"] / "broken"
    d.mkdir()
    shutil.copytree(three["dir"] / "out" / "stages", d / "out" / "stages")
    (qdq,) = (d / "out" / "stages").glob("onnx-qdq-int8-*")
    _corrupt_weight_scales(qdq / "model_int8.onnx")
    _as_if_the_stage_wrote_it(qdq)  # a quantizer that produced a broken model, not a damaged cache entry
    res, report = _run(d, {**three["cfg"], "output": str(d / "out")})
    assert res.exit_code == 1, res.output
    rows = {r["artifact"]: r for r in report["artifacts"]}
    bad = rows["onnx-cpu/int8"]
    assert bad["status"] == "failed" and bad["cross_quantizer"]["flagged"] is True
    assert any("cross-quantizer" in r and "below the median" in r for r in bad["reasons"])
    assert rows["tflite-arm/int8"]["status"] == "passed" and rows["openvino-cpu/int8"]["status"] == "passed"
    assert report["cross_quantizer"]["flagged"] == ["onnx-cpu/int8"]
    rec = json.loads((Path(bad["dir"]) / "artifact.json").read_text())
    assert rec["status"] == "failed" and rec["cross_quantizer"]["flagged"] is True
    assert "cross-quantizer check" in res.output


def test_recipes_reach_the_toolchains(three, tiny_assets):
    """per-tensor weights + a 12-image calibration subset for TFLite; KL calibration for ORT, on the config-wide
    `quantization.calibration_size` (20 of the 30 images; the TFLite recipe's own 12 wins over it)."""
    from edgepipe.formats.runners import TFLiteRunner

    d = three["dir"] / "recipes"
    d.mkdir()
    shutil.copytree(three["dir"] / "out" / "stages", d / "out" / "stages")
    cfg = tiny_config(tiny_assets, d / "out", targets=[
        {"name": "tflite-arm", "options": {"precisions": ["int8"], "recipe": "small-per-tensor"}},
        {"name": "onnx-cpu", "options": {"precisions": ["int8"], "recipe": "kl"}}],
        quantization={"recipes": {"small-per-tensor": {"weights": "per_tensor", "calibration_size": 12}},
                      "calibration_size": 20})
    res, report = _run(d, cfg)
    assert res.exit_code == 0, res.output
    rows = {r["artifact"]: r for r in report["artifacts"]}
    tfl, ort = rows["tflite-arm/int8"], rows["onnx-cpu/int8"]
    assert tfl["sha256"] != three["rows"]["tflite-arm/int8"]["sha256"]
    assert ort["sha256"] != three["rows"]["onnx-cpu/int8"]["sha256"]
    # the calibration subset has its own hash, recorded in the artifact
    assert tfl["calibration_sha256"] != report["data"]["calibration"]["sha256"]
    assert ort["calibration_sha256"] not in (report["data"]["calibration"]["sha256"], tfl["calibration_sha256"])
    assert tfl["recipe"]["calibration_size"] == 12 and ort["recipe"]["calibration"] == "kl"
    assert ort["recipe"]["calibration_size"] == 20 and report["data"]["quantization_calibration_size"] == 20
    # per-tensor: every conv filter of the TFLite model has a single scale
    r = TFLiteRunner(Path(tfl["dir"]) / "model_int8.tflite", 1)
    filters = [r.interp._get_tensor_details(op["inputs"][1], 0) for op in r.interp._get_ops_details()
               if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    assert filters and all(len(f["quantization_parameters"]["scales"]) == 1 for f in filters)
    base = TFLiteRunner(Path(three["rows"]["tflite-arm/int8"]["dir"]) / "model_int8.tflite", 1)
    base_filters = [base.interp._get_tensor_details(op["inputs"][1], 0) for op in base.interp._get_ops_details()
                    if op["op_name"] == "CONV_2D"]
    assert any(len(f["quantization_parameters"]["scales"]) > 1 for f in base_filters)
    ran = {s["stage"].split("-")[0] for s in report["stages"] if not s["cached"]}
    assert "savedmodel" not in ran  # only the stages whose recipe changed ran again
