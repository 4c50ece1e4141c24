"""The validators a run applies, in order. Adding one is a new module plus a line here
(see pipeline/validators/README.md).

`VALIDATORS` run on each built artifact after its scores are cached (`edgepipe.engine.target`); their
gate failures, in this order, are the row's reasons. Latency comes before parity so the reasons read
accuracy, latency, parity as they always have. `RUN_VALIDATORS` run once over all rows of a run
(`edgepipe.engine.orchestrate`), after every target.
"""

from __future__ import annotations

from edgepipe.validators.accuracy import AccuracyValidator
from edgepipe.validators.base import RunValidator, Validator
from edgepipe.validators.cross_quantizer import CrossQuantizerValidator
from edgepipe.validators.fidelity import FidelityValidator
from edgepipe.validators.latency_stage import LatencyValidator
from edgepipe.validators.parity import ParityValidator
from edgepipe.validators.per_layer import PerLayerValidator

VALIDATORS: list[Validator] = [
    AccuracyValidator(),
    LatencyValidator(),
    ParityValidator(),
    FidelityValidator(),
    PerLayerValidator(),
]

RUN_VALIDATORS: list[RunValidator] = [
    CrossQuantizerValidator(),
]
