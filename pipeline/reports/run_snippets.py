"""How to run a published artifact: a short, self-contained Python program for its runtime (LiteRT,
OpenVINO, ONNX Runtime), with the artifact's own preprocessing (from preprocess.json's values) and
input quantization. The model card shows it; `tests/test_report_views.py` runs it on real artifacts.

The program runs in the artifact directory (beside labels.txt) on `image.jpg` and prints the top class
and its score. File names enter it as Python literals (`repr`), never as code.
"""

from __future__ import annotations

from edgepipe.reports.numbers import fmt

RESAMPLE = {"bilinear": "BILINEAR", "bicubic": "BICUBIC", "nearest": "NEAREST"}
SCALE = {
    "xception": "x = x / 127.5 - 1.0  # xception: [-1, 1]",
    "unit": "x = x / 255.0  # unit: [0, 1]",
    "imagenet": "x = (x / 255.0 - np.float32([0.485, 0.456, 0.406])) / np.float32([0.229, 0.224, 0.225])  # imagenet",
    "raw": "# raw: pixel values 0..255 as they are",
}


def preprocess_lines(spec: dict) -> list[str]:
    color = spec.get("color", "rgb")
    channels = int(spec.get("channels", 3))
    if channels == 1 or color == "grayscale":
        convert = '.convert("L")'
    elif color == "grayscale_to_rgb":
        convert = '.convert("L").convert("RGB")'
    else:
        convert = '.convert("RGB")'
    size = f"({int(spec['width'])}, {int(spec['height'])})"
    resample = RESAMPLE[spec.get("interpolation", "bilinear")]
    lines = [f"image = Image.open(IMAGE){convert}.resize({size}, Image.{resample})",
             "x = np.asarray(image, dtype=np.float32)"]
    if channels == 1:
        lines.append("x = x[..., None]")
    lines.append(SCALE.get(spec.get("mode", "raw"), SCALE["raw"]))
    return lines


def _channels_first(inp: dict | None, channels: int) -> bool:
    shape = (inp or {}).get("shape") or []
    return len(shape) == 4 and shape[1] == channels and shape[3] != channels


def snippet(fmt_name: str, target: str, model_file: str, spec: dict, inp: dict | None, threads: int = 2,
            int8: bool = False) -> dict:
    """{"runtime", "install", "code"} for an artifact of format `fmt_name` (None for a format without one).
    `int8`: the artifact is an INT8 model (a QDQ ONNX model's input is float: its tensor alone does not say)."""
    head = ["import numpy as np", "from PIL import Image"]
    body = [f"MODEL, IMAGE = {model_file!r}, 'image.jpg'", "labels = open('labels.txt').read().splitlines()", "",
            *preprocess_lines(spec)]
    channels = int(spec.get("channels", 3))
    if fmt_name == "tflite":
        edgetpu = model_file.endswith("_edgetpu.tflite")
        head.append("from ai_edge_litert.interpreter import Interpreter" + (", load_delegate" if edgetpu else ""))
        make = ("Interpreter(model_path=MODEL, experimental_delegates=[load_delegate('libedgetpu.so.1')])" if edgetpu
                else f"Interpreter(model_path=MODEL, num_threads={int(threads)})")
        q = ""
        if inp and inp.get("scale") is not None:
            q = (f"  # this model: {inp.get('dtype')}, scale {fmt(inp['scale'], '.8g')}, "
                 f"zero point {inp.get('zero_point')}")
        body += ["", f"interpreter = {make}", "interpreter.allocate_tensors()",
                 "inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]",
                 "if inp['dtype'] != np.float32:  # integer input: quantize with the tensor's own parameters",
                 f"    scale, zero = inp['quantization']{q}",
                 "    info = np.iinfo(inp['dtype'])",
                 "    x = np.clip(np.round(x / scale + zero), info.min, info.max)",
                 "interpreter.set_tensor(inp['index'], x[None].astype(inp['dtype']))",
                 "interpreter.invoke()",
                 "y = interpreter.get_tensor(out['index'])[0].astype(np.float32)",
                 "if out['dtype'] != np.float32:",
                 "    scale, zero = out['quantization']",
                 "    y = (y - zero) * scale"]
        runtime = "LiteRT (ai-edge-litert) with the Edge TPU delegate" if edgetpu else "LiteRT (ai-edge-litert)"
        install = "pip install ai-edge-litert numpy pillow" + (" (and libedgetpu1-std)" if edgetpu else "")
    elif fmt_name == "openvino-ir":
        device = "NPU" if "npu" in target else "CPU"
        head.append("import openvino as ov")
        # the CPU plugin's default float precision is bf16 on CPUs with bf16 (AVX-512 BF16, AMX): the float parts
        # would then differ from the f32 that edgepipe validated and timed
        config = ", {'INFERENCE_PRECISION_HINT': 'f32'}" if device == "CPU" else ""
        body += ["", f"compiled = ov.Core().compile_model(MODEL, {device!r}{config})"
                     + ("  # f32 as validated; the default is bf16 on CPUs with bf16" if config else ""),
                 *(["x = x.transpose(2, 0, 1)  # this IR takes NCHW"] if _channels_first(inp, channels) else []),
                 "y = compiled(x[None])[compiled.output(0)][0]"]
        runtime, install = "OpenVINO", "pip install openvino numpy pillow"
    elif fmt_name == "onnx":
        head.append("import onnxruntime as ort")
        body += ["", "opts = ort.SessionOptions()"]
        if int8:  # exact int8 products, as edgepipe's runner computes them (formats/onnx.py exact_int8_config)
            body += ["try:", "    cpu = open('/proc/cpuinfo').read()", "except OSError:  # not Linux", "    cpu = ''",
                     "if 'avx2' in cpu and 'vnni' not in cpu:  # x86 without VNNI: ONNX Runtime's exact int8 kernels",
                     "    opts.add_session_config_entry('session.x64quantprecision', '1')"]
        body += ["session = ort.InferenceSession(MODEL, opts, providers=['CPUExecutionProvider'])",
                 *(["x = x.transpose(2, 0, 1)  # this model takes NCHW"] if _channels_first(inp, channels) else []),
                 "y = session.run(None, {session.get_inputs()[0].name: x[None]})[0][0]"]
        runtime, install = "ONNX Runtime", "pip install onnxruntime numpy pillow"
    else:
        return {}
    body.append("print(labels[int(np.argmax(y))], float(np.max(y)))")
    return {"runtime": runtime, "install": install, "code": "\n".join(head + [""] + body) + "\n"}
