"""`edgepipe validate` and `edgepipe bench` on artifacts edgepipe did not build: a .tflite
converted with tf.lite directly and an OpenVINO IR from ov.convert_model, with nothing
beside them (no preprocess.json, no labels.txt)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures import tiny_xception

pytestmark = pytest.mark.heavy(seconds=25)  # worker-seconds measured: longest first (tests/fixtures/scheduling.py)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def foreign(tiny_assets, tmp_path_factory):
    import keras
    import openvino as ov
    import tensorflow as tf

    d = tmp_path_factory.mktemp("foreign")
    model = keras.saving.load_model(tiny_assets["model"], compile=False)
    sm = d / "savedmodel"
    model.export(str(sm), format="tf_saved_model", verbose=False)
    tfl = d / "tfl" / "classifier.tflite"
    tfl.parent.mkdir()
    tfl.write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(sm)).convert())
    ir = d / "ir" / "classifier.xml"
    ov.save_model(ov.convert_model(str(sm)), str(ir), compress_to_fp16=False)
    # the answer the validators must reproduce: the Keras model's own top-1 on the same 60 images
    from edgepipe.calibration.dataset import load_subset
    from edgepipe.calibration.preprocess import PreprocessSpec
    from edgepipe.config.schema import SplitSpec, Subset

    batch = load_subset(Subset(source=str(tiny_assets["data"]), split="all", size=60), SplitSpec(),
                        list(tiny_xception.CLASSES), PreprocessSpec(71, 71), "test data")
    pred = model.predict(batch.images, verbose=0).argmax(1)
    keras_top1 = float((pred == batch.labels).mean())
    # read with the folder names in sorted order as labels (the default without --labels)
    names, srt = np.array(tiny_xception.CLASSES), np.array(sorted(tiny_xception.CLASSES))
    sorted_top1 = float((srt[pred] == names[batch.labels]).mean())
    return {"tflite": tfl, "ir": ir, "data": tiny_assets["data"], "keras_top1": keras_top1,
            "sorted_top1": sorted_top1, "dir": d}


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", "edgepipe.cli.app", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=600, cwd=ROOT)


def test_validate_foreign_tflite_json(foreign):
    r = _cli("validate", foreign["tflite"], "--data", foreign["data"], "--preprocessing", "xception",
             "--limit", 60, "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout)  # stdout is the JSON document and nothing else
    assert res["format"] == "tflite" and res["precision"] == "fp32" and res["labels"] == sorted(tiny_xception.CLASSES)
    acc = res["accuracy"]
    assert acc["n_images"] == 60 and acc["top5_k"] == 3 and acc["top5"] == 1.0
    assert res["preprocess"]["height"] == 71 and res["preprocess"]["mode"] == "xception"
    assert np.array(acc["confusion"]).sum() == 60
    # labels default to the sorted sub-folder names, which is not this model's class order: the
    # numbers are what that mapping gives, and stderr says so
    assert acc["top1"] == pytest.approx(foreign["sorted_top1"], abs=1 / 60 + 1e-9)
    assert "sorted sub-folder names" in " ".join(r.stderr.split())


def test_validate_foreign_ir_against_foreign_tflite_reference(foreign, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(tiny_xception.CLASSES) + "\n")
    r = _cli("validate", foreign["ir"], "--data", foreign["data"], "--labels", labels, "--preprocessing", "xception",
             "--limit", 60, "--reference", foreign["tflite"], "--max-top1-drop", 1.0, "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout)
    acc = res["accuracy"]
    assert res["format"] == "openvino-ir" and res["reference"]["format"] == "tflite"
    assert acc["top1"] == pytest.approx(foreign["keras_top1"], abs=1 / 60 + 1e-9)
    assert acc["agreement"] == 1.0 and acc["drop_points"] == 0.0 and acc["drop_within_noise"]
    assert acc["drop_ci95_points"] == [0.0, 0.0]
    assert res["parity"]["passed"] and res["parity"]["cosine_min"] > 0.9999 and res["parity"]["max_abs"] < 1e-3
    assert [c["label"] for c in acc["per_class"]] == tiny_xception.CLASSES


def test_bench_foreign_tflite_json(foreign):
    r = _cli("bench", foreign["tflite"], "--data", foreign["data"], "--preprocessing", "xception", "--runs", 30,
             "--warmup", 2, "--threads", 1, "--images", 20, "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout)
    lat = res["latency"]
    assert lat["runs"] == 30 and lat["images"] == 20 and lat["threads"] == 1
    assert 0 < lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"]
    assert lat["p50_ci95_ms"][0] <= lat["p50_ms"] <= lat["p50_ci95_ms"][1]
    assert lat["load_ms"] > 0 and lat["first_ms"] > 0 and lat["throughput_ips"] > 0
    assert lat["peak_rss_mb"] > lat["rss_baseline_mb"] > 0 and lat["rss_scope"] == "child process"
    e2e = lat["end_to_end"]
    assert e2e["runs"] == 30 and 0 < e2e["preprocess_p50_ms"] and e2e["p50_ms"] > lat["p50_ms"] * 0.5
    env = res["environment"]
    assert env["cpu"] and "isa_flags" in env and env["tools"]["ai-edge-litert"]


def test_bench_foreign_ir_with_thread_sweep(foreign, tiny_assets):
    import keras
    from rich.console import Console

    from edgepipe.engine.standalone import render
    from edgepipe.validators import roofline

    r = _cli("bench", foreign["ir"], "--data", foreign["data"], "--preprocessing", "xception", "--runs", 20,
             "--images", 10, "--thread-sweep", "1,2", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout)
    lat = result["latency"]
    assert lat["runtime"] == "openvino" and lat["inference_precision"]
    assert [s["threads"] for s in lat["thread_sweep"]] == [1, 2]
    assert all(s["p50_ms"] <= s["p90_ms"] for s in lat["thread_sweep"])
    # the foreign file's work per image, counted in the child, and the p50's share of this CPU's FP32 peak
    model = keras.saving.load_model(tiny_assets["model"], compile=False)
    assert lat["macs_per_image"] == tiny_xception.keras_macs(model), lat.get("macs_note")
    console = Console(record=True, width=400)
    console.print(render(result))
    text = console.export_text()
    if roofline.host_peak() is None:  # a CPU without a row in roofline.PEAKS: nothing claims a share
        assert "roofline" not in lat and "roofline" not in text
        return
    roof = lat["roofline"]
    assert roof["of_peak"] == "fp32" and roof["cores"] == 2 and roof["macs_per_image"] == lat["macs_per_image"]
    assert roof["share"] == round(roofline.share(lat["p50_ms"], roof["macs_per_image"], roof["peak_macs_per_s"]), 4)
    assert f"{100 * roof['share']:.0f}% of FP32" in text


def test_bench_gate_failure_exits_1(foreign):
    r = _cli("bench", foreign["tflite"], "--data", foreign["data"], "--preprocessing", "xception", "--runs", 10,
             "--images", 5, "--max-p90-ms", 0.0001)
    assert r.returncode == 1 and "max_p90_ms" in r.stderr


@pytest.mark.parametrize("args, message", [
    (["validate", "{tflite}", "--data", "{data}"], "edgepipe never guesses"),
    (["validate", "{tflite}", "--data", "{data}", "--preprocessing", "xception", "--size", "64", "64"],
     "the model's input size (H, W, C) = (71, 71, 3)"),
    (["validate", "{tflite}", "--data", "{data}", "--preprocessing", "sideways"], "preprocessing: expected one of"),
    (["validate", "{tflite}", "--data", "{data}", "--preprocessing", "xception", "--labels", "{four_labels}"],
     "expected 3 labels (the model's outputs)"),
    (["validate", "{tflite}", "--data", "{data}", "--preprocessing", "xception", "--labels", "{two_labels}"],
     "expected class sub-folders named after the labels ['a', 'b']"),
    (["validate", "{tflite}", "--data", "{data}", "--preprocessing", "xception", "--max-top1-drop", "1"],
     "--reference OTHER_ARTIFACT"),
    (["validate", "{bogus}", "--data", "{data}", "--preprocessing", "xception"], "a .tflite, .xml"),
    (["validate", "{garbage}", "--data", "{data}", "--preprocessing", "xception"], "a loadable tflite model"),
    (["bench", "{tflite}", "--preprocessing", "xception"], "never random tensors"),
    (["bench", "{tflite}", "--data", "{data}", "--preprocessing", "xception", "--thread-sweep", "1,x"],
     "--thread-sweep: expected comma-separated positive integers"),
])
def test_bad_input_exits_2_with_a_clear_message(foreign, tmp_path, args, message):
    (tmp_path / "two.txt").write_text("a\nb\n")
    (tmp_path / "four.txt").write_text("\n".join([*tiny_xception.CLASSES, "extra"]))
    (tmp_path / "model.pt").write_bytes(b"x")
    (tmp_path / "garbage.tflite").write_bytes(b"not a flatbuffer at all")
    paths = {"tflite": foreign["tflite"], "data": foreign["data"], "two_labels": tmp_path / "two.txt",
             "four_labels": tmp_path / "four.txt",
             "bogus": tmp_path / "model.pt", "garbage": tmp_path / "garbage.tflite"}
    r = _cli(*[a.format(**paths) for a in args])
    assert r.returncode == 2, (r.stdout, r.stderr[-2000:])
    assert r.stdout == ""
    assert message in " ".join(r.stderr.split()), r.stderr[-2000:]


def _nchw_onnx(path: Path) -> Path:
    """A hand-built ONNX classifier with an NCHW input and a symbolic batch: softmax of the
    per-channel means (class i = channel i), so its predictions are known in closed form."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["flat"]),
             helper.make_node("Softmax", ["flat"], ["scores"], axis=1)]
    graph = helper.make_graph(nodes, "channel_means",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 71, 71])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_validate_and_bench_foreign_onnx_nchw(foreign, tmp_path):
    from edgepipe.calibration.dataset import load_subset
    from edgepipe.calibration.preprocess import PreprocessSpec
    from edgepipe.config.schema import SplitSpec, Subset

    model = _nchw_onnx(tmp_path / "means.onnx")
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(tiny_xception.CLASSES))
    r = _cli("validate", model, "--data", foreign["data"], "--labels", labels, "--preprocessing", "unit",
             "--limit", 60, "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout)
    batch = load_subset(Subset(source=str(foreign["data"]), split="all", size=60), SplitSpec(),
                        list(tiny_xception.CLASSES), PreprocessSpec(71, 71, mode="unit"), "test data")
    expected = float((batch.images.mean(axis=(1, 2)).argmax(1) == batch.labels).mean())
    assert res["format"] == "onnx" and res["precision"] == "fp32" and res["runtime"] == "onnxruntime"
    assert res["accuracy"]["top1"] == pytest.approx(expected)
    r = _cli("bench", model, "--data", foreign["data"], "--preprocessing", "unit", "--runs", 20, "--images", 5,
             "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    lat = json.loads(r.stdout)["latency"]
    assert lat["runtime"] == "onnxruntime" and lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"]
