"""OpenVINO diagnostics on hand-built IRs whose answer is known.

- The local / accumulated error (pipeline/diagnostics/local_openvino.py) on two IRs numpy computes: a deep input
  stream (1,500 ops, deeper than Python's recursion limit), then two 1x1 convolutions with bias and ReLU,
  quantized as NNCF writes an IR (FakeQuantize on activations, int8 weights decompressed by Convert and
  Multiply); the IR's FakeQuantize math (`fq-math`) is reproduced in numpy.
- The per-layer errors (layer_errors.py) of a network whose last op is weighted."""

from __future__ import annotations

import numpy as np
import pytest

from edgepipe.diagnostics import local_openvino

DEPTH = 1500
CH = 3
X_LEVELS = 16  # the first convolution's input on a coarse grid: an error the second one inherits


def _fq(x, lo, hi, levels=256):
    """OpenVINO FakeQuantize with equal input and output ranges."""
    q = np.round((np.clip(x, lo, hi) - lo) / (hi - lo) * (levels - 1))
    return (q / (levels - 1) * (hi - lo) + lo).astype(np.float32)


def make_case(out) -> dict:
    """The two IRs saved in `out`, the images and what numpy needs to compute the answer."""
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    w = [rng.normal(0, 0.5, (CH, CH, 1, 1)).astype(np.float32) for _ in range(2)]
    bias = [rng.normal(0, 0.1, (1, CH, 1, 1)).astype(np.float32) for _ in range(2)]
    scale = [np.abs(k).max(axis=(1, 2, 3), keepdims=True) / 127 for k in w]
    wq = [np.round(k / s).astype(np.int8) for k, s in zip(w, scale, strict=True)]
    x_range, relu_range = (-1.5, 1.5), [(0.0, 1.2), (0.0, 1.0)]

    def build(quantized: bool):
        x = ops.parameter([1, CH, 8, 8], np.float32, name="input")
        h = x
        for i in range(DEPTH):
            h = ops.add(h, ops.constant(np.float32(1e-4)), name=f"stream_{i}")
        if quantized:  # the first convolution's input; the second one's is the first one's output FakeQuantize
            lo, hi = (np.float32(v) for v in x_range)
            h = ops.fake_quantize(h, lo, hi, lo, hi, X_LEVELS, name=f"stream_{DEPTH - 1}/fq_output_0")
        for k in range(2):
            weights = ops.multiply(ops.convert(ops.constant(wq[k]), np.float32), ops.constant(scale[k]),
                                   name=f"conv{k}/fq_weights_1") if quantized else ops.constant(w[k])
            h = ops.convolution(h, weights, [1, 1], [0, 0], [0, 0], [1, 1], name=f"conv{k}")
            h = ops.relu(ops.add(h, ops.constant(bias[k]), name=f"conv{k}_bias"), name=f"conv{k}_relu")
            if quantized:
                lo, hi = relu_range[k]
                h = ops.fake_quantize(h, np.float32(lo), np.float32(hi), np.float32(lo), np.float32(hi), 256,
                                      name=f"conv{k}_relu/fq_output_0")
        return ov.Model([h], [x], "two_convs")

    ov.save_model(build(False), str(out / "fp32.xml"), compress_to_fp16=False)
    ov.save_model(build(True), str(out / "int8.xml"), compress_to_fp16=False)
    images = rng.uniform(-1, 1, (3, CH, 8, 8)).astype(np.float32)  # CHW: the IR's layout
    return {"dir": out, "images": images, "w": w, "wq": wq, "scale": scale, "bias": bias, "x_range": x_range,
            "relu_range": relu_range}


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    return make_case(tmp_path_factory.mktemp("local_ov"))


def _conv(x, w, b):
    return np.maximum(np.einsum("oi,nihw->nohw", w[:, :, 0, 0], x) + b, 0).astype(np.float32)


def _snr(ref, val):
    ref, val = np.asarray(ref, np.float64), np.asarray(val, np.float64)
    return 10 * np.log10((ref ** 2).sum() / ((ref - val) ** 2).sum())


def test_local_and_accumulated_errors_are_the_ir_quantization_math(case):
    c = case
    rows = local_openvino.local_and_accumulated(c["dir"] / "fp32.xml", c["dir"] / "int8.xml", c["images"],
                                                threads=1, kernels="fq-math")
    assert [(r["op"], r["tensor"], r["measured_at"]) for r in rows] == [
        ("Convolution", "conv0", "conv0_relu/fq_output_0"), ("Convolution", "conv1", "conv1_relu/fq_output_0")]

    x = c["images"] + np.float32(1e-4) * DEPTH  # the stream's value (to float rounding)
    wd = [(q.astype(np.float32) * s).astype(np.float32) for q, s in zip(c["wq"], c["scale"], strict=True)]
    (r0, r1), b = c["relu_range"], c["bias"]
    ref0 = _conv(x, c["w"][0], b[0])
    ref1 = _conv(ref0, c["w"][1], b[1])
    # local: each conv alone, fed the FP32 value through its own input FakeQuantize
    local0 = _fq(_conv(_fq(x, *c["x_range"], levels=X_LEVELS), wd[0], b[0]), *r0)
    local1 = _fq(_conv(_fq(ref0, *r0), wd[1], b[1]), *r1)
    # accumulated: everything quantized (conv1 reads conv0's quantized output)
    acc1 = _fq(_conv(local0, wd[1], b[1]), *r1)
    expected = [(_snr(ref0, local0), _snr(ref0, local0)), (_snr(ref1, local1), _snr(ref1, acc1))]
    got = [(r["local_snr_db"], r["accumulated_snr_db"]) for r in rows]
    np.testing.assert_allclose(got, expected, atol=0.05)
    assert got[1][1] < got[1][0] - 1.0  # conv1 inherits conv0's error: accumulated well below its local SNR


def test_the_cpu_kernels_measure_the_same_ops_at_the_same_nodes(case):
    """With the CPU plugin's low-precision kernels the same ops are measured at the same nodes. (Their values
    differ from the IR's math by the kernels' own rounding, and on this IR's 16-level input also by how the
    plugin maps a grid that is not 8-bit, so only their plausibility is checked.)"""
    c = case
    math = local_openvino.local_and_accumulated(c["dir"] / "fp32.xml", c["dir"] / "int8.xml", c["images"],
                                                kernels="fq-math")
    cpu = local_openvino.local_and_accumulated(c["dir"] / "fp32.xml", c["dir"] / "int8.xml", c["images"],
                                               kernels="int8")
    assert [(r["tensor"], r["measured_at"]) for r in cpu] == [(r["tensor"], r["measured_at"]) for r in math]
    for r in cpu:
        assert 0 < r["local_snr_db"] < 999 and 0 < r["accumulated_snr_db"] < 999


def test_per_layer_errors_read_each_op_from_its_own_output(tmp_path):
    """`layer_errors.openvino_errors` where a weighted op is already the FP32 model's output (a network that ends
    in a convolution; the other IR adds a ReLU after it): OpenVINO adds no second Result for that op, and every
    op must still be compared with itself. The two IRs compute the same convolutions, so every error is zero."""
    import openvino as ov
    import openvino.opset13 as ops

    from edgepipe.diagnostics.layer_errors import openvino_errors

    rng = np.random.default_rng(1)
    w = [rng.normal(0, 1, (CH, CH, 1, 1)).astype(np.float32) for _ in range(2)]

    def save(name: str, relu_at_the_end: bool):
        x = ops.parameter([1, CH, 8, 8], np.float32, name="input")
        a = ops.relu(ops.convolution(x, ops.constant(w[0]), [1, 1], [0, 0], [0, 0], [1, 1], name="conv_a"))
        b = ops.convolution(a, ops.constant(w[1]), [1, 1], [0, 0], [0, 0], [1, 1], name="conv_b")
        out = ops.relu(b, name="head") if relu_at_the_end else b
        ov.save_model(ov.Model([out], [x], name), str(tmp_path / f"{name}.xml"), compress_to_fp16=False)
        return tmp_path / f"{name}.xml"

    accs, order, _, _ = openvino_errors(save("ends_in_a_conv", False), save("ends_in_a_relu", True),
                                        rng.uniform(-1, 1, (2, CH, 8, 8)).astype(np.float32))
    assert order == ["conv_a", "conv_b"]
    assert [accs[n].metrics()["mse"] for n in order] == [0.0, 0.0]
