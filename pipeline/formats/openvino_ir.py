"""OpenVINO IR (.xml + .bin): sniffing, the structural check of the XML and its weights, and the host runner.

The check parses the XML (stdlib, no OpenVINO): a <net> with <layers>, edges between existing
layers, every Const layer's size consistent with its shape and type, and a .bin beside it that
holds every Const layer's bytes.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from edgepipe.core import safeio
from edgepipe.core.errors import InputError, expected_received
from edgepipe.core.versions import tool_versions
from edgepipe.formats.inspect import as_text
from edgepipe.formats.runner_input import check_input, input_layout
from edgepipe.formats.throughput import one_by_one

_ITEMSIZE = {"f64": 8, "f32": 4, "f16": 2, "bf16": 2, "i64": 8, "i32": 4, "i16": 2, "i8": 1, "u64": 8,
             "u32": 4, "u16": 2, "u8": 1, "boolean": 1}


def looks_like(head: bytes) -> bool:
    text = as_text(head)
    return text is not None and text.lstrip("\ufeff \t\r\n").startswith("<") and "<net" in text


def check(path: Path, label: str) -> None:
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(safeio.read_bytes(path, "model", safeio.MAX_TEXT, label))
    except ET.ParseError as err:
        raise InputError(expected_received(label, "well-formed IR XML", f"a parse error: {err}")) from None
    layers = root.findall("./layers/layer")
    if root.tag != "net" or not layers:
        raise InputError(expected_received(label, "an IR <net> with <layers>",
                                           f"root <{root.tag}> with {len(layers)} layers"))
    ids = {layer.get("id") for layer in layers}
    for edge in root.findall("./edges/edge"):
        if edge.get("from-layer") not in ids or edge.get("to-layer") not in ids:
            raise InputError(expected_received(label, "edges between existing layers",
                                               f"an edge {edge.get('from-layer')} -> {edge.get('to-layer')}"))
    end = 0
    for layer in layers:
        data = layer.find("data")
        if layer.get("type") != "Const" or data is None or data.get("offset") is None:
            continue
        try:
            offset, size = int(data.get("offset")), int(data.get("size"))
        except (TypeError, ValueError):
            raise InputError(expected_received(label, "integer offset/size on Const layers",
                                               f"{dict(data.attrib)} on layer {layer.get('id')}")) from None
        itemsize = _ITEMSIZE.get(data.get("element_type", ""))
        shape = data.get("shape")
        if itemsize and shape is not None:
            dims = [int(d) for d in shape.split(",") if d.strip()] if shape.strip() else []
            if size != math.prod(dims) * itemsize:
                raise InputError(expected_received(
                    label, f"Const layer {layer.get('id')} of {math.prod(dims) * itemsize} bytes "
                    f"({data.get('element_type')} {dims})", f"size={size}"))
        end = max(end, offset + size)
    bin_path = path.with_suffix(".bin")
    problem = safeio.stat_problem(bin_path)
    if problem not in (None, "no such file or directory"):
        raise InputError(expected_received(f"{label} weights {bin_path.name!r}", "a regular file", problem))
    have = bin_path.stat().st_size if problem is None else None
    if end and (have is None or have < end):
        raise InputError(expected_received(
            f"{label} weights {bin_path.name!r}", f"at least {end} bytes (the Const layers' extent)",
            "no such file" if have is None else f"{have} bytes (truncated)"))


def input_tensor(path: Path) -> dict:
    """The first Parameter of the IR XML (no runtime): name, shape, element type. An NNCF INT8 IR keeps a
    float input; its quantization is the FakeQuantize layers inside the graph."""
    import xml.etree.ElementTree as ET

    root = ET.parse(path).getroot()
    layer = next((x for x in root.findall("./layers/layer") if x.get("type") == "Parameter"), None)
    data = layer.find("data") if layer is not None else None
    if data is None:
        return {}
    shape = [int(d) if d.strip().lstrip("-").isdigit() else -1 for d in (data.get("shape") or "").split(",") if d]
    return {"name": layer.get("name"), "shape": shape, "dtype": data.get("element_type")}


def detect_precision(path: Path, runner=None) -> str:
    """int8 when the IR holds FakeQuantize layers or i8 constants; else fp32."""
    text = Path(path).read_text(errors="replace")
    return "int8" if 'type="FakeQuantize"' in text or 'element_type="i8"' in text else "fp32"


def add_outputs(model, outputs: list) -> list[int]:
    """Makes every op output in `outputs` a model output and returns the index of each among the model's (and so
    the compiled model's) outputs. OpenVINO's `add_outputs` adds no second Result for a value that already has
    one (the model's own output, or one asked for twice), so the new outputs are not always the last ones."""
    model.add_outputs(outputs)
    index: dict[tuple[int, int], int] = {}
    for i, result in enumerate(model.get_results()):
        src = result.input_value(0)
        index.setdefault((src.get_node().get_instance_id(), src.get_index()), i)
    return [index[(o.get_node().get_instance_id(), o.get_index())] for o in outputs]


def board_floor() -> dict:
    """An IR asks the board for at least the OpenVINO release year it was validated with (IR readers are
    forward-only)."""
    v = tool_versions("openvino")["openvino"]
    return {"openvino": f"{v.split('.')[0]}.0"} if v else {}


def plain(v):
    """OpenVINO property values as JSON-friendly text: ov.Type f32 -> 'f32' (str() gives "<Type: 'float32'>")."""
    if isinstance(v, int | str):
        return v
    return v.to_string() if hasattr(v, "to_string") else str(v)


class OpenVINORunner:
    """OpenVINO CPU plugin. `precision` is explicit: on CPUs with bf16 support the plugin's
    default inference precision is bf16, which would make an "FP32" measurement a bf16 one.
    `precision=None` leaves it to the plugin, as a user's plain `compile_model` does (benchmarks
    compare against that; `info` records what the plugin chose).
    A foreign IR with a dynamic batch is reshaped to batch 1; a channels-first IR is refused
    unless the caller chose `layout="nchw"` or `"auto"` (see `check_input`). `predict_many`
    (accuracy passes) runs asynchronous requests on a THROUGHPUT compile of the same model."""

    def __init__(self, path: Path, threads: int, hint: str = "LATENCY", precision: str | None = "f32",
                 layout: str = "nhwc", streams: int | None = None, blob: Path | None = None,
                 cache_dir: Path | None = None, emulate_int8: bool = False):
        """`blob`: a model compiled for this CPU (`export_model`), imported instead of compiling `path`.
        The import gets the same config: without it the plugin re-applies its defaults (bf16 here).
        `emulate_int8`: compute a quantized IR's FakeQuantize ops in f32 (the plugin's low-precision
        transformations off, `LP_TRANSFORMS_MODE`) instead of on its int8 kernels: the IR's quantization
        exactly, without the int16 saturation of x86 int8 kernels lacking VNNI, at f32 speed. Always on one
        stream (`streams` other than 1 is refused): with the low-precision transformations off, OpenVINO
        2026.4's CPU plugin on two streams gave wrong scores on some compiles (the elpv NPU IR: 1 to 3 of 6
        THROUGHPUT compiles off by up to 0.8 on 16 images; top-1 0.435 instead of 0.755 on the test split),
        and never on one stream (2 threads) or with the transformations on."""
        import openvino as ov

        if emulate_int8 and streams not in (None, 1):
            raise ValueError(f"streams: expected 1 (or None) with emulate_int8. Received: {streams!r}")
        self.runtime = "openvino"
        self.core = ov.Core()
        if cache_dir is not None:
            self.core.set_property({"CACHE_DIR": str(cache_dir)})
        self.path, self.blob, self.threads, self.precision = Path(path), blob, threads, precision
        self.hint, self.streams, self.model, self.emulate_int8 = hint, streams, None, emulate_int8
        self.compiled = self.compile(hint, streams)
        self.info = {"inference_precision": plain(self.compiled.get_property("INFERENCE_PRECISION_HINT")),
                     "performance_hint": plain(self.compiled.get_property("PERFORMANCE_HINT")),
                     "streams": int(self.compiled.get_property("NUM_STREAMS")),
                     "loaded_from": "blob" if blob is not None else "ir"}
        if emulate_int8:
            self.info["int8"] = "emulated: FakeQuantize in f32 (LP_TRANSFORMS_MODE off), not the int8 kernels"
        self.request = self.compiled.create_infer_request()
        self.shape = tuple(int(v) for v in self.compiled.input(0).get_shape())
        self.layout = input_layout(self.shape) if layout == "auto" else layout

    def compile(self, hint: str, streams: int | None = None):
        """This runner's model (its blob, or its IR at batch 1) compiled for the CPU with `hint`; the
        threads and the inference precision are always this runner's."""
        config = {"INFERENCE_NUM_THREADS": self.threads, "PERFORMANCE_HINT": hint}
        if self.precision is not None:
            config["INFERENCE_PRECISION_HINT"] = self.precision
        if streams is not None:
            config["NUM_STREAMS"] = streams
        if self.emulate_int8:  # one stream: see __init__ (several gave wrong scores with this switch off)
            config.update(LP_TRANSFORMS_MODE=False, NUM_STREAMS=1)
        if self.blob is not None:
            return self.core.import_model(Path(self.blob).read_bytes(), "CPU", config)
        if self.model is None:
            model = self.core.read_model(str(self.path))
            pshape = model.input(0).get_partial_shape()
            if pshape.rank.is_static and pshape.rank.get_length() == 4 and pshape[0].is_dynamic:
                model.reshape({model.input(0).get_any_name(): [1, *[d.get_length() if d.is_static else -1
                                                                   for d in list(pshape)[1:]]]})
            self.model = model
        return self.core.compile_model(self.model, "CPU", config)

    @classmethod
    def from_file(cls, path: str | Path, threads: int, layout: str = "auto", **options) -> OpenVINORunner:
        """A foreign IR (standalone validate/bench); options: `hint`, `inference_precision`."""
        return cls(Path(path), threads, options.get("hint", "LATENCY"), options.get("inference_precision", "f32"),
                   layout)

    def predict(self, image: np.ndarray) -> np.ndarray:
        x = check_input(image, self.shape, "OpenVINO", self.layout)
        self.request.infer({0: x})
        return np.array(self.request.get_output_tensor(0).data, dtype=np.float32).reshape(-1)

    def predict_many(self, images: np.ndarray, progress=None) -> np.ndarray:
        """Scores of many images, the same as `predict` on each: asynchronous infer requests (one image
        each) on the same model compiled with the THROUGHPUT hint (the plugin splits this runner's
        threads into streams; same precision; `tests/test_throughput.py`). An emulating runner has one stream
        (see `__init__`): it runs them one by one on its own compile."""
        import threading

        import openvino as ov

        n = len(images)
        if n == 0 or self.threads <= 1 or self.emulate_int8:
            return one_by_one(self, images, progress)
        compiled = self.compiled if self.hint == "THROUGHPUT" else self.compile("THROUGHPUT")
        out = np.empty((n, math.prod(int(d) for d in compiled.output(0).get_shape())), np.float32)
        lock = threading.Lock()

        def done(request, i: int) -> None:
            out[i] = request.get_output_tensor(0).data.reshape(-1)
            if progress:
                with lock:
                    progress(1)

        queue = ov.AsyncInferQueue(compiled, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        queue.set_callback(done)
        for i, image in enumerate(images):
            queue.start_async({0: check_input(image, self.shape, "OpenVINO", self.layout)}, i)
        queue.wait_all()
        return out
