"""Equalization: float function unchanged (<= 1e-4), INT8 changed, intermediate ranges evened."""

from __future__ import annotations

import numpy as np
import pytest

from edgepipe.quantize import equalize as eq
from tests.fixtures.configs import INPUT, tiny_split
from tests.fixtures.tiny_runs import seed_stages, stage_output

pytestmark = pytest.mark.heavy(seconds=30)  # worker-seconds measured: longest first (tests/fixtures/scheduling.py)

N_SEPARABLE = 16  # SeparableConv2D layers in the tiny Xception


@pytest.fixture(scope="module")
def tiny(tiny_assets):
    import keras

    calib = tiny_split(tiny_assets, "calibration")
    test = tiny_split(tiny_assets, "test")
    model = keras.saving.load_model(tiny_assets["model"], compile=False)
    return {"model": model, "calib": calib.images, "test": test.images, "labels": test.labels}


@pytest.fixture(scope="module")
def separable(tiny):
    before = [w.copy() for w in tiny["model"].get_weights()]
    new, report = eq.equalize(tiny["model"], tiny["calib"], separable=True, cross_layer=False)
    return {"model": new, "report": report, "weights_before": before}


def _int8(model, out, calib, recipe=None):
    from edgepipe.quantize.quantizers.tflite import convert_int8
    from edgepipe.stages.savedmodel import export_savedmodel

    sm = export_savedmodel(model, out, (INPUT, INPUT, 3))
    return convert_int8(sm, out, calib, int8_io=True, recipe=recipe)


def _run_tflite(path, images):
    from edgepipe.formats.runners import TFLiteRunner

    r = TFLiteRunner(path, 2)
    return np.stack([r.predict(x) for x in images])


def _depthwise_output_scales(path) -> list[float]:
    from edgepipe.formats.runners import tflite_interpreter_class

    cls, _ = tflite_interpreter_class()
    interp = cls(model_path=str(path))
    interp.allocate_tensors()
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    return [float(tensors[o["outputs"][0]]["quantization"][0])
            for o in interp._get_ops_details() if o["op_name"] == "DEPTHWISE_CONV_2D"]


def test_separable_equalization_keeps_the_float_function(tiny, separable):
    new = separable["model"]
    assert eq.max_output_diff(tiny["model"], new, tiny["test"]) <= 1e-4
    assert [ly.name for ly in new.layers] == [ly.name for ly in tiny["model"].layers]
    # the original model is untouched (the transform works on a copy)
    for a, b in zip(separable["weights_before"], tiny["model"].get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # ... and the weights really changed
    changed = [ly.name for ly in new.layers if type(ly).__name__ == "SeparableConv2D"
               and not np.allclose(ly.get_weights()[0], tiny["model"].get_layer(ly.name).get_weights()[0])]
    assert len(changed) == N_SEPARABLE


def test_separable_equalization_evens_the_intermediate_ranges(tiny, separable):
    """Measured again on held-out test images, not taken from the transform's own report."""
    before = eq.depthwise_ranges(tiny["model"], tiny["test"])
    after = eq.depthwise_ranges(separable["model"], tiny["test"])
    assert len(before) == N_SEPARABLE
    ratios = {n: eq.spread(after[n]) / eq.spread(before[n]) for n in before}
    # alpha = 0.5 splits the imbalance with the pointwise weights, so an already flat layer
    # may move slightly either way; most layers and the median must improve clearly
    assert sum(r < 1 for r in ratios.values()) >= 12, ratios
    assert np.median(list(ratios.values())) < 0.8, ratios


def test_flattening_alpha_1_makes_the_ranges_equal(tiny):
    new, _ = eq.equalize(tiny["model"], tiny["calib"], separable=True, alpha=1.0, max_scale=1e6)
    after = eq.depthwise_ranges(new, tiny["calib"])
    for name, r in after.items():
        live = r[r > 1e-6 * r.max()]
        assert live.max() / live.min() < 1.0001, name
    assert eq.max_output_diff(tiny["model"], new, tiny["test"]) <= 1e-4


def test_tflite_keeps_the_intermediate_and_int8_outputs_change(tiny, separable, tiny_full_run, tmp_path):
    """The converter lowers SeparableConv2D to DEPTHWISE_CONV_2D -> CONV_2D with an int8 tensor
    between them (no fusion), so equalizing that tensor changes the INT8 model. The model before
    equalization is the cold run's INT8 stage (the same model, calibration images and call)."""
    from edgepipe.formats.runners import tflite_interpreter_class

    base = stage_output(tiny_full_run, "tflite-int8", "model_int8.tflite")
    equal = _int8(separable["model"], tmp_path / "eq", tiny["calib"])
    cls, _ = tflite_interpreter_class()
    interp = cls(model_path=str(equal))
    interp.allocate_tensors()
    ops = interp._get_ops_details()
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    consumers = {i: o["op_name"] for o in ops for i in o["inputs"]}
    dw = [o for o in ops if o["op_name"] == "DEPTHWISE_CONV_2D"]
    assert len(dw) == N_SEPARABLE
    for o in dw:
        assert tensors[o["outputs"][0]]["dtype"] == np.int8
        assert consumers[o["outputs"][0]] == "CONV_2D"

    # the quantized model is a different one where it matters: the per-tensor scales of the
    # intermediates (the final softmax scores of this confident tiny model can saturate to the
    # same 1/256 steps, so the outputs alone do not show it)
    sa, sb = _depthwise_output_scales(base), _depthwise_output_scales(equal)
    assert len(sa) == len(sb) == N_SEPARABLE
    assert sum(abs(a - b) > 1e-3 * max(a, b) for a, b in zip(sa, sb, strict=True)) >= N_SEPARABLE // 2
    yb = _run_tflite(equal, tiny["test"])
    ref = np.asarray(tiny["model"].predict(tiny["test"], verbose=0))
    assert (yb.argmax(1) == ref.argmax(1)).mean() >= 0.9  # and still a working classifier


def test_cross_layer_equalization_balances_weights_and_keeps_float(tiny, tmp_path):
    from edgepipe.quantize.recipes import BUILTIN

    new, report = eq.equalize(tiny["model"], tiny["calib"], separable=False, cross_layer=True)
    assert eq.max_output_diff(tiny["model"], new, tiny["test"]) <= 1e-4
    bn_sites = [s for s in report.cross_layer if "->" in s["site"] and "depthwise" not in s["site"]]
    # block1 (2) + one per entry block (3) + two per middle block (2x2) + exit (2) = 11 valid sites
    assert len(bn_sites) == 11
    # recomputed from the new weights: folded producer range == consumer range per channel
    for site in bn_sites:
        prod_name, bn_name, _ = site["site"].split(":")[1].split("->")
        prod, bn = new.get_layer(prod_name), new.get_layer(bn_name)
        r1 = eq._folded_out_range(prod, bn)
        r2 = np.max([eq._in_channel_range(new.get_layer(c)) for c in site["consumers"]], axis=0)
        live = (r1 > 1e-8) & (r2 > 1e-8)
        np.testing.assert_allclose(r1[live], r2[live], rtol=1e-3)
    assert all(s["range_ratio_after"] < 1.001 <= s["range_ratio_before"] or s["range_ratio_before"] < 1.001
               for s in report.cross_layer)
    skipped = {s["site"].split("->")[-1]: s["why"] for s in report.skipped}
    assert "GlobalAveragePooling2D" in skipped["block8_sepconv2_act"]

    per_tensor = BUILTIN["per-tensor"]
    a = _run_tflite(_int8(tiny["model"], tmp_path / "a", tiny["calib"], per_tensor), tiny["test"])
    b = _run_tflite(_int8(new, tmp_path / "b", tiny["calib"], per_tensor), tiny["test"])
    assert np.abs(a - b).max() > 0


def test_cross_layer_equalization_is_not_applied_where_invalid():
    import keras
    from keras import layers

    inp = keras.Input((16, 16, 3))
    x = layers.Conv2D(4, 3, use_bias=False, name="c1")(inp)
    x = layers.BatchNormalization(name="bn1")(x)
    x = layers.ReLU(max_value=6.0, name="relu6")(x)  # clipped: not positive-homogeneous
    x = layers.Conv2D(4, 1, use_bias=False, name="c2")(x)
    x = layers.BatchNormalization(name="bn2")(x)
    r = layers.Activation("relu", name="relu2")(x)
    y = layers.Conv2D(4, 1, use_bias=False, name="c3")(r)
    y = layers.add([y, r], name="residual")  # relu2 also feeds the add: scaling it would change the sum
    model = keras.Model(inp, layers.GlobalAveragePooling2D()(y))
    rng = np.random.default_rng(0)
    for ly in model.layers:  # non-trivial BN statistics
        if type(ly).__name__ == "BatchNormalization":
            ly.set_weights([rng.uniform(0.2, 3, 4), rng.normal(0, 1, 4), rng.normal(0, 1, 4), rng.uniform(0.5, 2, 4)])
    new, report = eq.equalize(model, np.zeros((1, 16, 16, 3), np.float32), separable=False, cross_layer=True)
    why = {s["site"].split("->")[-1]: s["why"] for s in report.skipped}
    assert report.cross_layer == []
    assert "not positive-homogeneous" in why["relu6"]
    assert "non-conv layer: Add" in why["relu2"]
    x = rng.uniform(-1, 1, (4, 16, 16, 3)).astype(np.float32)
    assert eq.max_output_diff(model, new, x) == 0.0  # nothing was touched


def test_nested_model_is_equalized_through_the_outer_model(tiny):
    """elpv-xception nests keras.applications.Xception as one layer: same structure here."""
    import keras

    inner = tiny["model"]
    inp = keras.Input((INPUT, INPUT, 3), name="image")
    outer = keras.Model(inp, keras.layers.Rescaling(1.0, name="identity")(inner(inp)), name="outer")
    new, report = eq.equalize(outer, tiny["calib"][:8], separable=True, cross_layer=True)
    assert {r["layer"].split("/")[0] for r in report.separable} == {"tiny_xception"}
    assert len(report.separable) == N_SEPARABLE and len(report.cross_layer) == 11
    assert eq.max_output_diff(outer, new, tiny["test"]) <= 1e-4
    # the nested model was copied, not shared
    assert new.get_layer("tiny_xception") is not inner


def test_bad_parameters_are_rejected(tiny):
    with pytest.raises(ValueError, match=r"alpha: expected a value in \[0, 1\]"):
        eq.equalize(tiny["model"], tiny["calib"], alpha=2.0)
    with pytest.raises(ValueError, match=r"max_scale: expected >= 1"):
        eq.equalize(tiny["model"], tiny["calib"], max_scale=0.5)


def test_recipe_runs_equalization_inside_the_pipeline(tiny_assets, tiny_full_run, tmp_path):
    """`equalize_separable` in a recipe: the INT8 artifact is built from a verified equalized
    SavedModel (its own cached stage) and validated like any other artifact."""
    import json

    from edgepipe.config.schema import parse_config
    from edgepipe.engine.orchestrate import run_pipeline
    from tests.fixtures.configs import tiny_config

    raw = tiny_config(tiny_assets, tmp_path / "out",
                      targets=[{"name": "tflite-arm", "options": {"precisions": ["int8"], "recipe": "eq"}}],
                      quantization={"recipes": {"eq": {"equalize_separable": True,
                                                       "cross_layer_equalization": True}}})
    seed_stages(tiny_full_run, tmp_path / "out", leave_out=("tflite-fp32-*",))  # the reference: not checked here
    report = run_pipeline(parse_config(raw), tiny_assets["model"])
    row = report["artifacts"][1]
    assert row["status"] == "passed", row
    assert row["recipe"]["equalize_separable"] and row["recipe"]["cross_layer_equalization"]
    # per-layer errors are measured against the equalized FP32 model, not the rescaled-away original
    assert "per_layer_error" not in row and row["per_layer"], row.get("per_layer_error")
    fp32_stages = list((tmp_path / "out" / "stages").glob("tflite-fp32-*"))
    assert len(fp32_stages) == 1  # built from the equalized SavedModel only (no plain FP32 job here)
    (eq_dir,) = (tmp_path / "out" / "stages").glob("savedmodel-equalized-*")
    record = json.loads((eq_dir / "equalization.json").read_text())
    assert record["max_output_diff"] <= 1e-4 and len(record["separable"]) == N_SEPARABLE
    assert (eq_dir / "equalized.keras").is_file() and (eq_dir / "saved_model" / "saved_model.pb").is_file()
