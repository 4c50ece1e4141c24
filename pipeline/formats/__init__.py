"""Artifact formats, one place each: the formats table (`registry.py`) and one module per format.
An untrusted SavedModel's ops are read without TensorFlow in `savedmodel_ops.py`.

    registry.py         the table: a frozen `Format` row per format (name, suffixes, sniff kind,
                        host runner, runtime packages and modules, companions, board runtimes);
                        `get(name)`, `find(name)`, `for_path(path)`, `runtime_packages(name)`
    tflite.py           .tflite: sniff, flatbuffer check and readers (read_tflite, op_name, seq),
                        TFLiteRunner, precision
    openvino_ir.py      .xml + .bin: sniff, XML + weights check, OpenVINORunner, precision, board floor
    onnx.py             .onnx: sniff, onnx.checker, ONNXRunner (ONNX Runtime), precision
    keras.py            .keras: sniff, archive check, content_sha256 (the stage keys' model), KerasRunner
    savedmodel.py       SavedModel directory: sniff, protobuf + shards check, SavedModelRunner
    inspect.py          sniff / describe / check_model_file for any file, through the table
    runner_input.py     the one input check every runner's predict goes through
    runners.py          open a runner or import a runtime by format name (and every runner class)
    tflite_versions.py  the minimum TFLite runtime a .tflite needs, from its op versions

Other modules ask the table (`from edgepipe import formats; formats.get("tflite")`) instead of
keeping their own dict of formats; `README.md` here has the checklist for adding one. Listing
the table imports nothing: a format's module is imported when it is used, and toolkits only
inside its functions.

May import `edgepipe.core` and `calibration` only (the TFLite runner borrows
`edgepipe.boards.device_runner.quantize_input`, a stdlib + numpy leaf, so host and boards
quantize inputs the same way).
"""

from edgepipe.formats.registry import (
    FORMATS,
    Format,
    file_labels,
    find,
    for_path,
    for_suffix,
    get,
    names,
    runtime_packages,
)

__all__ = ["FORMATS", "Format", "file_labels", "find", "for_path", "for_suffix", "get", "names",
           "runtime_packages"]
