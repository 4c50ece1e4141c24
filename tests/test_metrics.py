"""Accuracy, parity, CI and gate logic on hand-made arrays whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from edgepipe.core.errors import EXIT_GATE_FAILED, EXIT_OK, EXIT_PARTIAL
from edgepipe.validators import accuracy, gates, latency, parity, stats
from edgepipe.validators.latency import summarize


def _onehot(pred, n=6, hi=0.9):
    s = np.full((len(pred), n), (1 - hi) / (n - 1), dtype=np.float32)
    s[np.arange(len(pred)), pred] = hi
    return s


def test_top1_top5_per_class_and_confusion_known_answers():
    # 7 classes; scores rank classes so that the true label is at a known position per image
    scores = np.array([
        [7, 6, 5, 4, 3, 2, 1],  # true 0: rank 1
        [1, 7, 6, 5, 4, 3, 2],  # true 1: rank 1
        [7, 6, 5, 4, 3, 2, 1],  # true 4: rank 5 -> top-5 hit, top-1 miss (pred 0)
        [7, 6, 5, 4, 3, 2, 1],  # true 6: rank 7 -> miss both (pred 0)
    ], dtype=np.float32)
    labels = np.array([0, 1, 4, 6])
    m = accuracy.accuracy_metrics(scores, labels, None, [f"c{i}" for i in range(7)])
    assert m["top1"] == 0.5 and m["top5"] == 0.75 and m["top5_k"] == 5 and m["n_images"] == 4
    cm = np.array(m["confusion"])
    assert cm.shape == (7, 7) and cm.sum() == 4
    assert cm[0, 0] == 1 and cm[1, 1] == 1 and cm[4, 0] == 1 and cm[6, 0] == 1
    pc = {c["label"]: c for c in m["per_class"]}
    assert pc["c0"]["accuracy"] == 1.0 and pc["c4"]["accuracy"] == 0.0 and pc["c2"]["accuracy"] is None
    assert pc["c6"]["n"] == 1


def test_topk_is_capped_at_the_class_count():
    scores = np.array([[0.2, 0.5, 0.3], [0.9, 0.05, 0.05]], dtype=np.float32)
    m = accuracy.accuracy_metrics(scores, np.array([0, 2]), None)
    assert m["top5_k"] == 3 and m["top5"] == 1.0 and m["top1"] == 0.0


def test_unlabeled_images_are_left_out_of_accuracy_but_not_agreement():
    s = _onehot(np.array([0, 1, 2, 3]))
    ref = _onehot(np.array([0, 1, 2, 0]))
    m = accuracy.accuracy_metrics(s, np.array([0, 1, -1, -1]), ref)
    assert m["n_images"] == 2 and m["top1"] == 1.0 and m["agreement"] == 0.75


def test_bootstrap_ci_contains_zero_for_identical_predictions():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 6, 400)
    pred = np.where(rng.random(400) < 0.7, labels, (labels + 1) % 6)
    m = accuracy.accuracy_metrics(_onehot(pred), labels, _onehot(pred))
    assert m["drop_points"] == 0.0 and m["drop_ci95_points"] == [0.0, 0.0] and m["drop_within_noise"]


def test_bootstrap_ci_within_noise_for_a_small_random_difference():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 6, 400)
    ref = np.where(rng.random(400) < 0.75, labels, (labels + 1) % 6)
    pred = ref.copy()
    right, wrong = np.flatnonzero(ref == labels), np.flatnonzero(ref != labels)
    pred[right[:4]] = (labels[right[:4]] + 2) % 6  # 4 images become wrong
    pred[wrong[:2]] = labels[wrong[:2]]  # 2 become right: net drop 2 of 400 = 0.5 points
    m = accuracy.accuracy_metrics(_onehot(pred), labels, _onehot(ref))
    lo, hi = m["drop_ci95_points"]
    assert m["drop_points"] == pytest.approx(0.5)
    assert lo < 0 < hi and m["drop_within_noise"] and lo <= m["drop_points"] <= hi


def test_bootstrap_ci_excludes_zero_for_a_clearly_worse_model():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 6, 400)
    ref = np.where(rng.random(400) < 0.9, labels, (labels + 1) % 6)
    worse = np.where(rng.random(400) < 0.6, ref, (ref + 3) % 6)  # ~40% of predictions broken
    m = accuracy.accuracy_metrics(_onehot(worse), labels, _onehot(ref))
    lo, hi = m["drop_ci95_points"]
    assert m["drop_points"] > 20 and lo > 0 and not m["drop_within_noise"]
    assert lo <= m["drop_points"] <= hi


def test_bootstrap_is_deterministic():
    a = np.array([1, 0, 1, 1, 0, 1, 1, 1] * 10, dtype=float)
    b = np.roll(a, 3)
    assert stats.paired_bootstrap_diff(a, b) == stats.paired_bootstrap_diff(a, b)


def test_labels_beyond_the_model_outputs_are_rejected():
    with pytest.raises(ValueError, match="expected class indices < 3"):
        accuracy.accuracy_metrics(np.eye(3, dtype=np.float32), np.array([0, 1, 5]), None)


def test_parity_passes_for_tiny_differences_and_fails_for_large_ones():
    rng = np.random.default_rng(0)
    ref = rng.dirichlet(np.ones(4), 50).astype(np.float32)
    ok = parity.output_parity(ref + 1e-6, ref)
    assert ok["passed"] and ok["cosine_min"] > 0.9999 and ok["max_abs"] < 2e-6
    bad = ref.copy()
    bad[7] = bad[7][::-1]  # one image's scores scrambled
    res = parity.output_parity(bad, ref)
    assert not res["passed"] and res["cosine_min"] < 0.999 and res["max_abs"] > 1e-3
    drift = parity.output_parity(ref + 5e-3, ref)  # cosine still ~1 but max-abs beyond the tolerance
    assert drift["cosine_min"] > 0.999 and not drift["passed"]


def test_median_ci_ranks_match_the_binomial_tables():
    assert stats.median_ci_ranks(50) == (17, 32)  # 1-based 18th and 33rd order statistics
    assert stats.median_ci_ranks(100) == (39, 60)
    x = np.arange(100.0)
    lo, hi = stats.median_ci(x)
    assert lo < np.median(x) < hi


def test_latency_summary_is_ordered_and_has_cis():
    t = np.random.default_rng(0).gamma(4.0, 2.0, 200) + 10
    s = summarize(t)
    assert s["min_ms"] <= s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"] <= s["max_ms"]
    assert s["p50_ci95_ms"][0] <= s["p50_ms"] <= s["p50_ci95_ms"][1]
    assert s["mean_ci95_ms"][0] <= s["mean_ms"] <= s["mean_ci95_ms"][1]


class _Gates:
    max_top1_drop = 1.0
    max_p90_ms = None
    parity_min_cosine = 0.999


def test_gate_reasons_include_the_drop_ci_and_parity():
    acc = {"drop_points": 3.0, "drop_ci95_points": [1.5, 4.5]}
    par = {"passed": False, "cosine_min": 0.99, "min_cosine": 0.999, "max_abs": 0.2, "max_abs_tolerance": 1e-3}
    reasons = [*accuracy.gate(_Gates(), acc), *latency.gate(_Gates(), {"p90_ms": 1.0}), *parity.gate(_Gates(), par)]
    assert any("95% CI +1.50..+4.50" in r for r in reasons) and any("output parity" in r for r in reasons)


@pytest.mark.parametrize("statuses, code", [
    (["reference", "passed"], EXIT_OK),
    (["reference", "passed", "failed"], EXIT_GATE_FAILED),
    (["reference", "passed", "partial"], EXIT_PARTIAL),
    (["reference", "error", "partial"], EXIT_GATE_FAILED),
])
def test_exit_codes(statuses, code):
    assert gates.exit_code(statuses) == code


def test_side_by_side_rotates_the_order_and_runs_the_hooks_outside_the_timing():
    """Three runners, three rounds: each round starts with the next runner; `between` runs after each runner's
    timing and `on_round` after each round, with every runner's p50s so far."""
    calls, rounds = [], []

    class Runner:
        def __init__(self, name):
            self.name = name

        def predict(self, x):
            if not calls or calls[-1] != self.name:
                calls.append(self.name)
            return x

    runners = {n: Runner(n) for n in ("a", "b", "c")}
    res = latency.side_by_side(runners, np.zeros((2, 1), np.float32), rounds=3, warmup=1, runs=2,
                               between=lambda: calls.append("|"),
                               on_round=lambda i, p50s: rounds.append((i, {n: len(v) for n, v in p50s.items()})))
    assert calls == ["a", "|", "b", "|", "c", "|", "b", "|", "c", "|", "a", "|", "c", "|", "a", "|", "b", "|"]
    assert rounds == [(0, {"a": 1, "b": 1, "c": 1}), (1, {"a": 2, "b": 2, "c": 2}), (2, {"a": 3, "b": 3, "c": 3})]
    assert res["rounds"] == 3 and all(len(v) == 3 for v in res["round_p50_ms"].values())
    assert set(res["p50_ms"]) == {"a", "b", "c"} and "busy" in res["load"]
