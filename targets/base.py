"""What every target module provides.

A target module defines:
- `Options`: a strict pydantic model of its options (validated from pipeline.yaml);
- `jobs(ctx, options) -> list[Job]`: the artifacts it produces, each built lazily, each
  with the runner that executes it on this host (options such as hints bound in);
- `make_runner(artifact, threads, **job.runner_params) -> runner`: the same runner, built from
  plain data, so that `pipeline/probe.py` can load and first-run the artifact in a child process.
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


@dataclass(frozen=True)
class Job:
    name: str
    target: str
    precision: str
    build: Callable[[], object]  # -> pipeline.artifacts.Artifact
    runner: Callable[[object, int], object]  # (artifact, threads) -> runner with .predict(image)
    runner_params: dict = field(default_factory=dict)  # part of the validators' cache key
