"""Fidelity metrics (agreement + CI, output SNR, KL, flips) and the fidelity gates, on synthetic scores."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgepipe.validators import fidelity as fid
from edgepipe.validators.stats import wilson_ci


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def ref():
    rng = np.random.default_rng(0)
    return _softmax(rng.normal(0, 2.0, (800, 4)))


def test_identical_scores_are_perfect(ref):
    m = fid.fidelity_metrics(ref, ref.copy())
    assert m["agreement"] == 1.0 and m["flipped"] == 0 and m["flips"] == []
    assert m["output_snr_db"] == 999.0
    assert m["kl_mean"] == pytest.approx(0.0, abs=1e-12)
    lo, hi = m["agreement_ci95"]
    assert hi == 1.0 and 0.99 < lo < 1.0  # Wilson: 800/800 is not certainty
    assert fid.fidelity_gate(m, 0.985, 26.0) == []


def test_snr_is_reference_energy_over_difference_energy(ref):
    noise = np.full_like(ref, 0.01)
    expected = 10 * math.log10((ref ** 2).sum() / (noise ** 2).sum())
    assert fid.output_snr_db(ref, ref + noise) == pytest.approx(expected, rel=1e-12)
    # half the error amplitude is +6.02 dB
    assert fid.output_snr_db(ref, ref + noise / 2) - fid.output_snr_db(ref, ref + noise) == pytest.approx(
        20 * math.log10(2), rel=1e-9)


def test_flips_are_listed_with_their_fp32_margin():
    ref = np.array([[0.7, 0.2, 0.1], [0.45, 0.40, 0.15], [0.1, 0.8, 0.1], [0.34, 0.33, 0.33]])
    q = np.array([[0.7, 0.2, 0.1], [0.40, 0.45, 0.15], [0.1, 0.8, 0.1], [0.32, 0.35, 0.33]])
    m = fid.fidelity_metrics(ref, q, names=["a", "b", "c", "d"], class_names=["x", "y", "z"])
    assert m["flipped"] == 2 and m["agreement"] == 0.5
    assert [f["index"] for f in m["flips"]] == [3, 1]  # smallest FP32 margin first
    assert m["flips"][0] == {"index": 3, "ref_top1": 0, "top1": 1, "ref_margin": pytest.approx(0.01),
                             "ref_label": "x", "label": "y", "name": "d"}
    assert m["flips"][1]["ref_margin"] == pytest.approx(0.05)
    assert m["flip_margin_median"] == pytest.approx(0.03)


def test_kl_matches_the_definition():
    p = np.array([[0.5, 0.25, 0.25]])
    q = np.array([[0.25, 0.5, 0.25]])
    expected = 0.5 * math.log(2) + 0.25 * math.log(0.5)
    assert fid.kl_per_image(p, q)[0] == pytest.approx(expected)
    assert fid.fidelity_metrics(p, q)["kl_mean"] == pytest.approx(expected)


def test_kl_and_margins_of_a_logits_head_are_those_of_its_softmax():
    """A model without a softmax (`classifier_activation=None`) gives logits: the KL and the flips' margins are
    those of their softmax, and the report says so. Clipping them at 0 instead would have kept only the positive
    logits."""
    rng = np.random.default_rng(3)
    z = rng.normal(0, 3.0, (200, 5))
    zq = z + rng.normal(0, 0.3, z.shape)
    assert not fid.are_probabilities(z) and fid.are_probabilities(_softmax(z))
    m = fid.fidelity_metrics(z, zq)
    expected = fid.kl_per_image(_softmax(z), _softmax(zq))
    assert m["scores_read_as"] == "logits (softmax taken)" and m["kl_mean"] == pytest.approx(expected.mean(),
                                                                                             rel=1e-9)
    probs = fid.fidelity_metrics(_softmax(z), _softmax(zq))
    assert probs["scores_read_as"] == "probabilities"
    # the flips' FP32 margins are read the same way: in probability, whatever the head
    assert [f["ref_margin"] for f in m["flips"]] == pytest.approx([f["ref_margin"] for f in probs["flips"]])
    assert m["ref_margin_below_0.1"] == probs["ref_margin_below_0.1"]
    # a softmax that sums to 1 only to float32 rounding, and its dequantized INT8 copy, are still probabilities
    p32 = _softmax(z).astype(np.float32)
    assert fid.are_probabilities(p32)
    assert fid.kl_per_image(p32, p32).max() == pytest.approx(0.0, abs=1e-12)


def test_the_agreement_interval_is_wilsons_and_is_asymmetric_near_one():
    ref = np.eye(3)[np.arange(786) % 3] + 0.01
    q = ref.copy()
    q[:16] = np.roll(q[:16], 1, axis=1)  # 16 images whose top-1 class moves; 770 of 786 agree
    m = fid.fidelity_metrics(ref, q)
    lo, hi = m["agreement_ci95"]
    assert m["flipped"] == 16 and (lo, hi) == wilson_ci(770, 786)  # the one interval of validators/stats.py
    assert lo < 770 / 786 < hi
    assert (hi - 770 / 786) < (770 / 786 - lo)  # squeezed against 1
    assert fid.fidelity_metrics(ref, ref)["agreement_ci95"][1] == 1.0
    lo0, hi0 = wilson_ci(0, 10)
    assert lo0 == 0.0 and 0.2 < hi0 < 0.35


def test_a_noisy_artifact_fails_both_gates_and_a_faithful_one_passes(ref):
    rng = np.random.default_rng(1)
    noisy = np.clip(ref + rng.normal(0, 0.08, ref.shape), 0, None)  # ~20 dB class of error
    faithful = np.clip(ref + rng.normal(0, 0.005, ref.shape), 0, None)
    m_noisy = fid.fidelity_metrics(ref, noisy)
    m_ok = fid.fidelity_metrics(ref, faithful)
    assert m_noisy["output_snr_db"] < 26.0 < m_ok["output_snr_db"]
    assert m_noisy["agreement"] < 0.985 <= m_ok["agreement"]
    reasons = fid.fidelity_gate(m_noisy, min_agreement=0.985, min_output_snr_db=26.0)
    assert len(reasons) == 2
    assert "min_agreement 0.985" in reasons[0] and f"{m_noisy['flipped']} of 800" in reasons[0]
    assert "min_output_snr_db 26" in reasons[1]
    assert fid.fidelity_gate(m_ok, min_agreement=0.985, min_output_snr_db=26.0) == []
    # each gate alone, and no gate set
    assert len(fid.fidelity_gate(m_noisy, min_agreement=0.985)) == 1
    assert len(fid.fidelity_gate(m_noisy, min_output_snr_db=26.0)) == 1
    assert fid.fidelity_gate(m_noisy) == []


@pytest.mark.parametrize("bad", [np.zeros((3, 4)), np.zeros((4,)), np.full((4, 4), np.nan)])
def test_bad_shapes_and_values_are_refused(bad):
    ref = np.full((4, 4), 0.25)
    with pytest.raises(ValueError, match="expected"):
        fid.fidelity_metrics(ref, bad)
