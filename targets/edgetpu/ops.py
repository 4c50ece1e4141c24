"""The Coral Edge TPU's supported-operation table, as plain data.

Source: coral.ai, "TensorFlow models on the Edge TPU" -> "Supported operations"
(https://coral.ai/docs/edgetpu/models-intro/#supported-operations), transcribed for Edge TPU
compiler 16. Keys are TFLite builtin operator names (`BuiltinOperator`), values are the
documented known limitations ("" when none). Only some limitations can be checked from the
flatbuffer alone; those are checked in `edgepipe.targets.edgetpu.preflight`, the others are reported as
notes. Ops not in this table (e.g. DEQUANTIZE, CUMSUM, SIN, any Flex/custom op) run on the CPU.
"""

from __future__ import annotations

SUPPORTED_OPS: dict[str, str] = {
    "ADD": "",
    "AVERAGE_POOL_2D": "No fused activation function.",
    "CONCATENATION": (
        "No fused activation function. If any input is a compile-time constant tensor, there must be only "
        "2 inputs, and this constant tensor must be all zeroes (effectively, a zero-padding op)."
    ),
    "CONV_2D": "Must use the same dilation in x and y dimensions.",
    "DEPTHWISE_CONV_2D": "Must use the same dilation in x and y dimensions.",
    "EXPAND_DIMS": "",
    "FULLY_CONNECTED": "Only the default format is supported for fully-connected weights. Output is one-dimensional.",
    "L2_NORMALIZATION": "",
    "LOGISTIC": "",
    "LSTM": "Unidirectional LSTM only.",
    "MAXIMUM": "",
    "MAX_POOL_2D": "No fused activation function.",
    "MEAN": "No reduction in batch dimension. If a z-reduction, the z-dimension must be multiple of 4.",
    "MINIMUM": "",
    "MUL": "",
    "PACK": "No packing in batch dimension.",
    "PAD": "No padding in batch dimension.",
    "PRELU": "Alpha must be 1-dimensional (only the innermost dimension can be >1).",
    "QUANTIZE": "",
    "REDUCE_MAX": "Cannot operate on the batch dimension.",
    "REDUCE_MIN": "Cannot operate on the batch dimension.",
    "RELU": "",
    "RELU6": "",
    "RELU_N1_TO_1": "",
    "RESHAPE": "Certain reshapes might not be mapped for large tensor sizes.",
    "RESIZE_BILINEAR": "Input/output is a 3-dimensional tensor; large sizes may not be mapped.",
    "RESIZE_NEAREST_NEIGHBOR": "Input/output is a 3-dimensional tensor; large sizes may not be mapped.",
    "RSQRT": "",
    "SLICE": "",
    "SOFTMAX": "Supports only 1-D input tensor with a max of 16,000 elements.",
    "SPACE_TO_DEPTH": "",
    "SPLIT": "No splitting in batch dimension.",
    "SQUEEZE": "",
    "SQUARED_DIFFERENCE": "",
    "STRIDED_SLICE": "Supported only when all strides are 1 (effectively a slice) and with ellipsis-axis-mask == 0.",
    "SUB": "",
    "SUM": "Cannot operate on the batch dimension.",
    "TANH": "",
    "TRANSPOSE": "",
    "TRANSPOSE_CONV": "",
}

# Ops whose own options we check against the table's limitations.
NO_FUSED_ACTIVATION = frozenset({"AVERAGE_POOL_2D", "MAX_POOL_2D", "CONCATENATION"})
SAME_DILATION = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D"})
SOFTMAX_MAX_ELEMENTS = 16_000

# Input slots that hold an int32 bias (allowed: the compiler takes 32-bit biases).
BIAS_INPUT = {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "FULLY_CONNECTED": 2, "TRANSPOSE_CONV": 3}

# The custom op the compiler itself emits: a model that already went through edgetpu_compiler.
EDGETPU_CUSTOM_OP = "edgetpu-custom-op"
