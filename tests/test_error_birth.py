"""Local vs accumulated per-layer error: a deliberately damaged layer is named as the place the error is born."""

from __future__ import annotations

import numpy as np
import pytest

from edgepipe.diagnostics import error_birth
from edgepipe.diagnostics.layer_errors import keras_layer_names
from edgepipe.quantize.equalize import depthwise_ranges, max_output_diff
from tests.fixtures.configs import INPUT, tiny_split

pytestmark = pytest.mark.heavy(seconds=11)  # worker-seconds measured: longest first (tests/fixtures/scheduling.py)

DAMAGED = "block5_sepconv2"  # a middle-flow SeparableConv2D
FACTOR = 64.0  # channel 0's range becomes 64x the intermediate's largest channel range


@pytest.fixture(scope="module")
def damaged(tiny_assets, tmp_path_factory):
    """The tiny model with one SeparableConv2D's depthwise output channel 0 scaled up (and its pointwise
    input row 0 down) until its range is 64x the largest channel range: the float function is the same,
    but the per-tensor INT8 grid of that layer's depthwise->pointwise intermediate is 64x coarser."""
    import keras

    from edgepipe.stages.savedmodel import export_savedmodel

    calib = tiny_split(tiny_assets, "calibration")
    test = tiny_split(tiny_assets, "test")
    original = keras.saving.load_model(tiny_assets["model"], compile=False)
    model = keras.saving.load_model(tiny_assets["model"], compile=False)
    ranges = depthwise_ranges(model, calib.images)[DAMAGED]
    factor = FACTOR * ranges.max() / ranges[0]
    layer = model.get_layer(DAMAGED)
    w = layer.get_weights()
    w[0][:, :, 0, 0] *= factor
    w[1][0, 0, 0, :] /= factor
    layer.set_weights(w)
    assert max_output_diff(original, model, test.images) <= 1e-4
    out = tmp_path_factory.mktemp("damaged")
    sm = export_savedmodel(model, out, (INPUT, INPUT, 3))
    return {"model": model, "sm": sm, "out": out, "calib": calib.images, "test": test.images[:4],
            "known": keras_layer_names(tiny_assets["model"])}


def _check_named(report: dict) -> None:
    rows = report["rows"]
    assert report["born"][0]["layer"] == DAMAGED, report["born"]
    worst = report["born"][0]
    # born there: its local error is far below every layer outside it ...
    others = [r["local_snr_db"] for r in rows if r["local_snr_db"] is not None and r["layer"] != DAMAGED]
    assert worst["local_snr_db"] < min(others) - 3.0, [(r["layer"], r["op"], r["local_snr_db"]) for r in rows]
    # ... and the layers after it inherit the error (accumulated well below their own local SNR)
    after = [r for r in rows if r["position"] > worst["position"] and r["local_snr_db"] is not None
             and r["accumulated_snr_db"] is not None]
    assert after and np.median([r["local_snr_db"] - r["accumulated_snr_db"] for r in after]) > 6.0
    assert [r["position"] for r in rows] == sorted(r["position"] for r in rows)  # ordered by depth
    assert worst["local_noise_share"] > 0.5
    assert report["layers_with_half_the_noise"] <= 2


def test_tflite_names_the_damaged_layer(damaged):
    report = error_birth.tflite_report(damaged["sm"], damaged["calib"], damaged["test"], damaged["known"])
    _check_named(report)


def test_openvino_names_the_damaged_layer(damaged):
    """On the IR's quantization math (CPU-independent). With the CPU's int8 kernels the report has the
    same rows; on x86 CPUs without VNNI their int16 saturation adds error of its own to the 1x1 convs."""
    from edgepipe.quantize.quantizers.nncf import quantize_nncf
    from edgepipe.stages.openvino import convert_ir

    ir = convert_ir(damaged["sm"], damaged["out"], (INPUT, INPUT, 3))
    int8 = quantize_nncf(ir, damaged["out"], damaged["calib"])
    report = error_birth.openvino_report(ir, int8, damaged["test"], damaged["model"], kernels="fq-math")
    _check_named(report)
    assert {r["op"] for r in report["rows"]} >= {"Convolution", "GroupConvolution"}
    on_cpu = error_birth.openvino_report(ir, int8, damaged["test"], damaged["model"], kernels="int8")
    assert [r["layer"] for r in on_cpu["rows"]] == [r["layer"] for r in report["rows"]]
    loss = error_birth.kernel_error(on_cpu, report)
    assert len(loss) == len(report["rows"])
    damaged_row = next(r for r in loss if r["layer"] == DAMAGED and r["op"] == "GroupConvolution")
    assert abs(damaged_row["kernel_loss_db"]) < 3.0  # depthwise kernels do not saturate
