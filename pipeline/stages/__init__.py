"""Conversion stages, FP32 only: pure functions of (inputs, params, tool versions): Keras model loading,
Keras -> SavedModel, SavedModel -> TFLite FP32, -> OpenVINO IR FP32 (and its FP16-weight copy), -> ONNX
FP32. Quantization (INT8) is not here: each quantizer's module in `pipeline/quantize/quantizers/`
holds what it can do beside how it quantizes.

May import core, calibration and formats. Toolkits are imported inside functions.
"""
