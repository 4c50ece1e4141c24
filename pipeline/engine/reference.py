"""The FP32 reference of a run (scores, row, latency) and the cached scores stage every artifact uses.

A scores stage runs one runner over the validation images once and caches the raw scores; the
reference row and every artifact row are computed from cached scores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgepipe.calibration.checks import check_reference_accuracy
from edgepipe.core.artifacts import Artifact
from edgepipe.core.labels import check_outputs
from edgepipe.core.progress import bar
from edgepipe.core.versions import tool_versions
from edgepipe.engine.context import RunContext
from edgepipe.formats.keras import CALL as KERAS_CALL
from edgepipe.reports.rows import ReportRow
from edgepipe.validators import accuracy as acc_mod


def scores_stage(ctx: RunContext, name: str, key: dict, runner_factory) -> tuple[np.ndarray, dict]:
    """Scores of `runner_factory()` on the validation images: a cached stage named `name`."""
    valid = ctx.validation

    def fn(out: Path) -> dict:
        runner = runner_factory()
        with bar(f"{name}: {len(valid)} images", len(valid), ctx.console) as advance:
            scores = acc_mod.predict_all(runner, valid.images, advance)
        np.save(out / "scores.npy", scores)
        return {"n": len(scores)}

    res = ctx.stage(name, {**key, "data": valid.sha256}, fn)
    return np.load(res.path / "scores.npy"), res.meta


def latency_stage(ctx: RunContext, name: str, key: dict, runner_factory, art: Artifact | None = None,
                  runner_params: dict | None = None) -> dict:
    from edgepipe.validators.latency_stage import latency_stage as stage

    return stage(ctx, name, key, runner_factory, art, runner_params)


def reference(ctx: RunContext) -> dict:
    """{"scores": FP32 reference scores on the validation images, "row": its ReportRow}."""
    key = {"model": ctx.model_key, **tool_versions("tensorflow", "keras")}
    scores, _ = scores_stage(ctx, "accuracy-reference", key, ctx.reference_runner)
    check_outputs(scores.shape[1], ctx.labels, "FP32 reference model")
    check_reference_accuracy(scores, ctx.validation.labels, ctx.spec.mode, "FP32 reference on the validation data")
    metrics = acc_mod.accuracy_metrics(scores, ctx.validation.labels, None, ctx.labels)
    call = {} if ctx.is_savedmodel else {"call": KERAS_CALL}  # a traced call, not the eager one it once timed
    latency = latency_stage(ctx, "latency-reference", {**key, **call}, ctx.reference_runner)
    size = sum(p.stat().st_size for p in ctx.model_path.rglob("*") if p.is_file()) if ctx.is_savedmodel \
        else ctx.model_path.stat().st_size
    name = "savedmodel/fp32 (reference)" if ctx.is_savedmodel else "keras/fp32 (reference)"
    return {"scores": scores, "row": ReportRow(
        artifact=name, target="reference", precision="fp32", status="reference",
        size_mb=size / 1e6, accuracy=metrics, latency=latency, sha256=ctx.model_sha, reasons=[],
    )}
