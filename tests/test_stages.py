"""Each conversion stage on the tiny Xception, with real TensorFlow, LiteRT, OpenVINO, NNCF."""

from __future__ import annotations

import numpy as np
import pytest

from edgepipe.calibration.dataset import load_subset
from edgepipe.calibration.preprocess import PreprocessSpec
from edgepipe.config.schema import parse_config
from edgepipe.core.errors import InputError
from edgepipe.formats.runners import KerasRunner, OpenVINORunner, TFLiteRunner
from edgepipe.quantize.quantizers import nncf as nncf_quantizer
from edgepipe.quantize.recipes import BUILTIN
from edgepipe.stages import openvino as ov_stage
from edgepipe.stages.keras_model import load_keras, verify_io
from tests.fixtures.configs import INPUT, tiny_config
from tests.fixtures.tiny_runs import stage_output


@pytest.fixture(scope="module")
def env(tiny_assets, tiny_full_run, tmp_path_factory):
    """The tiny model, its images and Keras scores; its SavedModel and TFLite models are the session cold run's
    stages (made by the functions tested here, read only), so what a test converts itself is what it checks."""
    cfg = parse_config(tiny_config(tiny_assets, tmp_path_factory.mktemp("o")))
    spec = PreprocessSpec.from_input(cfg.input)
    labels = cfg.data.labels
    calib = load_subset(cfg.data.calibration, cfg.data.splits, labels, spec, "calibration")
    test = load_subset(cfg.data.validation, cfg.data.splits, labels, spec, "validation")
    model = load_keras(tiny_assets["model"])
    ref = KerasRunner(model).predict_batch(test.images)
    return {"model": model, "sm": stage_output(tiny_full_run, "savedmodel", "saved_model"), "calib": calib,
            "test": test, "ref": ref, "spec": spec, "tmp": tmp_path_factory,
            "tflite_fp32": stage_output(tiny_full_run, "tflite-fp32", "model_fp32.tflite"),
            "tflite_int8": stage_output(tiny_full_run, "tflite-int8", "model_int8.tflite")}


def _scores(runner, images):
    return np.stack([runner.predict(im) for im in images])


def test_tiny_model_is_trained_and_has_xception_structure(tiny_assets, env):
    import keras

    model = env["model"]
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("SeparableConv2D") >= 6 + 3 * 2 + 4
    assert sum(isinstance(layer, keras.layers.Add) for layer in model.layers) >= 3 + 2 + 1
    top1 = float((env["ref"].argmax(1) == env["test"].labels).mean())
    assert top1 >= 0.8, f"fixture under-trained: test top-1 {top1:.2f}"


def test_verify_io_rejects_mismatched_shape_and_classes(env):
    with pytest.raises(InputError, match=r"expected model input \(H, W, C\) = \(96, 96, 3\).*Received: \(71, 71, 3\)"):
        verify_io(env["model"], (96, 96, 3), 3, "model")
    with pytest.raises(InputError, match=r"expected model output \(5,\) for 5 labels. Received: \(3,\)"):
        verify_io(env["model"], (INPUT, INPUT, 3), 5, "model")


def test_tflite_fp32_matches_keras(env):
    runner = TFLiteRunner(env["tflite_fp32"], 2)
    assert runner.inp["dtype"] == np.float32 and tuple(runner.inp["shape"]) == (1, INPUT, INPUT, 3)
    out = _scores(runner, env["test"].images[:16])
    np.testing.assert_allclose(out, env["ref"][:16], atol=1e-4)


def test_tflite_int8_is_full_integer_and_agrees(env):
    runner = TFLiteRunner(env["tflite_int8"], 2)  # int8 I/O: tflite-arm's default
    assert runner.inp["dtype"] == np.int8 and runner.out["dtype"] == np.int8
    ops = runner.interp._get_ops_details()
    float_ops = [o["op_name"] for o in ops
                 if any(runner.interp._get_tensor_details(i, 0)["dtype"] == np.float32
                        for i in list(o["inputs"]) + list(o["outputs"]) if i >= 0)]
    assert float_ops == [], f"ops with float tensors in a full-integer model: {float_ops}"
    out = _scores(runner, env["test"].images)
    agree = float((out.argmax(1) == env["ref"].argmax(1)).mean())
    assert agree >= 0.9


def test_openvino_ir_fp32_matches_keras(env):
    import logging

    root = logging.getLogger()
    before = (root.level, list(root.handlers))
    path = ov_stage.convert_ir(env["sm"], env["tmp"].mktemp("ov"), env["spec"].shape)
    # ovc sets the root logger to ERROR, which silenced edgepipe's warnings for the rest of a run
    assert (root.level, list(root.handlers)) == before
    assert path.with_suffix(".bin").is_file()
    out = _scores(OpenVINORunner(path, 2), env["test"].images[:16])
    np.testing.assert_allclose(out, env["ref"][:16], atol=1e-4)
    env["ir"] = path


def test_nncf_int8_ir_is_quantized_and_agrees(env):
    import openvino as ov

    ir = env.get("ir") or ov_stage.convert_ir(env["sm"], env["tmp"].mktemp("ov2"), env["spec"].shape)
    path = nncf_quantizer.quantize_nncf(ir, env["tmp"].mktemp("nncf"), env["calib"].images)
    fq = [op for op in ov.Core().read_model(str(path)).get_ops() if op.get_type_name() == "FakeQuantize"]
    assert len(fq) > 10
    out = _scores(OpenVINORunner(path, 2), env["test"].images)
    agree = float((out.argmax(1) == env["ref"].argmax(1)).mean())
    assert agree >= 0.9


def test_runner_refuses_wrong_layout(env):
    path = env["tflite_fp32"]
    with pytest.raises(InputError, match=r"expected shape \(1, 71, 71, 3\) \(NHWC\). Received: \(1, 3, 71, 71\)"):
        TFLiteRunner(path, 1).predict(np.zeros((3, INPUT, INPUT), np.float32))


def test_openvino_ir_and_nncf_int8_are_reproducible_in_one_process(env):
    """Same SavedModel -> same bytes, whatever the output directory and however many models this
    process converted before (OpenVINO names unnamed ops from a process-wide counter)."""
    from edgepipe.core.hashing import sha256_file

    irs = [ov_stage.convert_ir(env["sm"], env["tmp"].mktemp(f"rep{i}"), env["spec"].shape) for i in range(2)]
    assert sha256_file(irs[0]) == sha256_file(irs[1]) and irs[0].parent != irs[1].parent
    assert str(env["tmp"].getbasetemp()) not in irs[0].read_text()  # no absolute path inside
    calib = env["calib"].images[:10]
    q = [nncf_quantizer.quantize_nncf(ir, env["tmp"].mktemp(f"repq{i}"), calib, BUILTIN["nncf-mixed"])
         for i, ir in enumerate(irs)]
    assert sha256_file(q[0]) == sha256_file(q[1])
    assert sha256_file(q[0].with_suffix(".bin")) == sha256_file(q[1].with_suffix(".bin"))
