"""Quantization recipes as data: a strict schema, the built-in table, and what each toolchain can do.

A recipe is selected per target (`targets[].options.recipe: NAME`); user recipes are defined in
the config under `quantization.recipes` and validated by the same schema. A field left at
`None` means "the toolchain's own default", so the `default` recipe reproduces exactly what
each toolchain does without a recipe (TFLiteConverter default full-integer PTQ, `nncf.quantize`
with the performance preset, `quantize_static` QDQ per-channel MinMax).

Whether a recipe is possible for a toolchain is decided here, from plain data, so that
`edgepipe recipes` and config validation need no toolkit import. Each impossible combination
is reported with the reason (what the toolchain's API offers instead).
"""

from __future__ import annotations

from importlib.util import find_spec
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

# The quantizers behind the targets (a target module declares `QUANTIZER = "..."`).
QUANTIZERS = ("tflite", "nncf", "onnxruntime", "edgetpu")  # edgetpu: TFLite full-integer, 8-bit only


class Recipe(BaseModel):
    """One quantization recipe. Field names are the config keys under `quantization.recipes.NAME`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    # --- common ---------------------------------------------------------------------
    weights: Literal["per_channel", "per_tensor"] = Field(
        "per_channel", description="weight quantization granularity")
    activations: Literal["symmetric", "asymmetric"] | None = Field(
        None, description="activation scheme; None = the toolchain's default")
    activation_bits: Literal[8, 16] = Field(8, description="16 = TFLite 16x8 (int16 activations, int8 weights)")
    calibration: Literal["minmax", "mean_minmax", "percentile", "mse", "kl"] | None = Field(
        None, description="activation range statistic; None = the toolchain's default")
    percentile: Annotated[float, Field(gt=90.0, lt=100.0)] = Field(
        99.99, description="used by calibration: percentile")
    calibration_size: PositiveInt | None = Field(
        None, description="use at most this many calibration images (None = all configured)")
    # --- NNCF (openvino-cpu) --------------------------------------------------------
    nncf_preset: Literal["performance", "mixed"] | None = Field(
        None, description="NNCF preset; None = performance")
    bias_correction: Literal["fast", "full", "off"] | None = Field(
        None, description="NNCF bias correction; None = fast")
    smooth_quant: bool = Field(False, description="NNCF SmoothQuant on convolutions")
    smooth_quant_alpha: Annotated[float, Field(gt=0.0, le=1.0)] = 0.95
    # --- model transforms / accuracy control (implemented in stages/equalize.py, stages/accuracy_aware.py)
    equalize_separable: bool = Field(False, description="rescale SeparableConv depthwise/pointwise channels")
    cross_layer_equalization: bool = Field(False, description="classic cross-layer weight equalization")
    max_accuracy_drop: Annotated[float, Field(ge=0.0)] | None = Field(
        None, description="accuracy-aware quantization budget, top-1 points vs FP32")

    def cache_params(self) -> dict:
        """Everything that can change the artifact: part of the stage cache key."""
        return self.model_dump(exclude={"description"})

    def key_params(self) -> dict:
        """The recipe's part of a stage cache key. The default recipe adds nothing: it is exactly what
        the stages did before recipes existed, so their cached artifacts stay valid."""
        params = self.cache_params()
        return {} if params == Recipe().cache_params() else {"recipe": params}

    def summary(self) -> str:
        parts = [self.weights.replace("_", "-") + " weights"]
        if self.activation_bits == 16:
            parts.append("int16 activations (16x8)")
        if self.activations:
            parts.append(f"{self.activations} activations")
        if self.calibration:
            parts.append(self.calibration + (f" {self.percentile:g}" if self.calibration == "percentile" else ""))
        if self.calibration_size:
            parts.append(f"{self.calibration_size} calibration images")
        for key in ("nncf_preset", "bias_correction"):
            if getattr(self, key):
                parts.append(f"{key}={getattr(self, key)}")
        for key in ("smooth_quant", "equalize_separable", "cross_layer_equalization"):
            if getattr(self, key):
                parts.append(key)
        if self.max_accuracy_drop is not None:
            parts.append(f"max_accuracy_drop={self.max_accuracy_drop:g}")
        return ", ".join(parts)


BUILTIN: dict[str, Recipe] = {
    "default": Recipe(description="each toolchain's own default PTQ (what edgepipe did before recipes)"),
    "per-tensor": Recipe(description="per-tensor weights (for targets without per-channel kernels)",
                         weights="per_tensor"),
    "tflite-16x8": Recipe(description="TFLite int16 activations, int8 weights", activation_bits=16),
    "nncf-mixed": Recipe(description="NNCF mixed preset: asymmetric activations", nncf_preset="mixed"),
    "nncf-full-bias": Recipe(description="NNCF full (slower, more accurate) bias correction",
                             bias_correction="full"),
    "nncf-smoothquant": Recipe(description="NNCF SmoothQuant on convolutions", smooth_quant=True,
                               smooth_quant_alpha=0.5),
    "minmax": Recipe(description="global min/max activation ranges", calibration="minmax"),
    "percentile": Recipe(description="99.99th percentile activation ranges", calibration="percentile"),
    "mse": Recipe(description="histogram ranges minimising quantization MSE (NNCF)", calibration="mse"),
    "kl": Recipe(description="entropy (KL) calibration (ONNX Runtime)", calibration="kl"),
    "eq-sep": Recipe(description="separable-conv activation equalization (Xception's SeparableConv2D)",
                     equalize_separable=True),
    "eq-sep-cle": Recipe(description="separable-conv activation + cross-layer weight equalization",
                         equalize_separable=True, cross_layer_equalization=True),
}

# Recipe fields whose implementation lives in its own stage module: refused (not silently ignored)
# while that module is absent from this build.
_NEEDS_MODULE = {"equalize_separable": "pipeline.quantize.equalize",
                 "cross_layer_equalization": "pipeline.quantize.equalize",
                 "max_accuracy_drop": "pipeline.quantize.accuracy_aware"}

# What each toolchain offers, with the reason shown when a recipe asks for something else.
_STAT_SUPPORT = {
    "tflite": ({"minmax"}, "TFLiteConverter's calibrator records only min/max per tensor "
                           "(no percentile, MSE or KL statistic in its API)"),
    "nncf": ({"minmax", "mean_minmax", "percentile", "mse"},
             "nncf.quantize range estimators are MINMAX, MEAN_MINMAX, MEAN_QUANTILE and HISTOGRAM (MSE); "
             "it has no KL/entropy estimator"),
    "onnxruntime": ({"minmax", "percentile", "kl"},
                    "onnxruntime CalibrationMethod offers MinMax, Percentile and Entropy (KL); it has no MSE "
                    "or mean-of-min/max statistic"),
}


def problems(recipe: Recipe, quantizer: str) -> list[str]:
    """Why `recipe` cannot be built by `quantizer` (empty list = possible)."""
    out: list[str] = []
    if quantizer not in QUANTIZERS:
        return [f"unknown quantizer {quantizer!r}; expected one of {list(QUANTIZERS)}"]
    for key, module in _NEEDS_MODULE.items():
        if getattr(recipe, key) not in (None, False) and find_spec(module) is None:
            out.append(f"{key} needs {module}, which this edgepipe build does not have yet")
    tool = "tflite" if quantizer == "edgetpu" else quantizer  # the Edge TPU's models come from the TFLite converter
    stats, why = _STAT_SUPPORT[tool]
    if recipe.calibration is not None and recipe.calibration not in stats:
        out.append(f"calibration {recipe.calibration!r} is not available: {why}")
    if recipe.activation_bits == 16 and quantizer != "tflite":
        out.append("activation_bits 16 (16x8) is a TFLite mode "
                   "(OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8); "
                   f"the {quantizer} path of edgepipe builds 8-bit activations only"
                   + (" (the Edge TPU executes 8-bit integer ops only)" if quantizer == "edgetpu" else ""))
    if tool == "tflite":
        if recipe.activation_bits == 8 and recipe.activations == "symmetric":
            out.append("activations 'symmetric' is not available with 8-bit TFLite: full-integer PTQ always "
                       "gives int8 activations a zero point (asymmetric); use activation_bits 16 (symmetric int16)")
        if recipe.activation_bits == 16 and recipe.activations == "asymmetric":
            out.append("activations 'asymmetric' is not available with TFLite 16x8: int16 activations are "
                       "symmetric (zero point 0)")
    if recipe.max_accuracy_drop is not None:
        if quantizer == "onnxruntime":
            out.append("max_accuracy_drop: accuracy-aware quantization is implemented for TFLite "
                       "(QuantizationDebugger float fallback) and NNCF (quantize_with_accuracy_control) only")
        if quantizer == "tflite" and recipe.activation_bits == 16:
            out.append("max_accuracy_drop with activation_bits 16: the float-fallback search runs on "
                       "8-bit activations only")
    if quantizer != "nncf":
        for key, value in (("nncf_preset", recipe.nncf_preset), ("bias_correction", recipe.bias_correction)):
            if value is not None:
                out.append(f"{key} {value!r} is an NNCF setting; the {quantizer} quantizer has no such option")
        if recipe.smooth_quant:
            extra = (" (onnxruntime's SmoothQuant needs Intel Neural Compressor, which edgepipe does not "
                     "install)") if quantizer == "onnxruntime" else " (TFLiteConverter has no SmoothQuant)"
            out.append("smooth_quant is supported on the NNCF path only" + extra)
    return out


def resolve(name: str, user: dict[str, Recipe] | None = None) -> Recipe:
    """A recipe by name: the config's own recipes first, then the built-in table."""
    user = user or {}
    if name in user:
        return user[name]
    if name in BUILTIN:
        return BUILTIN[name]
    raise KeyError(f"expected a recipe name in {sorted(set(BUILTIN) | set(user))}. Received: {name!r}")


def describe_all(user: dict[str, Recipe] | None = None) -> list[dict]:
    """Every recipe with its settings and, per quantizer, whether it is possible (for the CLI)."""
    rows = []
    for name, recipe in {**BUILTIN, **(user or {})}.items():
        rows.append({
            "name": name,
            "builtin": name in BUILTIN and name not in (user or {}),
            "description": recipe.description,
            "summary": recipe.summary(),
            "settings": recipe.model_dump(exclude={"description"}),
            "quantizers": {q: {"possible": not problems(recipe, q), "problems": problems(recipe, q)}
                           for q in QUANTIZERS},
        })
    return rows
