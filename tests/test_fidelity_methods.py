"""Fidelity methods on the tiny Xception: residual-stream equalization keeps the float function and raises
the stream tensors' INT8 SNR; bias correction lowers the mean output error; learned rounding stays on
the converters' per-channel grid and lowers the layer output error."""

from __future__ import annotations

import numpy as np
import pytest

from edgepipe.quantize import residual_equalize as req
from edgepipe.quantize.equalize import max_output_diff
from tests.fixtures import tiny_xception
from tests.fixtures.configs import INPUT, tiny_split

pytestmark = pytest.mark.heavy(seconds=26)  # worker-seconds measured: longest first (tests/fixtures/scheduling.py)

MIDDLE_ADDS = 3  # the tiny Xception's last entry add + its two middle blocks: one segment


@pytest.fixture(scope="module")
def tiny(tiny_assets):
    import keras

    calib = tiny_split(tiny_assets, "calibration")
    test = tiny_split(tiny_assets, "test")
    train = tiny_split(tiny_assets, "train")
    model = keras.saving.load_model(tiny_assets["model"], compile=False)
    return {"model": model, "calib": calib.images, "test": test.images,
            "calib_large": np.concatenate([calib.images, train.images])}


@pytest.fixture(scope="module")
def reseq(tiny):
    before = [w.copy() for w in tiny["model"].get_weights()]
    new, report = req.equalize_residual_stream(tiny["model"], tiny["calib"])
    return {"model": new, "report": report, "weights_before": before}


def test_segments_of_the_tiny_xception():
    model = tiny_xception.build(input_size=INPUT)
    segments, skipped = req.find_segments(model)
    assert skipped == []
    by_size = sorted(segments, key=lambda s: len(s.adds))
    assert [len(s.adds) for s in by_size] == [1, 1, 1, MIDDLE_ADDS]
    middle = by_size[-1]
    assert middle.adds == ["add_4", "add_5", "add_6"]
    # block4's two branch BNs and each middle block's last BN produce the stream ...
    assert middle.producers == ["block4_sepconv2_bn", "bn_res4", "block5_sepconv3_bn", "block6_sepconv3_bn"]
    # ... read by each block's first SeparableConv (behind a ReLU) and the exit flow's convs
    assert set(middle.readers) == {"block5_sepconv1", "block6_sepconv1", "block7_sepconv1", "conv2d_exit_res"}


def test_residual_equalization_keeps_the_float_function(tiny, reseq):
    new = reseq["model"]
    assert max_output_diff(tiny["model"], new, tiny["test"]) <= 1e-4
    assert [ly.name for ly in new.layers] == [ly.name for ly in tiny["model"].layers]
    for a, b in zip(reseq["weights_before"], tiny["model"].get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # the original is untouched
    assert reseq["report"]["n_segments"] == 4


@pytest.fixture(scope="module")
def imbalanced(tiny):
    """The tiny model with its residual streams unbalanced on purpose (channel c scaled by e^N(0, 1), the
    float function unchanged): the trained tiny model's own streams are nearly balanced (max / median
    channel range ~2, and its 30 calibration images do not bound unseen images' ranges, so equalizing
    them mostly picks alpha 0, i.e. leaves them alone); real Xception streams are less even."""
    from edgepipe.quantize.keras_graph import copy_model

    rng = np.random.default_rng(0)
    model = copy_model(tiny["model"])
    scales = {}
    for seg in req.find_segments(model)[0]:
        s = np.exp(rng.normal(0.0, 1.0, model.get_layer(seg.readers[0]).get_weights()[0].shape[2]))
        req.apply_scales(model, seg, s)
        scales[seg.adds[0]] = s
    assert max_output_diff(tiny["model"], model, tiny["test"]) <= 1e-4
    return model, scales


def test_residual_equalization_raises_the_stream_snr(tiny, imbalanced):
    """Measured on held-out test images with ranges from the calibration images, in the original model's
    units, for per-tensor asymmetric int8 (what TFLite / NNCF / ORT do to these tensors)."""
    model, s_imb = imbalanced
    calib = tiny["calib_large"]
    new, report = req.equalize_residual_stream(model, calib)
    assert max_output_diff(tiny["model"], new, tiny["test"]) <= 1e-4
    s_all = {seg["adds"][0]: s_imb[seg["adds"][0]] * np.array(seg["scales"]) for seg in report["segments"]}
    before = req.stream_snr_db(model, calib, tiny["test"], s_imb)
    after = req.stream_snr_db(new, calib, tiny["test"], s_all)
    assert set(before) == set(after) and len(before) == 3 + MIDDLE_ADDS
    gains = np.array([after[k] - before[k] for k in before])
    assert gains.mean() > 3.0, (before, after)
    assert (gains > 0.5).all(), (before, after)
    for seg in report["segments"]:
        assert seg["alpha"] > 0  # chosen on the calibration images' own held-out half
        assert max(seg["spread_after"]) < max(seg["spread_before"])
        noise = seg["held_out_noise_db"]  # the chosen alpha had the lowest held-out noise
        assert noise[str(seg["alpha"])] == min(noise.values())


def test_residual_equalization_refuses_bad_parameters(tiny):
    with pytest.raises(ValueError, match="alphas"):
        req.equalize_residual_stream(tiny["model"], tiny["calib"], alphas=(0.5, 1.5))
    with pytest.raises(ValueError, match="max_scale"):
        req.equalize_residual_stream(tiny["model"], tiny["calib"], max_scale=0.5)


def _weights_on_grid(model):
    """A copy with every conv / dense kernel rounded to the converters' per-channel INT8 grid, float
    activations: the weight-rounding error alone, as every converter will make it."""
    from edgepipe.quantize.keras_graph import copy_model
    from edgepipe.quantize.keras_taps import on_grid, weighted_layers

    new = copy_model(model)
    for _, layer in weighted_layers(new):
        w = layer.get_weights()
        kind = type(layer).__name__
        if kind == "SeparableConv2D":
            w[0], w[1] = on_grid(w[0], "DepthwiseConv2D"), on_grid(w[1], "Pointwise")
        else:
            w[0] = on_grid(w[0], kind)
        layer.set_weights(w)
    return new


def test_bias_correction_lowers_the_mean_output_error(tiny):
    """Held-out test images: the mean (over images and pixels) error per output channel that rounding the
    weights to the converters' INT8 grid causes at every corrected layer's folded output (the conv and
    its BatchNorm) in the whole model, without and with the correction, and at the pooled features."""
    import keras

    from edgepipe.quantize import bias_correction as bc

    model, test = tiny["model"], tiny["test"]
    new, report = bc.correct_weight_bias(model, tiny["calib"])
    convs = [ly.name for ly in model.layers if type(ly).__name__ in ("Conv2D", "SeparableConv2D", "Dense")]
    assert report["n_corrected"] == len(convs) and report["skipped"] == []
    before = bc.output_shifts(model, test)  # of the original model: what the INT8 weights shift
    folded = {}  # each corrected layer's folded output: its BatchNorm's when one follows it
    for name in convs:
        bn = next((c for c in model.layers if type(c).__name__ == "BatchNormalization"
                   and c.input is model.get_layer(name).output), None)
        folded[name] = (bn or model.get_layer(name)).name

    def taps(m) -> dict:  # every folded output of `m` in one pass over the test images
        outs = keras.Model(m.inputs, [m.get_layer(folded[n]).output for n in convs]).predict(test, verbose=0)
        return dict(zip(convs, map(np.asarray, outs), strict=True))

    ref = taps(model)
    # the corrected model's folded outputs with INT8 weights vs the original model's float outputs
    after, base = {}, {}
    for m, store in ((_weights_on_grid(new), after), (_weights_on_grid(model), base)):
        got = taps(m)
        for name in convs:
            store[name] = float(np.abs((got[name] - ref[name]).reshape(-1, ref[name].shape[-1]).mean(axis=0)).mean())
    assert set(before) == set(convs)
    lower = [n for n in convs if after[n] < base[n]]
    assert len(lower) >= 0.8 * len(convs), {n: (base[n], after[n]) for n in convs}
    assert np.mean([after[n] for n in convs]) < 0.7 * np.mean([base[n] for n in convs])
    # the float model moves by about as much as rounding its weights to the INT8 grid moves it
    assert max_output_diff(model, new, test) < 2 * max_output_diff(model, _weights_on_grid(model), test)
