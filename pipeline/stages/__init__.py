"""Conversion stages: pure functions of (inputs, params, tool versions): Keras model loading,
Keras -> SavedModel, SavedModel -> TFLite, -> OpenVINO IR, -> ONNX.

May import core, calibration and formats. Toolkits are imported inside functions.
"""
