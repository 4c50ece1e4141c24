"""Cached stages for the recipe fields every quantizer shares (implemented in equalize.py and
accuracy_aware.py); the quantizer-specific stages live in `quantizers/`.

- `source_savedmodel(ctx, recipe)`: the SavedModel a quantizer starts from: the plain one, or
  (`equalize_separable` / `cross_layer_equalization`) one exported from the equalized Keras
  model, after checking that its float outputs match the original (<= 1e-4), and / or
  (`fine_tune_steps`) after quantization-aware fine-tuning (qat.py; `savedmodel-finetuned`).
- The accuracy-control set of a `max_accuracy_drop` budget (`control_set`, `control_key`,
  `control_batch`) and the FP32 top-1 on it (`reference_top1`, a cached stage); the FP32 scores a
  fidelity budget (`min_agreement`, `min_output_snr_db`) is measured against (`reference_scores`);
  `ControlSet` holds what one budget needs of them; `budget_record`: what a budget stage chose, for
  the artifact record.

The accuracy-control set is `data.accuracy_control` when configured, else the labeled part of the
calibration split; never the validation split the artifact is then scored on.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgepipe.core.errors import ConfigError, StageError
from edgepipe.core.versions import tool_versions

log = logging.getLogger("edgepipe")
FLOAT_TOLERANCE = 1e-4  # max |equalized(x) - original(x)| on calibration images


def wants_equalization(recipe) -> bool:
    return bool(recipe.equalize_separable or recipe.cross_layer_equalization)


def wants_new_source(recipe) -> bool:
    """The recipe quantizes a transformed Keras model (equalized and / or fine-tuned), not the plain one."""
    return wants_equalization(recipe) or bool(recipe.fine_tune_steps)


def source_key(ctx, recipe, calib) -> dict | None:
    """The key of the transformed-SavedModel stage `source_savedmodel` makes for the recipe; None when the
    recipe quantizes the plain SavedModel. Nothing runs: two recipes with equal keys quantize the same model."""
    if not wants_new_source(recipe):
        return None
    params = {"model": ctx.model_key, "calibration": calib.sha256, "shape": list(ctx.spec.shape),
              "separable": recipe.equalize_separable, "cross_layer": recipe.cross_layer_equalization,
              **tool_versions("tensorflow", "keras")}
    if recipe.fine_tune_steps:  # absent otherwise: equalized models cached before keep their key
        params["fine_tune_steps"] = recipe.fine_tune_steps
    return params


def source_savedmodel(ctx, recipe, calib):
    """The SavedModel a recipe quantizes: the plain one; or one exported from the Keras model after
    equalization (its float outputs checked unchanged) and / or quantization-aware fine-tuning
    (`fine_tune_steps`: qat.py on the calibration images; it changes the float function on purpose)."""
    params = source_key(ctx, recipe, calib)
    if params is None:
        return ctx.savedmodel()
    if ctx.is_savedmodel:
        raise ConfigError("recipe: equalize_separable / cross_layer_equalization / fine_tune_steps expected a Keras "
                          f"model (.keras) to transform. Received: a SavedModel directory {str(ctx.model_path)!r}")

    def fn(out: Path) -> dict:
        from edgepipe.stages.savedmodel import export_savedmodel

        model, meta = ctx.keras_model(), {}
        if wants_equalization(recipe):
            model, meta = equalized(model, calib, recipe, out)
        if recipe.fine_tune_steps:
            from edgepipe.quantize.qat import fine_tune

            model, info = fine_tune(model, calib.images, {"steps": recipe.fine_tune_steps})
            (out / "qat.json").write_text(json.dumps(info, indent=2, default=float))
            meta.update({f"qat_{k}": v for k, v in info.items() if isinstance(v, int | float)})
        model.save(out / "equalized.keras" if not recipe.fine_tune_steps else out / "transformed.keras")
        export_savedmodel(model, out, ctx.spec.shape)
        return meta

    name = "savedmodel-finetuned" if recipe.fine_tune_steps else "savedmodel-equalized"
    return ctx.stage(name, params, fn)


def equalized(model, calib, recipe, out: Path):
    """(the equalized Keras model, its stage record), after checking its float outputs match the model's."""
    from edgepipe.quantize.equalize import equalize, max_output_diff

    new, report = equalize(model, calib.images, separable=recipe.equalize_separable,
                           cross_layer=recipe.cross_layer_equalization)
    diff = max_output_diff(model, new, calib.images[:64])
    if diff > FLOAT_TOLERANCE:
        raise StageError(f"equalization: expected float outputs unchanged (max |diff| <= "
                         f"{FLOAT_TOLERANCE:g}). Received: max |diff| = {diff:.3g}")
    (out / "equalization.json").write_text(json.dumps({**report.as_dict(), "max_output_diff": diff}, indent=2))
    return new, {"max_output_diff": diff, "separable_layers": len(report.separable),
                 "cross_layer_sites": len(report.cross_layer)}


def diagnosis_savedmodel(ctx, target: str):
    """The SavedModel an INT8 artifact's per-layer errors are measured against: the equalized one
    when its recipe equalizes (equalization rescales intermediate tensors on purpose, so
    comparing with the plain FP32 model would report the rescaling as quantization error)."""
    recipe = ctx.recipe(target)
    return source_savedmodel(ctx, recipe, ctx.calibration_for(recipe)) if wants_new_source(recipe) else None


def control_batch(ctx, calib):
    """The batch the accuracy-control images come from: `data.accuracy_control`, else `calib`."""
    control = ctx.accuracy_control if ctx is not None else None
    return calib if control is None else control


def control_key(ctx) -> dict:
    """The control set's part of a budget stage's key (nothing when it is the calibration split, so
    stages cached before `data.accuracy_control` existed stay valid)."""
    control = ctx.accuracy_control if ctx is not None else None
    return {"control": control.sha256} if control is not None else {}


def control_set(ctx, calib, budget: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The accuracy-control images: `data.accuracy_control` when configured, else the labeled
    calibration images. Warns when one image is worth more than the budget: a drop measured
    on them cannot tell a budget-meeting model from one that is not."""
    calib = control_batch(ctx, calib)
    labeled = calib.labels >= 0
    if not labeled.any():
        raise ConfigError("recipe max_accuracy_drop: expected labeled calibration images to measure the drop "
                          "on (the accuracy-control set). Received: no labeled calibration images")
    n = int(labeled.sum())
    if budget is not None and 100.0 / n > budget:
        log.warning("accuracy-control set: %d labeled calibration images, so one image is %.2f top-1 points, "
                    "coarser than the %g-point budget; the drop it measures cannot resolve the budget "
                    "(needs more than %d labeled images)", n, 100.0 / n, budget, int(100.0 / budget) if budget else 0)
    return calib.images[labeled], calib.labels[labeled]


def resolution(labels: np.ndarray) -> dict:
    """How many control images a budget was measured on, and what one of them is worth in top-1 points."""
    return {"control_images": len(labels), "resolution_points": 100.0 / len(labels)}


def reference_top1(ctx, calib, images: np.ndarray, labels: np.ndarray) -> float:
    """FP32 top-1 of the configured model (Keras or SavedModel) on the accuracy-control set, a cached
    stage shared by every budget that measures against it."""
    from edgepipe.quantize.accuracy_aware import top1
    from edgepipe.validators.accuracy import predict_all

    key = {"model": ctx.model_key, "control": control_batch(ctx, calib).sha256}
    return ctx.stage("control-reference", key,
                     lambda out: {"top1": top1(predict_all(ctx.reference_runner(), images), labels)}).meta["top1"]


def reference_scores(ctx, calib, images: np.ndarray) -> np.ndarray:
    """FP32 scores of the configured model on the control images (the reference a fidelity budget
    measures agreement and SNR against), a cached stage shared by every budget that needs it."""
    from edgepipe.validators.accuracy import predict_all

    key = {"model": ctx.model_key, "control": control_batch(ctx, calib).sha256, "n": len(images)}

    def fn(out: Path) -> dict:
        np.save(out / "scores.npy", np.asarray(predict_all(ctx.reference_runner(), images), dtype=np.float32))
        return {"file": "scores.npy"}

    res = ctx.stage("control-reference-scores", key, fn)
    return np.load(res.path / res.meta["file"])


@dataclass
class ControlSet:
    """What a budget is measured on: the control images, their labels (accuracy budgets only) and the
    FP32 references each bound of the budget needs (top-1, scores)."""

    budget: object  # accuracy_aware.Budget
    images: np.ndarray
    labels: np.ndarray | None = None
    reference_top1: float | None = None
    reference_scores: np.ndarray | None = None

    @classmethod
    def of(cls, ctx, calib, budget) -> ControlSet:
        """The run's control set for `budget`, with the cached FP32 references it needs."""
        if budget.needs_labels:
            images, labels = control_set(ctx, calib, budget.max_drop_points)
            out = cls(budget, images, labels, reference_top1(ctx, calib, images, labels))
        else:  # fidelity alone needs no labels: every control image counts
            out = cls(budget, control_batch(ctx, calib).images)
        if budget.fidelity:
            out.reference_scores = reference_scores(ctx, calib, out.images)
        return out

    def metrics(self, scores: np.ndarray) -> dict:
        """The Step measurements of one candidate's scores on these images."""
        from edgepipe.quantize.accuracy_aware import step_metrics

        return step_metrics(scores, self.budget, self.labels, self.reference_top1, self.reference_scores)

    def record(self) -> dict:
        out = {"control_images": len(self.images)}
        return {**out, **resolution(self.labels)} if self.labels is not None else out


def budget_meta(out: Path, path: Path, res, control: ControlSet) -> dict:
    """The stage record of a float-fallback budget stage (TFLite, ONNX Runtime): its artifact's file name,
    what was chosen and measured on which control set; every step and the ranking go to `budget.json`."""
    (Path(out) / "budget.json").write_text(json.dumps(res.as_dict(), indent=2))
    return {"file": Path(path).name, "within_budget": res.within_budget, **control.record(),
            "float_layers": list(res.chosen.float_layers), **res.record()}


def budget_record(res) -> dict:
    """What an accuracy-aware stage chose, for the artifact record (empty for other stages)."""
    keys = ("within_budget", "float_layers", "control_drop_points", "control_top1", "fake_quantize_ops",
            "control_images", "resolution_points", "control_agreement", "control_output_snr_db", "latency_cost")
    return {"accuracy_budget": {k: res.meta[k] for k in keys if k in res.meta}} if res.name.endswith("-budget") else {}
