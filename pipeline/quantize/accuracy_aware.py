"""Quantization to an accuracy budget (`max_accuracy_drop`, in top-1 points vs FP32): the
toolchain-free algorithms. How each toolchain runs them is in its quantizer module (`quantizers/`).

- **Float fallback** (`greedy_float_fallback`, used by `quantizers/tflite.py`): the worst layers,
  in the order the toolchain ranked them by their own quantization error, are kept in float one by
  one until the top-1 drop on the accuracy-control set is within budget. The loop stops at the
  first prefix of the ranking that meets the budget, so it keeps the fewest layers *in ranking
  order*; every step's drop is recorded (`BudgetResult`). NNCF runs its own equivalent,
  `nncf.quantize_with_accuracy_control` (`quantizers/nncf.py`).
- **Full-integer repairs** (used by `quantizers/edgetpu.py`): the Edge TPU runs only full-integer
  graphs (a float layer splits the graph and runs on the CPU), so instead of float fallback it
  climbs a ladder of full-integer repairs (`full_integer_ladder`: per-channel weights, separable
  equalization, cross-layer equalization), measuring each on the accuracy-control set until one is
  within budget (`search_full_integer`), and picks with `pick_full_integer`.

The accuracy-control set should not be the test split the final numbers are reported on;
edgepipe's benchmark uses the (labeled, held-out) calibration split for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass(frozen=True)
class Step:
    float_layers: tuple[str, ...]
    top1: float
    drop_points: float


@dataclass
class BudgetResult:
    max_drop_points: float
    reference_top1: float
    steps: list[Step] = field(default_factory=list)
    ranking: list[dict] = field(default_factory=list)  # worst first
    within_budget: bool = False

    @property
    def chosen(self) -> Step:
        """The first step within budget, else the best step seen."""
        for s in self.steps:
            if s.drop_points <= self.max_drop_points:
                return s
        return min(self.steps, key=lambda s: (s.drop_points, len(s.float_layers)))

    def as_dict(self) -> dict:
        return {"max_drop_points": self.max_drop_points, "reference_top1": self.reference_top1,
                "within_budget": self.within_budget, "float_layers": list(self.chosen.float_layers),
                "chosen_drop_points": self.chosen.drop_points,
                "steps": [asdict(s) for s in self.steps], "ranking": self.ranking}


def top1(scores: np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(scores).argmax(axis=1) == labels).mean())


def greedy_float_fallback(ranked: Sequence[str], evaluate: Callable[[tuple[str, ...]], float],
                          reference_top1: float, max_drop_points: float,
                          max_float_layers: int | None = None) -> BudgetResult:
    """Keep the k worst layers in float for k = 0, 1, 2, ... until the drop is within budget.

    `evaluate(float_layers)` quantizes with those layers in float and returns top-1 on the
    accuracy-control set. Stops at the first k within budget, or after `max_float_layers`.
    """
    if max_drop_points < 0:
        raise ValueError(f"max_drop_points: expected >= 0. Received: {max_drop_points}")
    limit = len(ranked) if max_float_layers is None else min(max_float_layers, len(ranked))
    res = BudgetResult(max_drop_points, reference_top1)
    for k in range(limit + 1):
        layers = tuple(ranked[:k])
        t = evaluate(layers)
        res.steps.append(Step(layers, t, 100.0 * (reference_top1 - t)))
        if res.steps[-1].drop_points <= max_drop_points:
            res.within_budget = True
            break
    return res


# ---- full-integer repairs (the Edge TPU) ------------------------------------------------------

@dataclass(frozen=True)
class Candidate:
    """A full-integer recipe measured on the accuracy-control set."""

    name: str
    drop_points: float
    p50_ms: float | None = None
    transforms: int = 0  # how many repairs it stacks (equalization, clipping, ...): fewer is simpler


def pick_full_integer(candidates: Sequence[Candidate], max_drop_points: float) -> dict:
    """Choose among full-integer recipes for a target that cannot run float layers.

    Rule: among candidates within budget, the simplest (fewest stacked transforms), then the
    fastest, then the smallest drop; if none is within budget, the smallest drop (flagged
    `within_budget: false`, because float fallback is not an option on the Edge TPU).
    """
    if not candidates:
        raise ValueError("pick_full_integer: expected at least one candidate. Received: none")
    ok = [c for c in candidates if c.drop_points <= max_drop_points]
    if ok:
        best = min(ok, key=lambda c: (c.transforms, c.p50_ms if c.p50_ms is not None else float("inf"),
                                      c.drop_points))
        why = (f"{best.name}: within the {max_drop_points:g}-point budget ({best.drop_points:+.2f}); "
               f"{len(ok)} of {len(candidates)} candidates were, this one stacks the fewest repairs")
    else:
        best = min(candidates, key=lambda c: c.drop_points)
        why = (f"{best.name}: no full-integer candidate met the {max_drop_points:g}-point budget; "
               f"this one has the smallest drop ({best.drop_points:+.2f})")
    return {"chosen": best.name, "within_budget": bool(ok), "why": why,
            "candidates": [asdict(c) for c in candidates]}


def full_integer_ladder(recipe) -> list[tuple[str, object, int]]:
    """Full-integer repairs for a target that cannot keep layers in float, simplest first:
    (name, recipe, repairs stacked). The recipe itself without its budget comes first; then, each
    on top of the previous, per-channel weights (when the recipe asked for per-tensor), separable
    activation equalization and cross-layer equalization, skipping what the recipe already has.
    TFLite's calibrator records only min/max, so there is no clipping (percentile) rung."""
    base = recipe.model_copy(update={"max_accuracy_drop": None})
    rungs = [("recipe", base)]
    steps = (("per-channel", {"weights": "per_channel"}, base.weights == "per_tensor"),
             ("eq-sep", {"equalize_separable": True}, not base.equalize_separable),
             ("cle", {"cross_layer_equalization": True}, not base.cross_layer_equalization))
    current, names = base, []
    for name, update, needed in steps:
        if needed:
            current = current.model_copy(update=update)
            names.append(name)
            rungs.append(("+".join(names), current))
    return [(name, r, i) for i, (name, r) in enumerate(rungs)]


def search_full_integer(ladder: Sequence[tuple[str, object, int]], evaluate: Callable[[str, object], float],
                        max_drop_points: float) -> dict:
    """Measure the ladder's rungs in order (`evaluate(name, recipe)` -> drop in points on the
    accuracy-control set) and stop at the first within budget; later rungs stack more repairs,
    so `pick_full_integer` would not choose them. Returns its pick plus the rungs not measured."""
    if max_drop_points < 0:
        raise ValueError(f"max_drop_points: expected >= 0. Received: {max_drop_points}")
    cands: list[Candidate] = []
    for name, recipe, transforms in ladder:
        cands.append(Candidate(name, float(evaluate(name, recipe)), None, transforms))
        if cands[-1].drop_points <= max_drop_points:
            break
    pick = pick_full_integer(cands, max_drop_points)
    return {**pick, "not_measured": [name for name, _, _ in ladder[len(cands):]]}
