"""Edge TPU pre-flight on real converted models (tiny Keras models, 32x32x3)."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from edgepipe.core.errors import InputError  # noqa: E402
from edgepipe.targets.edgetpu import preflight as pf  # noqa: E402

tf = pytest.importorskip("tensorflow")
keras = tf.keras

SHAPE = (32, 32, 3)


def _representative():
    rng = np.random.default_rng(0)
    for _ in range(8):
        yield [rng.normal(size=(1, *SHAPE)).astype(np.float32)]


def _convert(model, int8: bool, allow_float_ops: bool = False) -> bytes:
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = _representative
        ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if allow_float_ops:
            ops.append(tf.lite.OpsSet.TFLITE_BUILTINS)
        conv.target_spec.supported_ops = ops
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv.convert()


def _classifier(middle=None):
    inp = keras.Input(shape=SHAPE, batch_size=1)  # static batch 1, as the Edge TPU needs
    x = keras.layers.Conv2D(8, 3, activation="relu")(inp)
    if middle is not None:
        x = middle(x)
    x = keras.layers.SeparableConv2D(16, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(4, activation="softmax")(x)
    return keras.Model(inp, out)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("preflight")
    paths = {}
    model = _classifier()
    for key, data in (("int8", _convert(model, True)), ("float", _convert(model, False))):
        paths[key] = root / f"{key}.tflite"
        paths[key].write_bytes(data)
    paths["int8_model"] = model
    cumsum = _classifier(keras.layers.Lambda(lambda x: tf.math.cumsum(x, axis=1)))
    try:
        data = _convert(cumsum, True)
    except Exception:  # no int8 CUMSUM kernel: let it stay float, between (de)quantize ops
        data = _convert(cumsum, True, allow_float_ops=True)
    paths["cumsum"] = root / "cumsum.tflite"
    paths["cumsum"].write_bytes(data)
    return paths


def test_int8_model_all_on_edgetpu(models):
    report = pf.analyze(models["int8"])
    names = [op.op for op in report.ops]
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "SOFTMAX"} <= set(names), names
    assert report.cpu_from_index is None, [(op.op, op.reasons) for op in report.ops if not op.supported]
    assert all(op.supported and op.placement == "edgetpu" and not op.reasons for op in report.ops)
    assert [op.index for op in report.ops] == list(range(len(report.ops)))
    assert report.ops[0].inputs[0].dtype == "int8" and report.ops[0].inputs[0].shape == (1, *SHAPE)
    # int8 weights (1 byte) + int32 biases (4 bytes), as Keras counts them; the converter may add a
    # few small constants (reshape shapes, per-channel scales are not buffers), so allow a margin.
    expected = 0
    for w in models["int8_model"].weights:
        n = int(np.prod(w.shape))
        expected += 4 * n if len(w.shape) == 1 else n
    assert report.param_bytes > 0
    assert abs(report.param_bytes - expected) <= 0.1 * expected + 64, (report.param_bytes, expected)
    assert report.fits_in_sram and report.recommended_segments == 1
    js = report.to_json()
    assert js["cpu_from_index"] is None and js["ops"][0]["placement"] == "edgetpu" and js["all_on_edgetpu"]


def test_float_model_falls_back_from_first_op(models):
    report = pf.analyze(models["float"])
    first = report.ops[0]
    assert report.cpu_from_index == 0
    assert not first.supported and any("float32" in r for r in first.reasons), first.reasons
    assert all(op.placement == "cpu" for op in report.ops)


def test_unsupported_op_is_first_cpu_op(models):
    report = pf.analyze(models["cumsum"])
    names = [op.op for op in report.ops]
    assert "CUMSUM" in names, names
    cut = report.cpu_from_index
    assert cut is not None and cut <= names.index("CUMSUM")
    assert names[cut] in {"CUMSUM", "DEQUANTIZE"}  # DEQUANTIZE only when it feeds the float CUMSUM
    assert names[:cut] and all(op.placement == "edgetpu" and op.supported for op in report.ops[:cut])
    assert "CONV_2D" in names[:cut]
    assert all(op.placement == "cpu" for op in report.ops[cut:])
    cumsum = report.ops[names.index("CUMSUM")]
    assert not cumsum.supported and any("supported-operations table" in r for r in cumsum.reasons)
    assert any("first CPU op" in r for op in report.ops[cut:] if op.supported for r in op.reasons)


def test_dynamic_batch_is_reported(tmp_path):
    inp = keras.Input(shape=SHAPE)  # batch None -> shape_signature [-1, 32, 32, 3]
    model = keras.Model(inp, keras.layers.Conv2D(4, 3)(inp))
    path = tmp_path / "dynamic.tflite"
    path.write_bytes(_convert(model, True))
    report = pf.analyze(path)
    assert report.cpu_from_index == 0
    assert report.ops[0].inputs[0].shape[0] == -1
    assert any("dynamic shape" in r for r in report.ops[0].reasons), report.ops[0].reasons


def test_render_table(models):
    from rich.console import Console

    report = pf.analyze(models["cumsum"])
    console = Console(record=True, width=200)
    console.print(pf.render_table(report))
    text = console.export_text()
    assert "CUMSUM" in text and "cpu" in text and "edgetpu" in text and "recommended segments: 1" in text


@pytest.mark.parametrize("content", [b"", b"TFL3", os.urandom(256), b"\x1c\x00\x00\x00TFL3" + b"\x00" * 8])
def test_not_a_tflite_file(tmp_path, content):
    path = tmp_path / "bad.tflite"
    path.write_bytes(content)
    with pytest.raises(InputError, match=r"expected .*\. Received: "):
        pf.analyze(path)


def test_truncated_tflite(models, tmp_path):
    data = models["int8"].read_bytes()
    path = tmp_path / "truncated.tflite"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(InputError, match="Received"):
        pf.analyze(path)


def test_names_that_are_not_utf8_are_shown_replaced_not_raised_on(tmp_path):
    """A tensor name is a string inside the (untrusted) file; one that is not UTF-8 (found by a random fuzz of
    `edgepipe preflight`: a UnicodeDecodeError traceback before) is read with the bad bytes replaced."""
    from edgepipe.formats import tflite
    from tests.fixtures.model_files import TINY_TFLITE

    data = TINY_TFLITE.read_bytes()
    at = data.index(b"Mean/reduction_indices")
    path = tmp_path / "names.tflite"
    path.write_bytes(data[:at] + b"\xa8" + data[at + 1:])  # same length: the flatbuffer stays valid
    report = pf.analyze(path)
    names = {t.name for op in report.ops for t in op.inputs}
    assert "\ufffdean/reduction_indices" in names
    assert tflite.text(b"x\xa8y") == "x\ufffdy" and tflite.text("plain") == "plain"


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        pf.analyze(tmp_path / "nope.tflite")


def test_segment_math():
    mib = 1024 * 1024
    usable = pf.USABLE_SRAM_BYTES
    assert usable == int(6.5 * mib) and pf.EDGETPU_SRAM_BYTES == 8 * mib
    assert pf.recommend_segments(0) == 1
    assert pf.recommend_segments(usable) == 1
    assert pf.recommend_segments(usable + 1) == 2
    assert pf.recommend_segments(20 * mib) == 4  # Xception-sized int8 weights: ceil(20 / 6.5)
    assert pf.recommend_segments(10 * mib, usable_sram_bytes=5 * mib) == 2
    with pytest.raises(ValueError):
        pf.recommend_segments(-1)


def test_cli_preflight_json_and_bad_file(models, tmp_path):
    """`edgepipe preflight --json` is valid JSON for a real int8 model; junk exits 2."""
    import json

    from typer.testing import CliRunner

    from edgepipe.cli.app import app

    res = CliRunner().invoke(app, ["preflight", str(models["int8"]), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["all_on_edgetpu"] is True and d["param_bytes"] > 0 and d["recommended_segments"] == 1
    assert all(isinstance(t["index"], int) for op in d["ops"] for t in op["inputs"])
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a model at all")
    res = CliRunner().invoke(app, ["preflight", str(junk)])
    assert res.exit_code == 2 and "expected a TFLite flatbuffer" in res.output
