"""`PerLayerValidator`: per-layer quantization error of INT8 artifacts vs their FP32 sibling.

A diagnostic, not a metric: the rows (worst first) go to the report row's `per_layer` and the top
level of artifact.json; when the diagnosis itself fails, `per_layer_error` says why and the artifact
keeps its row. The work is the target's `job.diagnose` (pipeline/diagnostics/layer_errors.py).
"""

from __future__ import annotations

from edgepipe.validators.base import ValidationInputs, ValidatorResult


class PerLayerValidator:
    name = "per_layer"
    diagnostic = True

    def applies(self, inputs: ValidationInputs) -> bool:
        return inputs.job.diagnose is not None and inputs.ctx.cfg.diagnostics.per_layer_images != 0

    def run(self, inputs: ValidationInputs) -> ValidatorResult:
        return ValidatorResult(self.name, inputs.job.diagnose(inputs.artifact))
