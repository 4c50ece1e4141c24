"""Accuracy-aware quantization on real toolchains (TFLite, ONNX Runtime, NNCF, the Edge TPU ladder) and inside the
pipeline: the loop stops within budget with the fewest float layers. The searches alone: tests/test_budget_search.py."""

from __future__ import annotations

import numpy as np
import pytest

from edgepipe.calibration.dataset import load_subset
from edgepipe.calibration.preprocess import PreprocessSpec
from edgepipe.config.schema import SplitSpec, Subset
from edgepipe.quantize import accuracy_aware as aa
from edgepipe.quantize.recipe_stages import ControlSet
from tests.fixtures import tiny_xception
from tests.fixtures.configs import INPUT
from tests.fixtures.tiny_runs import seed_stages

pytestmark = pytest.mark.heavy(seconds=58)  # worker-seconds measured: longest first (tests/fixtures/scheduling.py)

BUDGET = 2.0  # top-1 points


@pytest.fixture(scope="module")
def hostile(tiny_assets, tmp_path_factory):
    """The tiny Xception with one dead feature channel (BN gamma 0, beta -1 before the last
    ReLU) whose classifier-weight row is set to 1000: the float function does not see it (the
    feature is always 0), but the classifier's INT8 weight scale is set by the outlier, so every
    real weight rounds to 0 and the default INT8 model loses its accuracy. Keeping exactly one
    layer (the classifier) in float repairs it: a bad recipe with a known minimal fix."""
    import keras

    from edgepipe.stages.savedmodel import export_savedmodel

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
    from edgepipe.formats.runners import TFLiteRunner, tflite_interpreter_class
    from edgepipe.quantize.quantizers.tflite import tflite_to_budget

    h = hostile
    control = ControlSet(aa.Budget(BUDGET), h["control"].images, h["control"].labels, h["ref"])
    path, res = tflite_to_budget(h["sm"], h["out"], h["calib"].images, control, debug_images=16, max_float_layers=6)
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


def test_tflite_fidelity_budget_keeps_layers_in_float_until_agreement_and_snr_are_met(hostile, tmp_path):
    """No labels: agreement and SNR against the FP32 model's own scores. The hostile model's plain INT8
    output has lost its classifier; keeping it in float restores fidelity, and its p50 cost is measured."""
    from edgepipe.formats.runners import TFLiteRunner
    from edgepipe.quantize.quantizers.tflite import tflite_to_budget
    from edgepipe.validators.fidelity import fidelity_metrics

    h = hostile
    ref = h["model"].predict(h["control"].images, verbose=0)
    budget = aa.Budget(min_agreement=0.9, min_output_snr_db=15.0)
    control = ControlSet(budget, h["control"].images, reference_scores=ref)
    path, res = tflite_to_budget(h["sm"], tmp_path, h["calib"].images, control, debug_images=16, max_float_layers=6,
                                 latency_rounds=1)
    assert not budget.met(res.steps[0]) and res.steps[0].agreement < 0.9  # the plain model is unfaithful
    assert res.within_budget and res.chosen is res.steps[-1] and len(res.chosen.float_layers) >= 1
    assert all(s.top1 is None for s in res.steps)  # nothing label-based was measured
    runner = TFLiteRunner(path, 2)  # the written artifact, measured independently
    m = fidelity_metrics(ref, np.stack([runner.predict(x) for x in h["control"].images]))
    assert m["agreement"] >= 0.9 and m["output_snr_db"] >= 15.0
    assert m["agreement"] == pytest.approx(res.chosen.agreement)
    cost = res.latency_cost
    assert cost["int8_p50_ms"] > 0 and cost["budget_p50_ms"] > 0 and cost["rounds"] == 1
    assert cost["ratio"] == pytest.approx(cost["budget_p50_ms"] / cost["int8_p50_ms"]) and cost["cpu"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_int8_budget.tflite"]  # the comparison model is gone


def test_onnxruntime_fidelity_budget_excludes_the_broken_node(hostile, tmp_path):
    """ONNX Runtime: the ranking (qdq_loss_debug) puts the classifier with its ruined weights first, and
    leaving it unquantized (nodes_to_exclude) restores fidelity; the artifact is still a QDQ model.
    (The Softmax ranks first: its input is the ruined logits; alone it is not enough, with the Gemm it is.)"""
    import onnx

    from edgepipe.formats.runners import ONNXRunner
    from edgepipe.quantize.quantizers.onnxruntime import ort_to_budget
    from edgepipe.stages.onnx import convert_onnx
    from edgepipe.validators.fidelity import fidelity_metrics

    h = hostile
    (tmp_path / "fp32").mkdir()
    model = convert_onnx(h["sm"], tmp_path / "fp32")
    ref = h["model"].predict(h["control"].images, verbose=0)
    budget = aa.Budget(min_agreement=0.9, min_output_snr_db=15.0)
    (tmp_path / "q").mkdir()
    path, res = ort_to_budget(model, tmp_path / "q", h["calib"].images, ControlSet(budget, h["control"].images,
                              reference_scores=ref), max_float_layers=4, latency_rounds=1)
    assert not budget.met(res.steps[0]) and res.within_budget
    # the classifier (its Gemm, and the Softmax fed by its ruined logits) ranks worst and is what is kept in float
    assert {r["op"] for r in res.ranking[:2]} == {"Gemm", "Softmax"}
    assert {r["node"] for r in res.ranking[:2]} == set(res.chosen.float_layers)
    assert res.latency_cost["ratio"] > 0
    runner = ONNXRunner(path, 2)
    m = fidelity_metrics(ref, np.stack([runner.predict(x) for x in h["control"].images]))
    assert m["agreement"] >= 0.9 and m["output_snr_db"] >= 15.0
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops  # still an INT8 model
    assert sorted(p.name for p in (tmp_path / "q").iterdir()) == ["model_int8_budget.onnx"]


@pytest.mark.slow
def test_nncf_accuracy_control_meets_the_budget(hostile):
    import openvino as ov

    from edgepipe.quantize.quantizers.nncf import nncf_to_budget, quantize_nncf
    from edgepipe.stages.openvino import convert_ir

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
    control = ControlSet(aa.Budget(BUDGET), h["control"].images, h["control"].labels, h["ref"])
    path, info = nncf_to_budget(ir, h["out"] / "budget", h["calib"].images, control)
    assert 100 * (h["ref"] - top1_of(path)) <= BUDGET
    assert info["fake_quantize_ops"] > 0  # still an INT8 model, not a float one


def test_max_accuracy_drop_recipe_runs_inside_the_pipeline(tiny_assets, tiny_full_run, tmp_path):
    """The recipe field reaches the TFLite budget stage; the artifact record says what was kept."""
    seed_stages(tiny_full_run, tmp_path / "out")  # the reference and plain conversions: not what is checked
    from edgepipe.config.schema import parse_config
    from edgepipe.engine.orchestrate import run_pipeline
    from tests.fixtures.configs import tiny_config

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


def test_min_agreement_recipe_runs_inside_the_pipeline(tiny_assets, tiny_full_run, tmp_path):
    """A fidelity budget on the three quantizers in one run: each artifact record says what was
    measured on the control images and what the kept layers cost in p50; the terminal notes say it."""
    seed_stages(tiny_full_run, tmp_path / "out")
    from edgepipe.config.schema import parse_config
    from edgepipe.engine.orchestrate import run_pipeline
    from edgepipe.reports.terminal import recipe_notes
    from tests.fixtures.configs import tiny_config

    targets = [{"name": t, "options": {"precisions": ["int8"], "recipe": "f"}}
               for t in ("tflite-arm", "openvino-cpu", "onnx-cpu")]
    raw = tiny_config(tiny_assets, tmp_path / "out", targets=targets,
                      quantization={"recipes": {"f": {"min_agreement": 0.5}}})
    report = run_pipeline(parse_config(raw), tiny_assets["model"])
    rows = {r["artifact"]: r for r in report["artifacts"][1:]}
    for name in ("tflite-arm/int8", "openvino-cpu/int8", "onnx-cpu/int8"):
        assert rows[name]["status"] == "passed", rows[name]
        budget = rows[name]["recipe"]["accuracy_budget"]
        assert budget["within_budget"] and budget["control_agreement"] >= 0.5 and budget["control_images"] > 0
        assert "control_drop_points" not in budget  # a fidelity budget measures no top-1
    assert rows["tflite-arm/int8"]["recipe"]["accuracy_budget"]["float_layers"] == []  # met with nothing in float
    assert rows["openvino-cpu/int8"]["recipe"]["accuracy_budget"]["latency_cost"]["ratio"] > 0
    notes = "\n".join(recipe_notes(report))
    assert "tflite-arm/int8: fidelity budget agreement >= 0.5 met" in notes, notes
    assert list((tmp_path / "out" / "stages").glob("control-reference-scores-*"))


# ---- Edge TPU: full-integer repairs instead of float layers -------------------------------------


def _coral_budget_run(model, tiny_assets, out, budget):
    from edgepipe.config.schema import parse_config
    from edgepipe.engine.orchestrate import run_pipeline
    from tests.fixtures.configs import tiny_config

    raw = tiny_config(tiny_assets, out, targets=[{"name": "coral-edgetpu", "options": {"recipe": "b"}}],
                      quantization={"recipes": {"b": {"max_accuracy_drop": budget}}})
    report = run_pipeline(parse_config(raw), model)
    (row,) = report["artifacts"][1:]
    return row, row["recipe"]["edgetpu_repair"]


def test_edgetpu_budget_takes_the_plain_full_integer_model_when_it_is_within_budget(tiny_assets, tiny_full_run,
                                                                                   tmp_path):
    from edgepipe.core.hashing import sha256_file

    seed_stages(tiny_full_run, tmp_path / "out")  # tflite-arm's plain INT8 stage is then found, not rebuilt
    row, pick = _coral_budget_run(tiny_assets["model"], tiny_assets, tmp_path / "out", 100.0)
    assert pick["chosen"] == "recipe" and pick["within_budget"]
    assert [c["name"] for c in pick["candidates"]] == ["recipe"] and pick["not_measured"] == ["eq-sep", "eq-sep+cle"]
    assert pick["control_images"] > 0 and pick["resolution_points"] == pytest.approx(100 / pick["control_images"])
    (plain,) = (tmp_path / "out" / "stages").glob("tflite-int8-*")  # the rung is tflite-arm's default conversion
    assert sha256_file(plain / "model_int8.tflite") == \
        sha256_file(tmp_path / "out" / "artifacts" / "coral-edgetpu-int8" / "model_int8.tflite")
    assert not list((tmp_path / "out" / "stages").glob("savedmodel-equalized-*"))  # no repair was built


def test_edgetpu_budget_never_keeps_float_layers_and_says_when_no_repair_suffices(hostile, tiny_assets, tmp_path):
    """The hostile model needs its classifier in float (see the TFLite test above); the Edge TPU
    cannot do that, so every full-integer rung is measured, none meets the budget, the smallest
    drop is chosen and flagged, and the artifact is still a full-integer model."""
    from edgepipe.formats.runners import tflite_interpreter_class

    path = tmp_path / "hostile.keras"
    hostile["model"].save(path)
    row, pick = _coral_budget_run(path, tiny_assets, tmp_path / "out", BUDGET)
    assert [c["name"] for c in pick["candidates"]] == ["recipe", "eq-sep", "eq-sep+cle"]
    assert all(c["drop_points"] > BUDGET for c in pick["candidates"])
    assert not pick["within_budget"] and "no full-integer candidate met" in pick["why"]
    best = min(pick["candidates"], key=lambda c: c["drop_points"])
    assert pick["chosen"] == best["name"]
    cls, _ = tflite_interpreter_class()
    interp = cls(model_path=str(tmp_path / "out" / "artifacts" / "coral-edgetpu-int8" / "model_int8.tflite"))
    interp.allocate_tensors()
    floats = [d["name"] for d in interp.get_tensor_details() if d["dtype"] == np.float32]
    assert floats == []  # full-integer: not one float tensor, int8 I/O included


def test_accuracy_control_subset_is_used_and_must_be_held_out(tiny_assets, tiny_full_run, tmp_path):
    from edgepipe.config.schema import parse_config
    from edgepipe.core.errors import ConfigError
    from edgepipe.engine.orchestrate import run_pipeline
    from tests.fixtures.configs import tiny_config

    raw = tiny_config(tiny_assets, tmp_path / "out", targets=[{"name": "coral-edgetpu", "options": {"recipe": "b"}}],
                      quantization={"recipes": {"b": {"max_accuracy_drop": 50.0}}})
    bad = {**raw, "data": {**raw["data"], "accuracy_control": {"source": str(tiny_assets["data"]), "split": "test"}}}
    with pytest.raises(ConfigError, match="data.accuracy_control: expected images held out from the validation"):
        parse_config(bad)
    raw["data"]["accuracy_control"] = {"source": str(tiny_assets["data"]), "split": "train"}
    seed_stages(tiny_full_run, tmp_path / "out")
    report = run_pipeline(parse_config(raw), tiny_assets["model"])
    pick = report["artifacts"][1]["recipe"]["edgetpu_repair"]
    train = load_subset(Subset(source=str(tiny_assets["data"]), split="train"),
                        SplitSpec(seed=0, calibration=30, test_fraction=0.3), tiny_xception.CLASSES,
                        PreprocessSpec(INPUT, INPUT), "t")
    assert pick["control_images"] == len(train) != 30  # the train split, not the 30 calibration images


