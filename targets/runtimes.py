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
    """`xnnpack=False` uses the builtin kernels without the default XNNPACK delegate; `delegates`
    are loaded delegates (e.g. libedgetpu's), applied before the default ones."""

    def __init__(self, path: Path, threads: int, xnnpack: bool = True, delegates: list | None = None):
        cls, self.runtime = tflite_interpreter_class()
        kw = {}
        if delegates:
            kw["experimental_delegates"] = delegates
        if not xnnpack:
            from importlib import import_module

            resolver = import_module(cls.__module__).OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
            kw["experimental_op_resolver_type"] = resolver
        self.interp = cls(model_path=str(path), num_threads=threads, **kw)
        self.info = {"threads": threads, "xnnpack": xnnpack}
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

    def __init__(self, path: Path, threads: int, hint: str = "LATENCY", precision: str = "f32",
                 streams: int | None = None, blob: Path | None = None, cache_dir: Path | None = None):
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
            self.compiled = core.compile_model(str(path), "CPU", config)
        from targets.openvino_compile import plain

        self.info = {"inference_precision": plain(self.compiled.get_property("INFERENCE_PRECISION_HINT")),
                     "performance_hint": plain(self.compiled.get_property("PERFORMANCE_HINT")),
                     "streams": int(self.compiled.get_property("NUM_STREAMS")),
                     "loaded_from": "blob" if blob is not None else "ir"}
        self.request = self.compiled.create_infer_request()
        self.shape = tuple(int(v) for v in self.compiled.input(0).get_shape())

    def predict(self, image: np.ndarray) -> np.ndarray:
        x = image[None].astype(np.float32)
        if x.shape != self.shape:
            raise InputError(f"OpenVINO input: expected shape {self.shape}. Received: {x.shape}")
        self.request.infer({0: x})
        return np.array(self.request.get_output_tensor(0).data[0], dtype=np.float32)


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
