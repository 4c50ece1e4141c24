"""How artifacts are run: one small runner per runtime, same interface.

`predict(image)` takes one preprocessed HWC float32 image and returns class scores
(float32). Quantized inputs/outputs are (de)quantized with the tensor's own parameters.
Shapes and dtypes are checked, never silently reshaped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.errors import InputError


def check_input(image, want: tuple[int, ...], runtime: str) -> np.ndarray:
    """One preprocessed HWC float32 image for a model whose input is `want` (batch first), as a batch of 1.
    Never reshaped, transposed or cast: a mismatch is an error naming what was expected and received."""
    dtype = getattr(image, "dtype", type(image).__name__)
    if not isinstance(image, np.ndarray) or image.dtype != np.float32:
        raise InputError(f"{runtime} input: expected a preprocessed float32 image of shape {tuple(want[1:])}. "
                         f"Received: dtype {dtype}")
    x = image[None]
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
    def __init__(self, path: Path, threads: int):
        cls, self.runtime = tflite_interpreter_class()
        self.interp = cls(model_path=str(path), num_threads=threads)
        self.interp.allocate_tensors()
        self.inp = self.interp.get_input_details()[0]
        self.out = self.interp.get_output_details()[0]
        self.shape = tuple(int(v) for v in self.inp["shape"])

    def _quantize(self, x: np.ndarray) -> np.ndarray:
        dtype = self.inp["dtype"]
        if dtype == np.float32:
            return x.astype(np.float32)
        scale, zp = self.inp["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zp), info.min, info.max).astype(dtype)

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
        x = check_input(image, self.shape, "OpenVINO")
        self.request.infer({0: x})
        return np.array(self.request.get_output_tensor(0).data[0], dtype=np.float32)


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
