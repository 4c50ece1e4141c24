"""What every quantizer module shares: the refusals that read the same whichever toolchain says them.

A quantizer module (see `__init__.py`) calls these from its `problems(recipe)`; each returns a list
of reasons (empty when the recipe does not ask for the thing), so a module's `problems` reads as the
list of what it refuses, in order.
"""

from __future__ import annotations


def unsupported_statistic(recipe, supported: frozenset[str], why: str) -> list[str]:
    """The recipe's calibration statistic, when the toolchain has no such range estimator."""
    if recipe.calibration is not None and recipe.calibration not in supported:
        return [f"calibration {recipe.calibration!r} is not available: {why}"]
    return []


def no_16x8(recipe, quantizer: str, extra: str = "") -> list[str]:
    """int16 activations, on a quantizer that builds 8-bit activations only."""
    if recipe.activation_bits == 16:
        return ["activation_bits 16 (16x8) is a TFLite mode "
                "(OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8); "
                f"the {quantizer} path of edgepipe builds 8-bit activations only" + extra]
    return []


def no_nncf_options(recipe, quantizer: str, smooth_quant_why: str) -> list[str]:
    """NNCF-only settings (preset, bias correction, SmoothQuant) asked of another quantizer."""
    out = [f"{key} {value!r} is an NNCF setting; the {quantizer} quantizer has no such option"
           for key, value in (("nncf_preset", recipe.nncf_preset), ("bias_correction", recipe.bias_correction))
           if value is not None]
    if recipe.smooth_quant:
        out.append("smooth_quant is supported on the NNCF path only" + smooth_quant_why)
    return out


def no_7bit_weights(recipe, quantizer: str, why: str) -> list[str]:
    """A 7-bit weight range, on a quantizer whose API has no such option."""
    if recipe.weight_bits == 7:
        return [f"weight_bits 7 is not available on the {quantizer} path: {why}"]
    return []


def signed_only(recipe, quantizer: str, why: str) -> list[str]:
    """uint8 weights or a chosen uint8 activation type, on a quantizer that picks neither (int8 weights only)."""
    if recipe.integer_types != "s8s8":
        return [f"integer_types {recipe.integer_types} is not available on the {quantizer} path: {why}"]
    return []
