"""How artifacts are run: one small runner per runtime, same interface.

`predict(image)` takes one preprocessed HWC float32 image and returns class scores
(float32). Quantized inputs/outputs are (de)quantized with the tensor's own parameters.
Shapes and dtypes are checked, never silently reshaped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.core.errors import InputError


def check_input(image, want: tuple[int, ...], runtime: str, layout: str = "nhwc") -> np.ndarray:
    """One preprocessed HWC float32 image for a model whose input is `want` (batch first), as a batch of 1.
    Never reshaped or cast: a mismatch is an error naming what was expected and received. The one
    transpose is the explicit `layout="nchw"` a caller chose for a channels-first model (the
    standalone commands do, and say so); the pipeline's runners keep the default and refuse NCHW."""
    dtype = getattr(image, "dtype", type(image).__name__)
    if not isinstance(image, np.ndarray) or image.dtype != np.float32:
        raise InputError(f"{runtime} input: expected a preprocessed float32 image of shape {tuple(want[1:])}. "
                         f"Received: dtype {dtype}")
    x = image[None]
    if layout == "nchw" and x.ndim == 4:
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    if x.shape != tuple(want):
        nchw = len(want) == 4 and want[1] in (1, 3) and want[3] not in (1, 3)
        layout = "NCHW: the model is channels-first, edgepipe feeds NHWC" if nchw else "NHWC"
        raise InputError(f"{runtime} input: expected shape {tuple(want)} ({layout}). Received: {x.shape}")
    return x


def tflite_interpreter_class():
    """LiteRT first; tflite-runtime on boards that only have it; TensorFlow's as a last resort."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, "tflite-runtime"
    except ImportError:
        import tensorflow as tf

        return tf.lite.Interpreter, "tensorflow"


class TFLiteRunner:
    """`xnnpack=False` uses the builtin kernels without the default XNNPACK delegate; `delegates`
    are loaded delegates (e.g. libedgetpu's), applied before the default ones. `preserve_all_tensors`
    (diagnostics only) keeps every intermediate tensor readable, which also means the builtin kernels."""

    def __init__(self, path: Path, threads: int, xnnpack: bool = True, delegates: list | None = None,
                 preserve_all_tensors: bool = False):
        cls, self.runtime = tflite_interpreter_class()
        kw = {}
        if delegates:
            kw["experimental_delegates"] = delegates
        if preserve_all_tensors:
            kw["experimental_preserve_all_tensors"] = True
            xnnpack = False
        if not xnnpack:
            from importlib import import_module

            resolver = import_module(cls.__module__).OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
            kw["experimental_op_resolver_type"] = resolver
        self.interp = cls(model_path=str(path), num_threads=threads, **kw)
        self.info = {"threads": threads, "xnnpack": xnnpack}
        self.interp.allocate_tensors()
        self.inp = self.interp.get_input_details()[0]
        self.out = self.interp.get_output_details()[0]
        self.shape = tuple(int(v) for v in self.inp["shape"])

    def _quantize(self, x: np.ndarray) -> np.ndarray:
        from pipeline.boards.device_runner import quantize_input  # one quantization for host and boards

        return quantize_input(np, x, self.inp["dtype"], self.inp["quantization"])

    def predict(self, image: np.ndarray) -> np.ndarray:
        x = check_input(image, self.shape, "TFLite")
        self.interp.set_tensor(self.inp["index"], self._quantize(x))
        self.interp.invoke()
        y = self.interp.get_tensor(self.out["index"])[0]
        if self.out["dtype"] != np.float32:
            scale, zp = self.out["quantization"]
            y = (y.astype(np.float32) - zp) * scale
        return y.astype(np.float32)


class OpenVINORunner:
    """OpenVINO CPU plugin. `precision` is explicit: on CPUs with bf16 support the plugin's
    default inference precision is bf16, which would make an "FP32" measurement a bf16 one.
    A foreign IR with a dynamic batch is reshaped to batch 1; a channels-first IR is refused
    unless the caller chose `layout="nchw"` or `"auto"` (see `check_input`)."""

    def __init__(self, path: Path, threads: int, hint: str = "LATENCY", precision: str = "f32",
                 layout: str = "nhwc", streams: int | None = None, blob: Path | None = None,
                 cache_dir: Path | None = None):
        """`blob`: a model compiled for this CPU (`export_model`), imported instead of compiling `path`.
        The import gets the same config: without it the plugin re-applies its defaults (bf16 here)."""
        import openvino as ov

        self.runtime = "openvino"
        core = ov.Core()
        if cache_dir is not None:
            core.set_property({"CACHE_DIR": str(cache_dir)})
        config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": hint, "INFERENCE_PRECISION_HINT": precision}
        if streams is not None:
            config["NUM_STREAMS"] = streams
        if blob is not None:
            self.compiled = core.import_model(Path(blob).read_bytes(), "CPU", config)
        else:
            model = core.read_model(str(path))
            pshape = model.input(0).get_partial_shape()
            if pshape.rank.is_static and pshape.rank.get_length() == 4 and pshape[0].is_dynamic:
                model.reshape({model.input(0).get_any_name(): [1, *[d.get_length() if d.is_static else -1
                                                                   for d in list(pshape)[1:]]]})
            self.compiled = core.compile_model(model, "CPU", config)
        from targets.openvino_compile import plain

        self.info = {"inference_precision": plain(self.compiled.get_property("INFERENCE_PRECISION_HINT")),
                     "performance_hint": plain(self.compiled.get_property("PERFORMANCE_HINT")),
                     "streams": int(self.compiled.get_property("NUM_STREAMS")),
                     "loaded_from": "blob" if blob is not None else "ir"}
        self.request = self.compiled.create_infer_request()
        self.shape = tuple(int(v) for v in self.compiled.input(0).get_shape())
        self.layout = input_layout(self.shape) if layout == "auto" else layout

    def predict(self, image: np.ndarray) -> np.ndarray:
        x = check_input(image, self.shape, "OpenVINO", self.layout)
        self.request.infer({0: x})
        return np.array(self.request.get_output_tensor(0).data, dtype=np.float32).reshape(-1)


class ONNXRunner:
    """ONNX Runtime, CPU execution provider. A symbolic batch means 1; NCHW only by an
    explicit `layout` as for OpenVINORunner."""

    def __init__(self, path: Path, threads: int, layout: str = "nhwc"):
        import onnxruntime as ort

        self.runtime = "onnxruntime"
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in inp.shape)
        if len(self.shape) != 4:
            raise InputError(f"ONNX input {inp.name!r}: expected a 4-D image tensor. Received shape: {inp.shape}")
        self.layout = input_layout(self.shape) if layout == "auto" else layout
        self.dtype = np.float16 if inp.type == "tensor(float16)" else np.float32

    def predict(self, image: np.ndarray) -> np.ndarray:
        x = check_input(image, self.shape, "ONNX", self.layout).astype(self.dtype)
        return np.asarray(self.session.run(None, {self.input_name: x})[0], dtype=np.float32).reshape(-1)


def input_layout(shape: tuple[int, ...]) -> str:
    """NCHW when the second dimension looks like channels and the last does not."""
    if len(shape) == 4 and shape[1] in (1, 3) and shape[3] not in (1, 3):
        return "nchw"
    return "nhwc"


def image_input_shape(runner) -> tuple[int, int, int]:
    """(H, W, C) that `runner.predict` expects, whatever the model's own layout."""
    shape = tuple(int(v) for v in (runner.inp["shape"] if hasattr(runner, "inp") else runner.shape))
    if getattr(runner, "layout", "nhwc") == "nchw":
        return shape[2], shape[3], shape[1]
    return shape[1], shape[2], shape[3]


# artifact format -> (runner class, the module that must import for it to run)
RUNNERS = {"tflite": "TFLiteRunner", "openvino-ir": "OpenVINORunner", "onnx": "ONNXRunner"}
RUNTIME_MODULES = {"openvino-ir": "openvino", "onnx": "onnxruntime"}


def runtime_module(fmt: str):
    """Import the runtime a format needs (ImportError when it is missing on this host)."""
    import importlib

    if fmt == "tflite":
        return tflite_interpreter_class()
    return importlib.import_module(RUNTIME_MODULES[fmt])


def open_runner(fmt: str, path: str | Path, threads: int, layout: str = "auto", **options):
    """A runner for a foreign artifact file by format (standalone validate/bench). `layout="auto"`
    feeds a channels-first model transposed images; the caller reports `runner.layout`."""
    if fmt not in RUNNERS:
        raise InputError(f"artifact format: expected one of {sorted(RUNNERS)}. Received: {fmt!r}")
    if fmt == "openvino-ir":
        return OpenVINORunner(Path(path), threads, options.get("hint", "LATENCY"),
                              options.get("inference_precision", "f32"), layout)
    if fmt == "onnx":
        return ONNXRunner(Path(path), threads, layout)
    return TFLiteRunner(Path(path), threads)


class KerasRunner:
    """The FP32 reference."""

    def __init__(self, model):
        self.runtime = "keras"
        self.model = model
        self.shape = (1, *(int(d) for d in model.inputs[0].shape[1:]))

    def predict(self, image: np.ndarray) -> np.ndarray:
        return np.asarray(self.model(check_input(image, self.shape, "Keras"), training=False))[0].astype(np.float32)

    def predict_batch(self, images: np.ndarray) -> np.ndarray:
        if len(images):
            check_input(images[0], self.shape, "Keras")
        return np.asarray(self.model.predict(images, batch_size=16, verbose=0), dtype=np.float32)


class SavedModelRunner:
    """The FP32 reference when the user's model is a SavedModel (its serving signature)."""

    def __init__(self, loaded_and_fn):
        self.runtime = "tensorflow"
        self._loaded, self.fn = loaded_and_fn  # keep the loaded object alive
        self.input_name, spec = next(iter(self.fn.structured_input_signature[1].items()))
        self.shape = (1, *(int(d) for d in spec.shape[1:]))

    def predict(self, image: np.ndarray) -> np.ndarray:
        out = self.fn(**{self.input_name: check_input(image, self.shape, "SavedModel")})
        return np.asarray(next(iter(out.values())))[0].astype(np.float32)
