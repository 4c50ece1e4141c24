"""Where elpv-xception's quantization error is born: local vs accumulated SNR per layer, by depth.

    python benchmarks/bench_error_birth.py [--output DIR] [--images N] [--toolchains tflite,openvino]

TFLite: one calibration on the run's calibration images (the artifact's), then every op quantized
alone (pipeline/diagnostics/local_tflite.py). OpenVINO: the NNCF INT8 IR of the same source, each
weighted op quantized alone, run with the CPU plugin's int8 kernels and with the IR's FakeQuantize
math (pipeline/diagnostics/local_openvino.py). Images: the first N of the control split (300 images
of elpv's train split). Each report is a cached stage; JSON in DIR/birth-<toolchain>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_fidelity import Bench  # noqa: E402

from edgepipe.core.versions import tool_versions  # noqa: E402


def tflite(bench: Bench, images: np.ndarray) -> dict:
    from edgepipe.diagnostics import error_birth
    from edgepipe.diagnostics.layer_errors import keras_layer_names

    ctx, b = bench.ctx, bench.build
    src = b.source(())
    key = {"source": src["key"], "calibration": b.calib.sha256, "images": bench.control.sha256, "n": len(images),
           "format": error_birth.FORMAT, **tool_versions("tensorflow", "ai-edge-litert")}

    def fn(out: Path) -> dict:
        rep = error_birth.tflite_report(src["savedmodel"], b.calib.images, images,
                                        keras_layer_names(ctx.model_path), ctx.cfg.threads)
        error_birth.write(rep, out / "birth.json")
        return {"rows": len(rep["rows"])}

    res = ctx.stage("fid-birth-tflite", key, fn)
    return json.loads((res.path / "birth.json").read_text())


def openvino(bench: Bench, images: np.ndarray, kernels: str) -> dict:
    from edgepipe.core.hashing import sha256_file
    from edgepipe.diagnostics import error_birth

    ctx, b = bench.ctx, bench.build
    ir, int8 = b.ir(()), b.quantized("nncf", (), {})
    key = {"ir": sha256_file(ir), "int8": sha256_file(int8), "images": bench.control.sha256, "n": len(images),
           "kernels": kernels, "format": error_birth.FORMAT, **tool_versions("openvino")}

    def fn(out: Path) -> dict:
        rep = error_birth.openvino_report(ir, int8, images, ctx.keras_model(), ctx.cfg.threads, kernels)
        error_birth.write(rep, out / "birth.json")
        return {"rows": len(rep["rows"])}

    res = ctx.stage(f"fid-birth-openvino-{kernels}", key, fn)
    return json.loads((res.path / "birth.json").read_text())


def summary(rep: dict) -> str:
    lines = [f"{rep['toolchain']} {rep.get('kernels', '')}: {rep['measured_layers']} layers, half the local noise "
             f"in {rep['layers_with_half_the_noise']}, 90% in {rep['layers_with_90pct_of_the_noise']}",
             "  born (lowest local SNR): " + ", ".join(
                 f"{r['layer']} {r['op']} {r['local_snr_db']:.1f} dB ({100 * r['local_noise_share']:.0f}%)"
                 for r in rep["born"])]
    for r in rep["rows"]:
        if r.get("local_snr_db") is None:
            continue
        acc = r.get("accumulated_snr_db")
        lines.append(f"  {r['position']:4d} {r['op'][:17]:17s} {r['layer'][:28]:28s} local {r['local_snr_db']:6.1f}"
                     f"  accumulated {acc if acc is None else round(acc, 1)}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", type=Path, default=Path("edgepipe-bench-fidelity"))
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--toolchains", default="tflite,openvino")
    args = ap.parse_args()
    bench = Bench(args.output)
    images = bench.control.images[: args.images]
    reports = []
    for tool in args.toolchains.split(","):
        if tool == "tflite":
            reports.append(tflite(bench, images))
        elif tool == "openvino":
            reports += [openvino(bench, images, "fq-math"), openvino(bench, images, "int8")]
    for rep in reports:
        name = f"birth-{rep['toolchain']}{'-' + rep['kernels'] if 'kernels' in rep else ''}.json"
        (args.output / name).write_text(json.dumps(rep, indent=1))
        print(summary(rep))
    if len(reports) == 3:
        from edgepipe.diagnostics.error_birth import kernel_error

        loss = kernel_error(reports[2], reports[1])
        print("openvino: local SNR lost to this CPU's int8 kernels (worst first):")
        for r in loss[:15]:
            print(f"  {r['layer']:28s} {r['op']:17s} fq-math {r['local_snr_db_fq_math']:6.1f}  int8 "
                  f"{r['local_snr_db_int8']:6.1f}  lost {r['kernel_loss_db']:5.1f} dB")


if __name__ == "__main__":
    main()
