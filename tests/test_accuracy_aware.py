"""Accuracy-aware quantization: the loop stops within budget with the fewest float layers."""

from __future__ import annotations

import numpy as np
import pytest

from calibration.dataset import load_subset
from calibration.preprocess import PreprocessSpec
from pipeline.config import SplitSpec, Subset
from pipeline.stages import accuracy_aware as aa
from tests import tiny_xception
from tests.conftest import INPUT

BUDGET = 2.0  # top-1 points


def test_greedy_loop_stops_at_the_first_prefix_within_budget():
    calls = []

    def evaluate(layers):
        calls.append(layers)
        return {0: 0.60, 1: 0.70, 2: 0.79, 3: 0.80}[len(layers)]

    res = aa.greedy_float_fallback(["a", "b", "c", "d"], evaluate, reference_top1=0.80, max_drop_points=1.5)
    assert calls == [(), ("a",), ("a", "b")]  # stopped as soon as the budget was met
    assert res.within_budget and res.chosen.float_layers == ("a", "b")
    assert [round(s.drop_points, 6) for s in res.steps] == [20.0, 10.0, 1.0]


def test_greedy_loop_reports_an_unreachable_budget():
    res = aa.greedy_float_fallback(["a", "b", "c"], lambda ly: 0.5 + 0.1 * len(ly), 0.9, 0.0, max_float_layers=2)
    assert not res.within_budget
    assert len(res.steps) == 3 and res.chosen.float_layers == ("a", "b")  # the best seen, flagged
    with pytest.raises(ValueError, match="max_drop_points: expected >= 0"):
        aa.greedy_float_fallback(["a"], lambda ly: 1.0, 1.0, -1.0)


def test_pick_full_integer_prefers_simple_repairs_within_budget():
    c = [aa.Candidate("default", 1.2, 48.0, 0), aa.Candidate("equalized", 0.2, 49.0, 1),
         aa.Candidate("equalized+cle", 0.1, 48.5, 2)]
    pick = aa.pick_full_integer(c, 0.3)
    assert pick["chosen"] == "equalized" and pick["within_budget"]
    pick = aa.pick_full_integer(c, 0.05)
    assert pick["chosen"] == "equalized+cle" and not pick["within_budget"] and "no full-integer" in pick["why"]
    with pytest.raises(ValueError):
        aa.pick_full_integer([], 0.3)


@pytest.fixture(scope="module")
def hostile(tiny_assets, tmp_path_factory):
    """The tiny Xception with one dead feature channel (BN gamma 0, beta -1 before the last
    ReLU) whose classifier-weight row is set to 1000: the float function does not see it (the
    feature is always 0), but the classifier's INT8 weight scale is set by the outlier, so every
    real weight rounds to 0 and the default INT8 model loses its accuracy. Keeping exactly one
    layer (the classifier) in float repairs it: a bad recipe with a known minimal fix."""
    import keras

    from pipeline.stages.savedmodel import export_savedmodel

    model = keras.saving.load_model(tiny_assets["model"], compile=False)
    bn = model.get_layer("block8_sepconv2_bn")
    w = bn.get_weights()
    w[0][0], w[1][0] = 0.0, -1.0
    bn.set_weights(w)
    fc = model.get_layer("predictions")
    w = fc.get_weights()
    w[0][0, :] = 1000.0
    fc.set_weights(w)
    spec = PreprocessSpec(INPUT, INPUT)
    splits = SplitSpec(seed=0, calibration=30, test_fraction=0.3)
    data = str(tiny_assets["data"])
    calib = load_subset(Subset(source=data, split="calibration"), splits, tiny_xception.CLASSES, spec, "c")
    control = load_subset(Subset(source=data, split="train"), splits, tiny_xception.CLASSES, spec, "t")
    out = tmp_path_factory.mktemp("hostile")
    sm = export_savedmodel(model, out, (INPUT, INPUT, 3))
    ref = aa.top1(model.predict(control.images, verbose=0), control.labels)
    return {"model": model, "sm": sm, "calib": calib, "control": control, "ref": ref, "out": out}


def test_tflite_budget_keeps_the_fewest_layers_in_float(hostile):
    from targets.runtimes import TFLiteRunner, tflite_interpreter_class

    h = hostile
    path, res = aa.tflite_to_budget(h["sm"], h["out"], h["calib"].images, h["control"].images,
                                    h["control"].labels, h["ref"], BUDGET, debug_images=16, max_float_layers=6)
    # the bad recipe really is out of budget with nothing in float ...
    assert res.steps[0].float_layers == () and res.steps[0].drop_points > 10 * BUDGET
    # ... every shorter prefix of the ranking was over budget, the chosen one is within it
    assert res.within_budget and res.chosen is res.steps[-1]
    assert all(s.drop_points > BUDGET for s in res.steps[:-1])
    assert len(res.chosen.float_layers) == 1
    assert res.ranking[0]["op"] == "FULLY_CONNECTED"  # the debugger found the broken layer first

    # the written artifact, measured independently: within budget, that one op in float
    runner = TFLiteRunner(path, 2)
    scores = np.stack([runner.predict(x) for x in h["control"].images])
    assert 100 * (h["ref"] - aa.top1(scores, h["control"].labels)) <= BUDGET
    cls, _ = tflite_interpreter_class()
    interp = cls(model_path=str(path))
    interp.allocate_tensors()
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    float_ops = [o["op_name"] for o in interp._get_ops_details()
                 if o["op_name"] not in ("QUANTIZE", "DEQUANTIZE", "DELEGATE")
                 and tensors[o["outputs"][0]]["dtype"] == np.float32]
    assert float_ops == ["FULLY_CONNECTED"] or float_ops == ["FULLY_CONNECTED", "SOFTMAX"], float_ops


@pytest.mark.slow
def test_nncf_accuracy_control_meets_the_budget(hostile):
    import openvino as ov

    from pipeline.stages.openvino import convert_ir, quantize_nncf

    h = hostile
    ir = convert_ir(h["sm"], h["out"], (INPUT, INPUT, 3))
    (h["out"] / "plain").mkdir()
    plain = quantize_nncf(ir, h["out"] / "plain", h["calib"].images)
    core = ov.Core()

    def top1_of(xml):
        c = core.compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        return aa.top1(np.stack([c(x[None])[c.outputs[0]][0] for x in h["control"].images]), h["control"].labels)

    assert 100 * (h["ref"] - top1_of(plain)) > BUDGET  # default NNCF is out of budget here too
    (h["out"] / "budget").mkdir()
    path, info = aa.nncf_to_budget(ir, h["out"] / "budget", h["calib"].images, h["control"].images,
                                   h["control"].labels, BUDGET)
    assert 100 * (h["ref"] - top1_of(path)) <= BUDGET
    assert info["fake_quantize_ops"] > 0  # still an INT8 model, not a float one


def test_max_accuracy_drop_recipe_runs_inside_the_pipeline(tiny_assets, tmp_path):
    """The recipe field reaches the TFLite budget stage; the artifact record says what was kept."""
    from pipeline.config import parse_config
    from pipeline.run import run_pipeline
    from tests.conftest import tiny_config

    raw = tiny_config(tiny_assets, tmp_path / "out",
                      targets=[{"name": "tflite-arm", "options": {"precisions": ["int8"], "recipe": "b"}}],
                      quantization={"recipes": {"b": {"max_accuracy_drop": 5.0}}})
    report = run_pipeline(parse_config(raw), tiny_assets["model"])
    row = report["artifacts"][1]
    assert row["status"] == "passed", row
    budget = row["recipe"]["accuracy_budget"]
    assert budget["within_budget"] and budget["control_drop_points"] <= 5.0
    assert isinstance(budget["float_layers"], list)
    (stage,) = (tmp_path / "out" / "stages").glob("tflite-int8-budget-*")
    assert (stage / "budget.json").is_file() and (stage / "model_int8_budget.tflite").is_file()
