"""How artifacts are run: one small runner per runtime, same interface.

`predict(image)` takes one preprocessed HWC float32 image and returns class scores
(float32). Quantized inputs/outputs are (de)quantized with the tensor's own parameters.
Shapes and dtypes are checked, never silently reshaped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.errors import InputError


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
    def __init__(self, path: Path, threads: int, preserve_all_tensors: bool = False):
        """`preserve_all_tensors` (diagnostics only): keep every intermediate tensor readable, which
        also means running the built-in kernels without the default (XNNPACK) delegate."""
        cls, self.runtime = tflite_interpreter_class()
        kw = {}
        if preserve_all_tensors:
            import importlib

            resolver = importlib.import_module(cls.__module__).OpResolverType
            kw = {"experimental_preserve_all_tensors": True,
                  "experimental_op_resolver_type": resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
        self.interp = cls(model_path=str(path), num_threads=threads, **kw)
        self.interp.allocate_tensors()
        self.inp = self.interp.get_input_details()[0]
        self.out = self.interp.get_output_details()[0]

    def _quantize(self, x: np.ndarray) -> np.ndarray:
        dtype = self.inp["dtype"]
        if dtype == np.float32:
            return x.astype(np.float32)
        scale, zp = self.inp["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zp), info.min, info.max).astype(dtype)

    def predict(self, image: np.ndarray) -> np.ndarray:
        x = image[None]
        want = tuple(int(v) for v in self.inp["shape"])
        if x.shape != want:
            raise InputError(f"TFLite input: expected shape {want} (NHWC). Received: {x.shape}")
        self.interp.set_tensor(self.inp["index"], self._quantize(x))
        self.interp.invoke()
        y = self.interp.get_tensor(self.out["index"])[0]
        if self.out["dtype"] != np.float32:
            scale, zp = self.out["quantization"]
            y = (y.astype(np.float32) - zp) * scale
        return y.astype(np.float32)


class OpenVINORunner:
    """OpenVINO CPU plugin. `precision` is explicit: on CPUs with bf16 support the plugin's
    default inference precision is bf16, which would make an "FP32" measurement a bf16 one."""

    def __init__(self, path: Path, threads: int, hint: str = "LATENCY", precision: str = "f32"):
        import openvino as ov

        self.runtime = "openvino"
        core = ov.Core()
        self.compiled = core.compile_model(
            str(path), "CPU",
            {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": hint, "INFERENCE_PRECISION_HINT": precision},
        )
        self.info = {"inference_precision": str(self.compiled.get_property("INFERENCE_PRECISION_HINT")),
                     "performance_hint": str(self.compiled.get_property("PERFORMANCE_HINT"))}
        self.request = self.compiled.create_infer_request()
        self.shape = tuple(int(v) for v in self.compiled.input(0).get_shape())

    def predict(self, image: np.ndarray) -> np.ndarray:
        x = image[None].astype(np.float32)
        if x.shape != self.shape:
            raise InputError(f"OpenVINO input: expected shape {self.shape}. Received: {x.shape}")
        self.request.infer({0: x})
        return np.array(self.request.get_output_tensor(0).data[0], dtype=np.float32)


class ONNXRunner:
    """ONNX Runtime on the CPU (FP32 or QDQ INT8 models from tf2onnx: NHWC float input)."""

    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort

        self.runtime = "onnxruntime"
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.shape = tuple(inp.shape)
        if inp.type != "tensor(float)":
            raise InputError(f"ONNX model {str(path)!r}: expected a float32 input. Received: {inp.type}")

    def predict(self, image: np.ndarray) -> np.ndarray:
        x = image[None].astype(np.float32)
        if len(x.shape) != len(self.shape) or any(
                isinstance(d, int) and d != v for d, v in zip(self.shape, x.shape, strict=True)):
            raise InputError(f"ONNX input: expected shape {self.shape} (NHWC). Received: {x.shape}")
        return np.asarray(self.session.run(None, {self.input_name: x})[0][0], dtype=np.float32)


class KerasRunner:
    """The FP32 reference."""

    def __init__(self, model):
        self.runtime = "keras"
        self.model = model

    def predict(self, image: np.ndarray) -> np.ndarray:
        return np.asarray(self.model(image[None], training=False))[0].astype(np.float32)

    def predict_batch(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(images, batch_size=16, verbose=0), dtype=np.float32)


class SavedModelRunner:
    """The FP32 reference when the user's model is a SavedModel (its serving signature)."""

    def __init__(self, loaded_and_fn):
        self.runtime = "tensorflow"
        self._loaded, self.fn = loaded_and_fn  # keep the loaded object alive
        self.input_name = next(iter(self.fn.structured_input_signature[1]))

    def predict(self, image: np.ndarray) -> np.ndarray:
        out = self.fn(**{self.input_name: image[None].astype(np.float32)})
        return np.asarray(next(iter(out.values())))[0].astype(np.float32)
