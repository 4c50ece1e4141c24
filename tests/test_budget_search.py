"""Accuracy-aware quantization's search, without a toolchain: the greedy float-fallback loop, the fidelity budget,
the full-integer ladder and its pick, the recipe fields that ask for them, and what the terminal says about the
choice. The same searches on real TFLite, ONNX Runtime, NNCF and Edge TPU models: tests/test_accuracy_aware.py."""

from __future__ import annotations

import numpy as np
import pytest

from edgepipe.quantize import accuracy_aware as aa


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


def test_fidelity_budget_stops_when_every_bound_is_met():
    """Agreement and SNR: the loop stops at the first prefix that meets both, not the first that meets one."""
    measured = {0: (0.90, 15.0), 1: (0.99, 20.0), 2: (0.99, 27.0), 3: (1.0, 40.0)}
    budget = aa.Budget(min_agreement=0.985, min_output_snr_db=26.0)
    res = aa.greedy_budget(["a", "b", "c"], lambda ly: dict(zip(("agreement", "output_snr_db"),
                                                                  measured[len(ly)], strict=True)), budget)
    assert res.within_budget and res.chosen.float_layers == ("a", "b") and len(res.steps) == 3
    out = res.as_dict()
    assert out["min_agreement"] == 0.985 and out["chosen_output_snr_db"] == 27.0 and "max_drop_points" not in out
    # unreachable: the step closest to the budget (fewest bounds missed, then smallest shortfalls) is chosen
    res = aa.greedy_budget(["a", "b"], lambda ly: dict(zip(("agreement", "output_snr_db"), measured[len(ly)],
                                                          strict=True)), aa.Budget(min_output_snr_db=30.0))
    assert not res.within_budget and res.chosen.float_layers == ("a", "b")


def test_a_budget_needs_a_bound_and_a_share():
    with pytest.raises(ValueError, match="expected at least one of"):
        aa.Budget()
    with pytest.raises(ValueError, match=r"min_agreement: expected a share in \[0, 1\]. Received: 98.5"):
        aa.Budget(min_agreement=98.5)
    from edgepipe.quantize.recipes import BUILTIN, Recipe

    assert aa.Budget.of(BUILTIN["eq-sep"]) is None
    assert aa.Budget.of(Recipe(min_agreement=0.99)) == aa.Budget(None, 0.99, None)
    # a recipe without the new fields keeps its cache key (artifacts cached before them stay valid)
    assert "min_agreement" not in BUILTIN["eq-sep"].cache_params()
    assert Recipe(min_agreement=0.99).cache_params()["min_agreement"] == 0.99


def test_fidelity_budgets_are_refused_where_they_cannot_be_met_as_asked():
    from edgepipe.quantize.recipes import Recipe, problems

    assert problems(Recipe(min_agreement=0.99, min_output_snr_db=26), "tflite") == []
    assert problems(Recipe(min_agreement=0.99), "nncf") == []
    assert any("use min_agreement for NNCF" in p for p in problems(Recipe(min_output_snr_db=26), "nncf"))
    assert any("one metric at a time" in p for p in problems(Recipe(min_agreement=0.9, max_accuracy_drop=1), "nncf"))
    assert any("Edge TPU does not run" in p for p in problems(Recipe(min_agreement=0.99), "edgetpu"))
    assert problems(Recipe(min_agreement=0.99, min_output_snr_db=26, max_accuracy_drop=1), "onnxruntime") == []
    assert any("8-bit activations only" in p for p in problems(Recipe(min_agreement=0.9, activation_bits=16),
                                                               "tflite"))


def test_full_integer_ladder_stacks_only_missing_repairs():
    from edgepipe.quantize.recipes import Recipe

    ladder = aa.full_integer_ladder(Recipe(max_accuracy_drop=0.3))
    assert [(n, t) for n, _, t in ladder] == [("recipe", 0), ("eq-sep", 1), ("eq-sep+cle", 2)]
    assert all(r.max_accuracy_drop is None for _, r, _ in ladder)  # a rung is a plain full-integer recipe
    assert ladder[2][1].equalize_separable and ladder[2][1].cross_layer_equalization
    ladder = aa.full_integer_ladder(Recipe(weights="per_tensor", equalize_separable=True, max_accuracy_drop=1))
    assert [n for n, _, _ in ladder] == ["recipe", "per-channel", "per-channel+cle"]
    assert ladder[1][1].weights == "per_channel" and ladder[1][1].equalize_separable


def test_full_integer_search_stops_at_the_first_rung_within_budget():
    from edgepipe.quantize.recipes import Recipe

    ladder = aa.full_integer_ladder(Recipe(max_accuracy_drop=0.3))
    drops = {"recipe": 0.5, "eq-sep": 0.1, "eq-sep+cle": 0.0}
    seen = []
    pick = aa.search_full_integer(ladder, lambda n, r: seen.append(n) or drops[n], 0.3)
    assert seen == ["recipe", "eq-sep"] and pick["chosen"] == "eq-sep" and pick["within_budget"]
    assert pick["not_measured"] == ["eq-sep+cle"]
    pick = aa.search_full_integer(ladder, lambda n, r: {"recipe": 2.0, "eq-sep": 3.0, "eq-sep+cle": 1.0}[n], 0.3)
    assert pick["chosen"] == "eq-sep+cle" and not pick["within_budget"] and pick["not_measured"] == []


def test_edgetpu_recipes_are_tflite_recipes_with_8_bit_only():
    from edgepipe.quantize.recipes import BUILTIN, Recipe, problems

    assert problems(Recipe(max_accuracy_drop=0.3, equalize_separable=True), "edgetpu") == []
    assert any("8-bit integer ops only" in p for p in problems(BUILTIN["tflite-16x8"], "edgetpu"))
    assert any("min/max" in p for p in problems(BUILTIN["kl"], "edgetpu"))  # the TFLite converter's limits
    assert any("NNCF setting; the edgetpu quantizer" in p for p in problems(BUILTIN["nncf-mixed"], "edgetpu"))


def test_control_set_warns_when_one_image_is_coarser_than_the_budget(caplog):
    from types import SimpleNamespace

    from edgepipe.core.errors import ConfigError
    from edgepipe.quantize.recipe_stages import control_set

    calib = SimpleNamespace(images=np.zeros((301, 2, 2, 3), np.float32), labels=np.array([0] * 300 + [-1]))
    with caplog.at_level("WARNING", logger="edgepipe"):
        images, labels = control_set(None, calib, 0.3)
    assert len(images) == len(labels) == 300  # the unlabeled image is not a control image
    assert "one image is 0.33 top-1 points, coarser than the 0.3-point budget" in caplog.text
    assert "more than 333 labeled images" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="edgepipe"):
        control_set(None, calib, 0.5)
    assert caplog.text == ""
    with pytest.raises(ConfigError, match="expected labeled calibration images"):
        control_set(None, SimpleNamespace(images=calib.images, labels=np.full(301, -1)), 0.3)


def test_terminal_names_what_a_budget_chose():
    from edgepipe.reports.terminal import recipe_notes

    rows = [{"artifact": "coral-edgetpu/int8", "recipe": {"max_accuracy_drop": 0.3, "edgetpu_repair": {
                "control_images": 300, "why": "eq-sep: within the 0.3-point budget (-0.13)"}}},
            {"artifact": "tflite-arm/int8", "recipe": {"max_accuracy_drop": 0.3, "accuracy_budget": {
                "within_budget": True, "float_layers": ["a", "b"], "control_drop_points": 0.0, "control_images": 300}}},
            {"artifact": "openvino-cpu/int8", "recipe": {"max_accuracy_drop": 0.3, "accuracy_budget": {
                "within_budget": False, "control_drop_points": 0.67, "fake_quantize_ops": 99}}},
            {"artifact": "onnx-cpu/int8", "recipe": {"name": "default"}},
            {"artifact": "tflite-arm/int8", "recipe": {"max_accuracy_drop": None, "min_agreement": 0.985,
                                                       "min_output_snr_db": 26.0, "accuracy_budget": {
                "within_budget": False, "float_layers": ["a"] * 12, "control_agreement": 0.97,
                "control_output_snr_db": 21.04, "control_images": 300, "latency_cost": {"ratio": 1.314}}}}]
    assert recipe_notes({"artifacts": rows}) == [
        "coral-edgetpu/int8: budget 0.3 pts, full-integer repair chosen on 300 control images: "
        "eq-sep: within the 0.3-point budget (-0.13)",
        "tflite-arm/int8: budget 0.3 pts met on 300 control images (drop +0.00); 2 layer(s) kept in float",
        "openvino-cpu/int8: budget 0.3 pts NOT met on ? control images (drop +0.67); 99 FakeQuantize ops left",
        "tflite-arm/int8: fidelity budget agreement >= 0.985, SNR >= 26 dB NOT met on 300 control images "
        "(agreement 0.970, SNR 21.0 dB); 12 layer(s) kept in float, p50 x1.31 vs plain INT8"]
