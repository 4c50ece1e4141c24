"""Conversion and quantization stages: pure functions of (inputs, params, tool versions)."""
