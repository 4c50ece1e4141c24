"""The validator protocols: what a validator takes, what it returns, and how a list of them runs.

An artifact validator (`Validator`) looks at one built artifact: it takes `ValidationInputs` (the run
context, the job, the artifact, a runner factory, the validators' cache key, the artifact's scores on the
validation images and the FP32 reference's) and returns a `ValidatorResult`: its JSON-able result (the
report row holds it under the validator's name), the gates it failed (from `cfg.gates`, its own fields
only) and what this host could not do (`partial`: never a pass, never a failure).

A run validator (`RunValidator`) looks at all rows of a run at once (the cross-quantizer check) and
returns a result per row it judged plus a summary for report.json.

The ordered lists are in `edgepipe.validators.registry`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from edgepipe.core.artifacts import Artifact
from edgepipe.core.errors import ConfigError, InputError


@dataclass(frozen=True)
class ValidationInputs:
    ctx: Any  # edgepipe.engine.context.RunContext: config (`ctx.cfg.gates`), validation data, stage cache, console
    job: Any  # targets.base.Job: the target's runner, options, latency_skip and diagnose hooks
    artifact: Artifact
    runner: Callable[[], Any]  # a fresh runner of the artifact on this host
    key: dict  # the validators' cache key: artifact sha256, runner params, runtime versions
    scores: np.ndarray  # the artifact's scores on the validation images (the cached `accuracy-*` stage)
    ref_scores: np.ndarray  # the FP32 reference's scores on the same images

    @property
    def gates(self):
        return self.ctx.cfg.gates

    def stage_name(self, prefix: str) -> str:
        """`<prefix>-<artifact name>`: the cached stage of this validator for this artifact."""
        return f"{prefix}-{self.artifact.name.replace('/', '-')}"


@dataclass(frozen=True)
class ValidatorResult:
    name: str  # the report row's key (and artifact.json's) for `result`
    result: Any  # JSON-able
    gate_failures: list[str] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)  # what this host could not do (e.g. no Edge TPU)
    diagnostic: bool = False  # set from the validator: artifact.json's top level instead of `metrics`


class Validator(Protocol):
    """One entry of `edgepipe.validators.registry.VALIDATORS`."""

    name: str
    # False: a metric (artifact.json `metrics`; an exception errors the row). True: a diagnostic
    # (artifact.json top level; an exception is recorded as `<name>_error` and the row goes on)
    diagnostic: bool

    def applies(self, inputs: ValidationInputs) -> bool: ...

    def run(self, inputs: ValidationInputs) -> ValidatorResult: ...


@dataclass(frozen=True)
class RunVerdict:
    summary: dict  # report.json's `<name>` entry
    rows: dict[str, ValidatorResult]  # artifact name -> its result (gate failures fail that row)


class RunValidator(Protocol):
    """One entry of `edgepipe.validators.registry.RUN_VALIDATORS`: judges the rows of a whole run."""

    name: str

    def run(self, gates, rows: list[Mapping]) -> RunVerdict: ...


def validate(validators: Iterable[Validator], inputs: ValidationInputs) -> list[ValidatorResult]:
    """Every validator that applies, in order. Bad input aborts; a diagnostic's own failure is a result."""
    out = []
    for v in validators:
        if not v.applies(inputs):
            continue
        try:
            res = v.run(inputs)
        except (InputError, ConfigError):
            raise
        except Exception as err:
            if not v.diagnostic:
                raise  # a metric that cannot be measured: the row errors
            res = ValidatorResult(f"{v.name}_error", f"{type(err).__name__}: {err}")  # never costs the row
        out.append(dataclasses.replace(res, diagnostic=v.diagnostic))
    return out
