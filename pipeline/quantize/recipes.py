"""Quantization recipes as data: a strict schema, the built-in table, and what each toolchain can do.

A recipe is selected per target (`targets[].options.recipe: NAME`); user recipes are defined in
the config under `quantization.recipes` and validated by the same schema. A field left at
`None` means "the toolchain's own default", so the `default` recipe reproduces exactly what
each toolchain does without a recipe (TFLiteConverter default full-integer PTQ, `nncf.quantize`
with the performance preset, `quantize_static` QDQ per-channel MinMax).

Whether a recipe is possible for a toolchain is decided by that quantizer's module
(`quantizers/<name>.py`, beside the code that translates the recipe into the toolchain's calls),
from plain data, so that `edgepipe recipes` and config validation need no toolkit import. Each
impossible combination is reported with the reason (what the toolchain's API offers instead).
"""

from __future__ import annotations

from importlib.util import find_spec
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from edgepipe.quantize import quantizers

# The quantizers behind the targets (a target module declares `QUANTIZER = "..."`), one module each.
QUANTIZERS = quantizers.NAMES


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
    weight_bits: Literal[7, 8] = Field(
        8, description="7 = int8 weights on a 7-bit range (NNCF overflow_fix=enable, ONNX Runtime reduce_range): "
        "no int16 saturation in the u8 x s8 dot products of x86 CPUs without VNNI (AVX2, AVX-512F); "
        "costs one bit of weight resolution")
    integer_types: Literal["s8s8", "u8s8", "u8u8"] = Field(
        "s8s8", description="u8s8 = uint8 activations and int8 weights (ONNX Runtime's u8 x s8 kernels, VNNI's "
        "on x86: the fastest; edgepipe's runners keep them exact on x86 CPUs without VNNI, "
        "formats/onnx.py exact_int8_config); u8u8 = uint8 activations and uint8 weights (ONNX Runtime's U8U8 "
        "kernels): no int16 saturation on x86 CPUs without VNNI in any runtime, at full 8-bit weight resolution")
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
    # --- model transforms / accuracy control (equalize.py, accuracy_aware.py + each quantizer's budget)
    equalize_separable: bool = Field(False, description="rescale SeparableConv depthwise/pointwise channels")
    cross_layer_equalization: bool = Field(False, description="classic cross-layer weight equalization")
    fine_tune_steps: PositiveInt | None = Field(
        None, description="quantization-aware fine-tuning (qat.py: distillation from the FP32 model on the "
        "calibration images, fake quantization where the converters quantize) for this many steps before "
        "quantizing; opt-in: ~12 s per step on elpv-xception on 2 cores")
    max_accuracy_drop: Annotated[float, Field(ge=0.0)] | None = Field(
        None, description="accuracy-aware quantization budget, top-1 points vs FP32")
    min_agreement: Annotated[float, Field(gt=0.0, le=1.0)] | None = Field(
        None, description="fidelity budget: keep the fewest layers in higher precision until the INT8 model's "
        "top-1 agrees with FP32 on at least this share of the control images")
    min_output_snr_db: Annotated[float, Field(gt=0.0, le=200.0)] | None = Field(
        None, description="fidelity budget: ... until the output SNR vs the FP32 scores on the control images "
        "is at least this many dB")

    def cache_params(self) -> dict:
        """Everything that can change the artifact: part of the stage cache key. A field added after
        artifacts were cached is left out at its default, so those artifacts stay valid."""
        params = self.model_dump(exclude={"description"})
        for key, default in _ADDED_LATER.items():
            if params[key] == default:
                del params[key]
        return params

    @property
    def has_budget(self) -> bool:
        """An accuracy or fidelity budget: the quantizer searches for the fewest higher-precision layers."""
        return any(v is not None for v in (self.max_accuracy_drop, self.min_agreement, self.min_output_snr_db))

    def key_params(self) -> dict:
        """The recipe's part of a stage cache key. The default recipe adds nothing: it is exactly what
        the stages did before recipes existed, so their cached artifacts stay valid."""
        params = self.cache_params()
        return {} if params == Recipe().cache_params() else {"recipe": params}

    def summary(self) -> str:
        parts = [self.weights.replace("_", "-") + " weights"]
        if self.activation_bits == 16:
            parts.append("int16 activations (16x8)")
        if self.weight_bits == 7:
            parts.append("7-bit weight range")
        if self.integer_types == "u8u8":
            parts.append("uint8 activations and weights")
        if self.integer_types == "u8s8":
            parts.append("uint8 activations, int8 weights")
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
        if self.fine_tune_steps:
            parts.append(f"quantization-aware fine-tuning, {self.fine_tune_steps} steps")
        for key in ("max_accuracy_drop", "min_agreement", "min_output_snr_db"):
            if getattr(self, key) is not None:
                parts.append(f"{key}={getattr(self, key):g}")
        return ", ".join(parts)


# Fields added after artifacts were cached, with their defaults: left out of the cache key at the
# default, so those artifacts stay valid.
_ADDED_LATER = {"weight_bits": 8, "integer_types": "s8s8", "min_agreement": None, "min_output_snr_db": None,
                "fine_tune_steps": None}

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
    "no-saturation": Recipe(description="weights on a 7-bit range: no int16 saturation in x86 int8 kernels "
                                        "without VNNI (NNCF overflow fix everywhere, ONNX Runtime reduce_range)",
                            weight_bits=7),
    "u8u8": Recipe(description="uint8 activations and weights (ONNX Runtime U8U8): no int16 saturation on x86 CPUs "
                               "without VNNI, full 8-bit weights", integer_types="u8u8"),
    "eq-sep-u8u8": Recipe(description="eq-sep with uint8 activations and weights (ONNX Runtime U8U8; +1.3 dB over "
                                      "u8u8 on elpv-xception's control split)", equalize_separable=True,
                          integer_types="u8u8"),
    "u8s8": Recipe(description="uint8 activations, int8 weights (ONNX Runtime's u8 x s8 kernels: VNNI on x86, "
                               "2.4x faster than u8u8 there; exact on x86 without VNNI in edgepipe's runners)",
                   integer_types="u8s8"),
    "eq-sep-u8s8": Recipe(description="eq-sep with uint8 activations and int8 weights (as faithful as eq-sep-u8u8 on "
                                      "elpv-xception's control split, 2.4x faster on a VNNI CPU)",
                          equalize_separable=True, integer_types="u8s8"),
    "eq-sep-7bit": Recipe(description="eq-sep with weights on a 7-bit range (no int16 saturation on x86 CPUs "
                                      "without VNNI)", equalize_separable=True, weight_bits=7),
    "minmax": Recipe(description="global min/max activation ranges", calibration="minmax"),
    "percentile": Recipe(description="99.99th percentile activation ranges", calibration="percentile"),
    "mse": Recipe(description="histogram ranges minimising quantization MSE (NNCF)", calibration="mse"),
    "kl": Recipe(description="entropy (KL) calibration (ONNX Runtime)", calibration="kl"),
    "eq-sep": Recipe(description="separable-conv activation equalization (Xception's SeparableConv2D)",
                     equalize_separable=True),
    "qat": Recipe(description="quantization-aware fine-tuning, 100 steps of 8 calibration images (opt-in: about "
                              "20 min for elpv-xception on 2 cores; +3.0 dB output SNR for TFLite on its control "
                              "split)", fine_tune_steps=100),
    "qat-u8u8": Recipe(description="qat, then uint8 activations and weights (ONNX Runtime U8U8): 0.977 agreement, "
                                   "22.4 dB on elpv-xception's control split, the most faithful INT8 row measured",
                       fine_tune_steps=100, integer_types="u8u8"),
    "qat-u8s8": Recipe(description="qat, then uint8 activations and int8 weights (ONNX Runtime's u8 x s8 kernels): "
                                   "0.970 agreement, 23.1 dB on elpv-xception's control split (qat-u8u8 0.970, "
                                   "22.0 dB on the same machine), 2.1x faster on a VNNI CPU",
                       fine_tune_steps=100, integer_types="u8s8"),
    "eq-sep-cle": Recipe(description="separable-conv activation + cross-layer weight equalization",
                         equalize_separable=True, cross_layer_equalization=True),
}

# Built-in recipes that name another built-in recipe per target: what measured best for that target on
# elpv-xception's control split (benchmarks/README.md "Fidelity"; 300 train images that are neither calibration
# nor test). A target not listed (a newly registered one) gets `fallback`.
PER_TARGET: dict[str, dict] = {
    "faithful": {
        "description": "what measured most faithful to FP32 per target on elpv-xception's control split (of "
                       "equally faithful choices, the fastest): "
                       "separable equalization everywhere; 7-bit weights for OpenVINO CPU (x86 int8 kernels "
                       "without VNNI saturate otherwise) and uint8 activations with int8 weights for ONNX Runtime "
                       "(its fastest kernels; kept exact on x86 without VNNI by the runner's session option)",
        "targets": {"tflite-arm": "eq-sep", "coral-edgetpu": "eq-sep", "openvino-cpu": "eq-sep-7bit",
                    "openvino-npu": "eq-sep", "onnx-cpu": "eq-sep-u8s8"},
        "fallback": "eq-sep",
    },
    "faithful-qat": {
        "description": "opt-in, about 20 min of fine-tuning for elpv-xception on 2 cores: faithful, with "
                       "quantization-aware fine-tuning where it measured better on the control split (TFLite and the "
                       "Edge TPU's full-integer model 0.953 / 19.9 dB -> 0.970 / 21.6 dB, ONNX Runtime 0.960 / 20.2 "
                       "dB -> 0.970 / 23.1 dB with uint8 activations and int8 weights; not OpenVINO with 7-bit "
                       "weights: 0.963 / 18.4 dB vs 0.960 / 18.6 dB)",
        "targets": {"tflite-arm": "qat", "coral-edgetpu": "qat", "openvino-cpu": "eq-sep-7bit",
                    "openvino-npu": "eq-sep", "onnx-cpu": "qat-u8s8"},
        "fallback": "eq-sep",
    },
}


def per_target(name: str, target: str) -> str:
    """The built-in recipe a per-target recipe `name` uses for `target`."""
    table = PER_TARGET[name]
    return table["targets"].get(target, table["fallback"])


# Recipe fields whose implementation lives in its own stage module: refused (not silently ignored)
# while that module is absent from this build.
_NEEDS_MODULE = {"equalize_separable": "edgepipe.quantize.equalize",
                 "cross_layer_equalization": "edgepipe.quantize.equalize",
                 "fine_tune_steps": "edgepipe.quantize.qat",
                 "max_accuracy_drop": "edgepipe.quantize.accuracy_aware",
                 "min_agreement": "edgepipe.quantize.accuracy_aware",
                 "min_output_snr_db": "edgepipe.quantize.accuracy_aware"}


def problems(recipe: Recipe, quantizer: str) -> list[str]:
    """Why `recipe` cannot be built by `quantizer` (empty list = possible): the fields every quantizer
    needs a module for, then the quantizer module's own `problems` (quantizers/<name>.py)."""
    if quantizer not in QUANTIZERS:
        return [f"unknown quantizer {quantizer!r}; expected one of {list(QUANTIZERS)}"]
    out = [f"{key} needs {module}, which this edgepipe build does not have yet"
           for key, module in _NEEDS_MODULE.items()
           if getattr(recipe, key) not in (None, False) and find_spec(module) is None]
    return out + quantizers.load(quantizer).problems(recipe)


def resolve(name: str, user: dict[str, Recipe] | None = None, target: str | None = None) -> Recipe:
    """A recipe by name: the config's own recipes first, then the built-in tables (a per-target recipe
    such as `faithful` becomes the built-in recipe it names for `target`; its description says which)."""
    user = user or {}
    if name in user:
        return user[name]
    if name in BUILTIN:
        return BUILTIN[name]
    if name in PER_TARGET:
        if target is None:
            raise KeyError(f"recipe {name!r} depends on the target: expected a target to resolve it for. "
                           "Received: none")
        chosen = per_target(name, target)
        return BUILTIN[chosen].model_copy(update={"description": f"{name} for {target}: {chosen}"})
    names = sorted(set(BUILTIN) | set(PER_TARGET) | set(user))
    raise KeyError(f"expected a recipe name in {names}. Received: {name!r}")


def describe_all(user: dict[str, Recipe] | None = None, target_quantizers: dict[str, str] | None = None) -> list[dict]:
    """Every recipe with its settings and, per quantizer, whether it is possible (for the CLI).
    `target_quantizers` (target -> its quantizer, from the target registry): what a per-target recipe hands
    each quantizer's targets; without it only its fallback (any other target) is checked."""
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
    for name, table in PER_TARGET.items():
        uses = {**table["targets"], "any other target": table["fallback"]}
        found = {q: [f"{chosen}: {p}" for chosen in sorted(_handed_to(name, q, target_quantizers or {}))
                     for p in problems(BUILTIN[chosen], q)] for q in QUANTIZERS}
        rows.append({
            "name": name, "builtin": True, "description": table["description"],
            "summary": "per target: " + ", ".join(f"{t} {r}" for t, r in uses.items()),
            "settings": {"per_target": uses},
            "quantizers": {q: {"possible": not found[q], "problems": found[q]} for q in QUANTIZERS},
        })
    return rows


def _handed_to(name: str, quantizer: str, target_quantizers: dict[str, str]) -> set[str]:
    """The built-in recipes per-target recipe `name` gives the targets of `quantizer` (a target not yet
    registered gets the fallback)."""
    return {per_target(name, t) for t, q in target_quantizers.items() if q == quantizer} | \
        {PER_TARGET[name]["fallback"]}
