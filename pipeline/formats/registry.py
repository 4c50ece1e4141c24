"""The formats table: one row per artifact format, everything edgepipe knows about it.

A row is plain data; the code of a format (its sniffing predicate, structural check, host runner
and precision detection) is in the module the row names, imported only when it is used, so
listing formats imports no toolkit (and not even numpy). Other modules ask this table
(`get(name)`, `find(name)`, `for_path(path)`) instead of keeping their own dict of formats.

A format module provides:
    looks_like(head: bytes) -> bool          the first 4 KiB are this format (a directory format:
                                             looks_like_dir(path) -> bool)
    check(path: Path, label: str) -> None    structural check, no runtime: an InputError saying
                                             "expected ... Received: ..."
    <runner> class                           the host runner; with `from_file(path, threads, layout,
                                             **options)` when `opens_files`
    detect_precision(path, runner) -> str    when `opens_files` ("int8" / "fp32")
    board_floor() -> dict                    optional: minimum on-board runtime versions known only
                                             at bundle time (added to `board_min_versions`)
    input_tensor(path) -> dict               optional: the first input as stored in the file (name, shape,
                                             dtype; scale and zero_point when it is quantized), no runtime

`pipeline/boards/device_runner.py` (uploaded to boards as one file) keeps its own copy of the
board columns; `tests/test_formats.py` checks that it agrees with this table.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from edgepipe.core.errors import InputError, expected_received


@dataclass(frozen=True)
class Format:
    name: str  # Artifact.format, report rows, manifest model.format: "tflite"
    title: str  # for people: "OpenVINO IR"
    module: str  # the module with its sniffing, structural check and host runner
    suffixes: tuple[str, ...]  # of the main file, lower case; () for a directory format
    kind: str  # what `inspect.sniff` reports for it ("zip" for .keras, "openvino-xml" for an IR)
    expected: str  # what a file of it is, for messages: "a TFLite flatbuffer (identifier 'TFL3')"
    runner: str  # host runner class in `module`
    noun: str | None = None  # how `inspect.describe` names a file of `kind` (None: by its magic bytes)
    directory: bool = False  # the artifact is a directory (sniffed by `looks_like_dir`)
    loose_sniff: bool = False  # the sniff is a heuristic: "unknown" bytes still go to the structural check
    companions: tuple[tuple[str, str], ...] = ()  # (suffix, what): files beside the main one, part of the model
    opens_files: bool = False  # `edgepipe validate | bench` open a file of it (runner.from_file)
    # distributions whose versions key the validators' stage cache (order matters: it is the key's order)
    runtime_packages: tuple[str, ...] = ()
    runtime_modules: tuple[str, ...] = ()  # what the host imports to run it; the first that imports wins
    board_runtimes: tuple[str, ...] = ()  # on-board runtimes device_runner tries, in order; () = none runs it
    board_min_versions: tuple[tuple[str, str], ...] = ()  # oldest board runtimes a bundle asks for
    # the board CPUs (platform.machine(), as device_runner.isa_of names them) a model of this format runs on;
    # () = any (a TFLite flatbuffer is ISA-independent; its runtime's wheels decide where it runs)
    board_isas: tuple[str, ...] = ()

    def load(self):
        """The format's module (imports no toolkit: they are imported inside its functions)."""
        return importlib.import_module(self.module)

    def runner_class(self) -> type:
        return getattr(self.load(), self.runner)

    def looks_like(self, path: Path, head: bytes | None) -> bool:
        """`head` is the first 4 KiB of a file, None for a directory."""
        if self.directory:
            return head is None and self.load().looks_like_dir(Path(path))
        return head is not None and self.load().looks_like(head)

    def check(self, path: Path, label: str) -> None:
        self.load().check(Path(path), label)

    def detect_precision(self, path: Path, runner=None) -> str:
        return self.load().detect_precision(Path(path), runner)

    def import_runtime(self):
        """Import the host runtime (the first of `runtime_modules` that imports); ImportError when none does."""
        error: ImportError | None = None
        for name in self.runtime_modules:
            try:
                return importlib.import_module(name)
            except ImportError as err:
                error = err
        raise error or ImportError(f"no host runtime is known for {self.name} models")

    def input_tensor(self, path: Path) -> dict | None:
        """The model's first input as its file stores it (None when the format module cannot say)."""
        read = getattr(self.load(), "input_tensor", None)
        return read(Path(path)) if read else None

    def model_files(self, path: Path) -> tuple[str, ...]:
        """The main file and its companions (an IR's .bin), by name, as they sit side by side."""
        path = Path(path)
        return (path.name, *(path.with_suffix(s).name for s, _ in self.companions))

    def board_requires(self) -> dict:
        """Minimum on-board runtime versions a bundle of this format asks for."""
        floor = getattr(self.load(), "board_floor", None) if self.board_runtimes else None
        return {**dict(self.board_min_versions), **(floor() if floor else {})}

    @property
    def file_label(self) -> str:
        """'.tflite', '.xml (OpenVINO IR)': the suffix, and the title where the suffix does not say it."""
        suffix = self.suffixes[0] if self.suffixes else "directory"
        return suffix if suffix.lstrip(".") == self.name else f"{suffix} ({self.title})"


FORMATS: tuple[Format, ...] = (
    Format(
        name="tflite", title="TFLite", module="edgepipe.formats.tflite", suffixes=(".tflite",), kind="tflite",
        expected="a TFLite flatbuffer (identifier 'TFL3')", noun="a TFLite flatbuffer", runner="TFLiteRunner",
        opens_files=True, runtime_packages=("ai-edge-litert",),
        runtime_modules=("ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow"),
        board_runtimes=("ai_edge_litert", "tflite_runtime"),
        # tflite-runtime 2.11 is the newest wheel for Python 3.7 (the `device-old` tox env runs it)
        board_min_versions=(("ai_edge_litert", "1.0"), ("tflite_runtime", "2.11")),
    ),
    Format(
        name="openvino-ir", title="OpenVINO IR", module="edgepipe.formats.openvino_ir", suffixes=(".xml",),
        kind="openvino-xml", expected="an OpenVINO IR .xml file with its .bin", noun="an OpenVINO IR XML file",
        runner="OpenVINORunner", companions=((".bin", "weights"),), opens_files=True,
        runtime_packages=("openvino",), runtime_modules=("openvino",), board_runtimes=("openvino",),
        board_isas=("x86_64", "aarch64"),  # the CPUs OpenVINO's CPU plugin supports
    ),
    Format(
        name="onnx", title="ONNX", module="edgepipe.formats.onnx", suffixes=(".onnx",), kind="onnx",
        expected="an ONNX protobuf model", noun="an ONNX protobuf", runner="ONNXRunner", loose_sniff=True,
        opens_files=True, runtime_packages=("onnxruntime",), runtime_modules=("onnxruntime",),
    ),
    Format(
        name="keras", title="Keras", module="edgepipe.formats.keras", suffixes=(".keras",), kind="zip",
        expected="a .keras zip archive", runner="KerasRunner", runtime_packages=("tensorflow", "keras"),
        runtime_modules=("keras",),
    ),
    Format(
        name="savedmodel", title="SavedModel", module="edgepipe.formats.savedmodel", suffixes=(), kind="savedmodel",
        expected="a SavedModel directory (saved_model.pb and its variables)", noun="a SavedModel directory",
        runner="SavedModelRunner", directory=True, runtime_packages=("tensorflow",),
        runtime_modules=("tensorflow",),
    ),
)
_BY_NAME = {f.name: f for f in FORMATS}


def names() -> tuple[str, ...]:
    return tuple(_BY_NAME)


def find(name: str | None) -> Format | None:
    return _BY_NAME.get(name) if isinstance(name, str) else None


def get(name: str) -> Format:
    """The format called `name`; an InputError naming the known ones otherwise."""
    fmt = find(name)
    if fmt is None:
        raise InputError(expected_received("artifact format", f"one of {sorted(_BY_NAME)}", repr(name)))
    return fmt


def for_suffix(path: str | Path) -> Format | None:
    """The file format a path's suffix names (case-insensitive), or None."""
    suffix = Path(path).suffix.lower()
    return next((f for f in FORMATS if suffix and suffix in f.suffixes), None)


def for_path(path: str | Path) -> Format | None:
    """The format of `path`: by its suffix; a directory by its contents (a SavedModel). None: not a known format."""
    path = Path(path)
    if path.is_dir():
        return next((f for f in FORMATS if f.directory and f.looks_like(path, None)), None)
    return for_suffix(path)


def runtime_packages(name: str) -> tuple[str, ...]:
    """Distributions whose versions key the validators' cache for artifacts of `name` (() if unknown)."""
    fmt = find(name)
    return fmt.runtime_packages if fmt else ()


def file_labels(formats: tuple[Format, ...]) -> str:
    """'.tflite, .xml (OpenVINO IR) or .onnx': the files of `formats`, for messages."""
    labels = [f.file_label for f in formats]
    return labels[0] if len(labels) == 1 else f"{', '.join(labels[:-1])} or {labels[-1]}"
