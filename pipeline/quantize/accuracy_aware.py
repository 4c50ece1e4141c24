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

- **Fidelity budget** (`min_agreement`, `min_output_snr_db`: agreement with the FP32 top-1 and
  output SNR vs the FP32 scores, `Budget`): the same float-fallback loop (`greedy_budget`), stopping
  at the first prefix whose fidelity to FP32 on the control images meets every bound set. It needs
  no labels: the FP32 model's own scores on the control images are the reference.

The accuracy-control set should not be the test split the final numbers are reported on;
edgepipe's benchmark uses the (labeled, held-out) calibration split for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass(frozen=True)
class Budget:
    """What a quantized model must reach on the control images, each bound optional: top-1 drop vs
    FP32 (points), agreement with the FP32 top-1, output SNR vs the FP32 scores (dB)."""

    max_drop_points: float | None = None
    min_agreement: float | None = None
    min_output_snr_db: float | None = None

    def __post_init__(self):
        if self.max_drop_points is not None and self.max_drop_points < 0:
            raise ValueError(f"max_drop_points: expected >= 0. Received: {self.max_drop_points}")
        if self.min_agreement is not None and not 0.0 <= self.min_agreement <= 1.0:
            raise ValueError(f"min_agreement: expected a share in [0, 1]. Received: {self.min_agreement}")
        if self.empty:
            raise ValueError("budget: expected at least one of max_drop_points, min_agreement, "
                             "min_output_snr_db. Received: none")

    @classmethod
    def of(cls, recipe) -> Budget | None:
        """The recipe's budget (`max_accuracy_drop`, `min_agreement`, `min_output_snr_db`), or None."""
        fields = (recipe.max_accuracy_drop, recipe.min_agreement, recipe.min_output_snr_db)
        return None if all(f is None for f in fields) else cls(*fields)

    @property
    def empty(self) -> bool:
        return self.max_drop_points is None and self.min_agreement is None and self.min_output_snr_db is None

    @property
    def needs_labels(self) -> bool:
        return self.max_drop_points is not None

    @property
    def fidelity(self) -> bool:
        return self.min_agreement is not None or self.min_output_snr_db is not None

    def shortfalls(self, step: Step) -> list[float]:
        """How far `step` is from each bound set (0 = met), in each bound's own unit."""
        out = []
        if self.max_drop_points is not None:
            out.append(max(0.0, step.drop_points - self.max_drop_points))
        if self.min_agreement is not None:
            out.append(max(0.0, self.min_agreement - step.agreement))
        if self.min_output_snr_db is not None:
            out.append(max(0.0, self.min_output_snr_db - step.output_snr_db))
        return out

    def met(self, step: Step) -> bool:
        return not any(self.shortfalls(step))

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Step:
    float_layers: tuple[str, ...]
    top1: float | None = None
    drop_points: float | None = None
    agreement: float | None = None
    output_snr_db: float | None = None


@dataclass
class BudgetResult:
    budget: Budget
    reference_top1: float | None = None
    steps: list[Step] = field(default_factory=list)
    ranking: list[dict] = field(default_factory=list)  # worst first
    within_budget: bool = False
    latency_cost: dict | None = None  # p50 of the chosen model vs the plain INT8 one, when measured

    @property
    def max_drop_points(self) -> float | None:
        return self.budget.max_drop_points

    @property
    def chosen(self) -> Step:
        """The first step within budget, else the step closest to it (fewest bounds missed, then the
        smallest shortfalls, then the fewest float layers)."""
        for s in self.steps:
            if self.budget.met(s):
                return s
        return min(self.steps, key=lambda s: (sum(x > 0 for x in self.budget.shortfalls(s)),
                                              self.budget.shortfalls(s), len(s.float_layers)))

    def as_dict(self) -> dict:
        c = self.chosen
        out = {**self.budget.as_dict(), "reference_top1": self.reference_top1, "within_budget": self.within_budget,
               "float_layers": list(c.float_layers), "steps": [asdict(s) for s in self.steps],
               "ranking": self.ranking, "latency_cost": self.latency_cost}
        for key in ("drop_points", "agreement", "output_snr_db"):
            if getattr(c, key) is not None:
                out[f"chosen_{key}"] = getattr(c, key)
        return out

    def record(self) -> dict:
        """The chosen step's control-set measurements and the latency cost, for a stage's record."""
        c = self.chosen
        names = {"drop_points": "control_drop_points", "top1": "control_top1", "agreement": "control_agreement",
                 "output_snr_db": "control_output_snr_db"}
        out = {names[k]: getattr(c, k) for k in names if getattr(c, k) is not None}
        if self.latency_cost:
            out["latency_cost"] = self.latency_cost
        return out


def top1(scores: np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(scores).argmax(axis=1) == labels).mean())


def step_metrics(scores: np.ndarray, budget: Budget, labels: np.ndarray | None = None,
                 reference_top1: float | None = None, reference_scores: np.ndarray | None = None) -> dict:
    """The measurements `budget` needs of one candidate's control-set scores (Step fields)."""
    out = {}
    if budget.needs_labels:
        t = top1(scores, labels)
        out.update(top1=t, drop_points=100.0 * (reference_top1 - t))
    if budget.fidelity:
        from edgepipe.validators.fidelity import agreement, output_snr_db

        out.update(agreement=agreement(reference_scores, scores),
                   output_snr_db=min(output_snr_db(reference_scores, scores), 999.0))
    return out


def greedy_budget(ranked: Sequence[str], evaluate: Callable[[tuple[str, ...]], dict], budget: Budget,
                  reference_top1: float | None = None, max_float_layers: int | None = None) -> BudgetResult:
    """Keep the k worst layers in float for k = 0, 1, 2, ... until `budget` is met.

    `evaluate(float_layers)` quantizes with those layers in float and returns the Step measurements
    (`step_metrics`) on the control set. Stops at the first k within budget, or after `max_float_layers`.
    """
    limit = len(ranked) if max_float_layers is None else min(max_float_layers, len(ranked))
    res = BudgetResult(budget, reference_top1)
    for k in range(limit + 1):
        layers = tuple(ranked[:k])
        res.steps.append(Step(layers, **evaluate(layers)))
        if budget.met(res.steps[-1]):
            res.within_budget = True
            break
    return res


def greedy_float_fallback(ranked: Sequence[str], evaluate: Callable[[tuple[str, ...]], float],
                          reference_top1: float, max_drop_points: float,
                          max_float_layers: int | None = None) -> BudgetResult:
    """`greedy_budget` with a top-1 budget only: `evaluate(float_layers)` returns top-1 on the
    accuracy-control set."""
    def measured(layers):
        t = evaluate(layers)
        return {"top1": t, "drop_points": 100.0 * (reference_top1 - t)}

    return greedy_budget(ranked, measured, Budget(max_drop_points), reference_top1, max_float_layers)


def latency_cost(runners: dict, images: np.ndarray, rounds: int) -> dict:
    """What the budget's higher-precision layers cost: p50 of the chosen model vs the plain INT8 one
    (`runners`: "int8", "budget"), side by side in this process (validators.latency.side_by_side)."""
    from edgepipe.validators.latency import side_by_side

    m = side_by_side(runners, images, rounds=rounds)
    p50 = m["p50_ms"]
    return {"int8_p50_ms": p50["int8"], "budget_p50_ms": p50["budget"], "ratio": p50["budget"] / p50["int8"],
            "rounds": m["rounds"], "runs": m["runs"], "cpu": m["cpu"], "busy": m["load"]["busy"]}


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
    base = recipe.model_copy(update={"max_accuracy_drop": None, "min_agreement": None, "min_output_snr_db": None})
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
