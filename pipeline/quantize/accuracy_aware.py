"""Quantization to an accuracy budget (`max_accuracy_drop`, in top-1 points vs FP32).

- **TFLite**: the model is calibrated once (`tf.lite.experimental.QuantizationDebugger`
  with the converter), every quantized layer is ranked by its own quantization error
  (NumericVerify: RMSE of the layer's INT8 output vs its float output on the same INT8
  input, divided by the output scale, i.e. in units of the quantization step), and the
  worst layers are kept in float one by one (`denylisted_nodes`) until the top-1 drop on the
  accuracy-control set is within budget. The loop stops at the first prefix of the ranking
  that meets the budget, so it keeps the fewest layers *in ranking order*; every step's drop
  is recorded. Re-quantizing with a denylist reuses the calibration (no re-calibration).
- **OpenVINO**: `nncf.quantize_with_accuracy_control(..., max_drop=points/100,
  drop_type=ABSOLUTE)` with a top-1 validation function.
- **Edge TPU** runs only full-integer graphs (a float layer splits the graph and runs on the
  CPU), so instead of float fallback it climbs a ladder of full-integer repairs
  (`full_integer_ladder`: per-channel weights, separable equalization, cross-layer
  equalization), measuring each on the accuracy-control set until one is within budget
  (`search_full_integer`), and picks with `pick_full_integer`.

The accuracy-control set should not be the test split the final numbers are reported on;
edgepipe's benchmark uses the (labeled, held-out) calibration split for it.
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from calibration.adapters import nncf_dataset, tflite_representative


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


# ---- TFLite ------------------------------------------------------------------------------

def rank_tflite_layers(debugger) -> list[dict]:
    """Quantized layers, worst first, by RMSE / output scale (from the debugger's CSV dump)."""
    debugger.run()
    buf = io.StringIO()
    debugger.layer_statistics_dump(buf)
    rows = []
    for r in csv.DictReader(io.StringIO(buf.getvalue())):
        scale = float(r["scale"])
        err = float(np.sqrt(float(r["mean_squared_error"]))) / scale if scale > 0 else float("inf")
        rows.append({"tensor": r["tensor_name"], "op": r["op_name"], "rmse_over_scale": err})
    return sorted(rows, key=lambda r: -r["rmse_over_scale"])


def tflite_debugger(saved_model: Path, calib: np.ndarray, debug_images: np.ndarray, per_tensor: bool = False):
    """Calibrate once; the debugger re-quantizes from that calibration with any denylist."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = tflite_representative(calib)
    if per_tensor:
        conv._experimental_disable_per_channel = True  # same switch as stages/tflite.py
    return tf.lite.experimental.QuantizationDebugger(
        converter=conv, debug_dataset=tflite_representative(debug_images))


def requantize(debugger, float_layers: Sequence[str]) -> bytes:
    """The INT8 model with `float_layers` (output tensor names) kept in float, float I/O."""
    import tensorflow as tf

    debugger.options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_nodes=list(float_layers) or None, fully_quantize=False)
    return debugger.get_nondebug_quantized_model()


def tflite_to_budget(saved_model: Path, out: Path, calib: np.ndarray, control: np.ndarray,
                     control_labels: np.ndarray, reference_top1: float, max_drop_points: float,
                     threads: int = 2, debug_images: int = 32, max_float_layers: int | None = 12,
                     per_tensor: bool = False) -> tuple[Path, BudgetResult]:
    """Full-integer TFLite with the fewest float layers (in error order) that meet the budget."""
    from pipeline.formats.runners import TFLiteRunner

    debugger = tflite_debugger(saved_model, calib, control[:debug_images], per_tensor)
    ranking = rank_tflite_layers(debugger)
    models: dict[tuple[str, ...], bytes] = {}

    def evaluate(layers: tuple[str, ...]) -> float:
        blob = requantize(debugger, layers)
        models[layers] = blob
        with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
            f.write(blob)
            f.flush()
            runner = TFLiteRunner(Path(f.name), threads)
            scores = np.stack([runner.predict(img) for img in control])
        return top1(scores, control_labels)

    res = greedy_float_fallback([r["tensor"] for r in ranking], evaluate, reference_top1, max_drop_points,
                                max_float_layers)
    res.ranking = ranking
    dest = Path(out) / "model_int8_budget.tflite"
    dest.write_bytes(models[res.chosen.float_layers])
    return dest, res


# ---- OpenVINO / NNCF ------------------------------------------------------------------------

def nncf_to_budget(ir: Path, out: Path, calib: np.ndarray, control: np.ndarray, control_labels: np.ndarray,
                   max_drop_points: float, recipe=None, max_float_layers: int = 12,
                   ranking_subset_size: int = 100, target_device: str = "ANY") -> tuple[Path, dict]:
    """`nncf.quantize_with_accuracy_control` with an absolute top-1 budget (and the recipe's
    other NNCF settings, as `nncf.quantize` would get them). At most `max_float_layers`
    quantizers are reverted (the same cap as the TFLite loop), ranked on
    `ranking_subset_size` control images, which bounds the search time on a large model."""
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    from pipeline.stages.openvino import nncf_arguments

    kw = nncf_arguments(recipe)
    if "advanced_parameters" in kw:
        kw["advanced_quantization_parameters"] = kw.pop("advanced_parameters")

    def validate(compiled, items) -> float:
        output = compiled.outputs[0]
        preds, labels = [], []
        for img, label in items:
            preds.append(int(np.argmax(compiled(img[None].astype(np.float32))[output][0])))
            labels.append(int(label))
        return float(np.mean(np.array(preds) == np.array(labels)))

    model = ov.Core().read_model(str(ir))
    validation = nncf.Dataset(list(zip(control, control_labels, strict=True)))
    qmodel = nncf.quantize_with_accuracy_control(
        model, nncf_dataset(calib), validation, validate, max_drop=max_drop_points / 100.0,
        drop_type=nncf.DropType.ABSOLUTE, subset_size=len(calib), target_device=nncf.TargetDevice(target_device),
        **kw,
        advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
            max_num_iterations=max_float_layers, ranking_subset_size=min(ranking_subset_size, len(control))))
    dest = Path(out) / "model_int8_budget.xml"
    ov.save_model(qmodel, str(dest), compress_to_fp16=False)
    compiled = ov.Core().compile_model(qmodel, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    fq = sum(op.get_type_name() == "FakeQuantize" for op in qmodel.get_ops())
    final = validate(compiled, zip(control, control_labels, strict=True))
    fp32 = ov.Core().compile_model(str(ir), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    ref = validate(fp32, zip(control, control_labels, strict=True))
    drop = 100.0 * (ref - final)
    return dest, {"max_drop_points": max_drop_points, "control_top1": final, "control_drop_points": drop,
                  "within_budget": drop <= max_drop_points + 1e-9, "fake_quantize_ops": fq}


# ---- Edge TPU: full-integer repairs only ------------------------------------------------------

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
