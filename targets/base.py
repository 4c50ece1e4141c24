"""What every target module provides.

A target module defines:
- `Options`: a strict pydantic model of its options (validated from pipeline.yaml);
- `jobs(ctx, options) -> list[Job]`: the artifacts it produces, each built lazily, each
  with the runner that executes it on this host (options such as hints bound in);
- `make_runner(artifact, threads, **job.runner_params) -> runner`: the same runner, built from
  plain data, so that `pipeline/engine/probe.py` can load and first-run the artifact in a child process.

A job's build returns an `Artifact`. What the host cannot do (no compiler, no device) is never a
silent success: it goes into `Artifact.incomplete` or `Job.latency_skip` as a precise status, and
the run reports the row as `partial` (exit code 3 when nothing failed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Precision = Literal["fp32", "int8"]


class BaseOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    precisions: list[Precision] = Field(default_factory=lambda: ["fp32", "int8"], min_length=1)


class QuantizedOptions(BaseOptions):
    """Options of a target that quantizes: the recipe (`edgepipe recipes`) its INT8 artifact uses."""

    recipe: str = Field("default", description="a built-in recipe or one from quantization.recipes")


@dataclass(frozen=True)
class Job:
    name: str
    target: str
    precision: str
    build: Callable[[], object]  # -> edgepipe.core.artifacts.Artifact
    runner: Callable[[object, int], object]  # (artifact, threads) -> runner with .predict(image)
    runner_params: dict = field(default_factory=dict)  # part of the validators' cache key
    # (artifact) -> None, or why latency cannot be measured on this host ("skipped: no Edge TPU");
    # accuracy still runs (on the runner the target gives, e.g. the CPU interpreter)
    latency_skip: Callable[[object], str | None] | None = field(default=None, kw_only=True)
    # (artifact) -> per-layer error rows vs the FP32 sibling (INT8 jobs only); see pipeline/diagnostics/layer_errors.py
    diagnose: Callable[[object], list] | None = field(default=None, kw_only=True)
    # (target, runner_params) of another target whose runner computes exactly what this job's runner computes on
    # the same file (coral-edgetpu without an Edge TPU runs tflite-arm's CPU interpreter): the two artifacts then
    # share one cached scores stage when their files are identical, so the same model is scored once per run
    scores_as: tuple[str, dict] | None = field(default=None, kw_only=True)
