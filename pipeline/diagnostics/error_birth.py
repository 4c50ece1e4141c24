"""Where the quantization error is born: per layer, ordered by network depth, the *local* error (that
layer quantized alone, fed FP32 inputs) beside the *accumulated* error (everything quantized), for
TFLite (local_tflite.py) and OpenVINO (local_openvino.py), mapped to Keras layer names.

A layer whose local SNR is low is where error is born; a layer whose accumulated SNR is low but local
SNR high only inherits it. `born` lists the layers with the lowest local SNR, and each row carries its
share of the summed local noise (10^(-local/10), normalised): spread evenly over the depth it means
no handful of layers to keep in higher precision; concentrated, it names them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

FORMAT = 1
N_IMAGES = 8
TOP = 5


def annotate(rows: list[dict], layer_of) -> list[dict]:
    """Adds `layer` (the Keras layer, via `layer_of(row)`) and `local_noise_share` to every row."""
    noise = np.array([10 ** (-r["local_snr_db"] / 10) if r.get("local_snr_db") is not None else 0.0 for r in rows])
    total = noise.sum() or 1.0
    for r, n in zip(rows, noise, strict=True):
        r["layer"] = layer_of(r)
        r["local_noise_share"] = float(n / total)
    return rows


def born(rows: list[dict], top: int = TOP) -> list[dict]:
    """The `top` layers with the lowest local SNR (where most error is born), worst first."""
    measured = [r for r in rows if r.get("local_snr_db") is not None]
    keys = ("layer", "op", "position", "local_snr_db", "accumulated_snr_db", "local_noise_share")
    return [{k: r.get(k) for k in keys} for r in sorted(measured, key=lambda r: r["local_snr_db"])[:top]]


def concentration(rows: list[dict]) -> dict:
    """How many layers (worst first) hold half and 90% of the summed local noise."""
    shares = sorted((r["local_noise_share"] for r in rows), reverse=True)
    cum = np.cumsum(shares) if shares else np.array([0.0])
    return {"layers_with_half_the_noise": int(np.searchsorted(cum, 0.5) + 1) if shares else 0,
            "layers_with_90pct_of_the_noise": int(np.searchsorted(cum, 0.9) + 1) if shares else 0,
            "measured_layers": len(shares)}


def tflite_report(saved_model: Path, calib: np.ndarray, images: np.ndarray, known: set[str],
                  threads: int = 1, per_tensor: bool = False, progress=None) -> dict:
    from edgepipe.diagnostics import local_tflite
    from edgepipe.diagnostics.layer_errors import keras_layers

    calibrated = local_tflite.calibrate(saved_model, calib, per_tensor)
    rows = local_tflite.local_and_accumulated(calibrated, images, threads=threads, per_tensor=per_tensor,
                                              progress=progress)

    def layer_of(r):
        names = keras_layers(r["weights"], known) or keras_layers(r["tensor"], known)
        return names[0] if names else r["tensor"]

    rows = annotate(rows, layer_of)
    return {"toolchain": "tflite", "images": len(images), "rows": rows, "born": born(rows),
            **concentration(rows)}


def openvino_report(fp32_ir: Path, int8_ir: Path, images: np.ndarray, keras_model=None, threads: int = 1,
                    kernels: str = "int8", progress=None) -> dict:
    """`kernels`: "int8" (the CPU plugin's integer kernels, as the artifact runs on this CPU) or
    "fq-math" (the IR's FakeQuantize computed in float: the quantization itself, CPU-independent)."""
    import openvino as ov

    from edgepipe.diagnostics import local_openvino
    from edgepipe.diagnostics.layer_errors import openvino_layer_names

    rows = local_openvino.local_and_accumulated(fp32_ir, int8_ir, images, threads, kernels, progress)
    names = openvino_layer_names(ov.Core().read_model(str(fp32_ir)), keras_model)
    rows = annotate(rows, lambda r: names.get(r["tensor"], r["tensor"]))
    return {"toolchain": "openvino", "kernels": kernels, "images": len(images), "rows": rows, "born": born(rows),
            **concentration(rows)}


def kernel_error(int8_report: dict, math_report: dict) -> list[dict]:
    """Per layer, the local SNR lost between the IR's quantization math and this CPU's int8 kernels
    (positive dB = error the kernels add, e.g. int16 saturation on CPUs without VNNI), worst first."""
    math = {r["position"]: r for r in math_report["rows"]}
    out = []
    for r in int8_report["rows"]:
        m = math.get(r["position"])
        if m and r["local_snr_db"] is not None and m["local_snr_db"] is not None:
            out.append({"layer": r["layer"], "op": r["op"], "position": r["position"],
                        "local_snr_db_int8": r["local_snr_db"], "local_snr_db_fq_math": m["local_snr_db"],
                        "kernel_loss_db": m["local_snr_db"] - r["local_snr_db"]})
    return sorted(out, key=lambda r: -r["kernel_loss_db"])


def write(report: dict, path: Path) -> Path:
    path.write_text(json.dumps(report, indent=1))
    return path
