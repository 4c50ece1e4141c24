"""An accuracy pass on the throughput path against the same pass image by image, side by side in one process.

    python benchmarks/bench_throughput.py --output RUN_DIR [--images 200] [--rounds 3] [--threads 2]

RUN_DIR is an `edgepipe run` output of the built-in example. Each host artifact there (TFLite, OpenVINO IR,
ONNX) is opened as `edgepipe validate` opens a model it did not build (`formats.runners.open_runner`: for
OpenVINO the IR, not the run's blob), once, in this process. Each round scores the first N real preprocessed
test images with every runner twice: image by image (`formats.throughput.one_by_one`, the batch-1 path) and
with `validators.accuracy.predict_all` (the runtime's throughput path: one single-threaded interpreter or
session per thread, OpenVINO asynchronous requests on a THROUGHPUT compile). The order of the (runner, path)
pairs is rotated by one each round, as ../shared/BENCHMARKING.md asks. The table shows per runner the median
seconds per image of each path, the ratio, the spread between rounds, and the largest score difference
between the two paths (they must agree: tests/test_throughput.py). The CPU and the load average before and
after are printed; a load above the core count is flagged.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ARTIFACTS = [("tflite-arm-fp32", "tflite", "*.tflite"), ("tflite-arm-int8", "tflite", "*.tflite"),
             ("openvino-cpu-fp32", "openvino-ir", "*.xml"), ("openvino-cpu-int8", "openvino-ir", "*.xml"),
             ("onnx-cpu-fp32", "onnx", "*.onnx"), ("onnx-cpu-int8", "onnx", "*.onnx")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", type=Path, required=True, help="an edgepipe run output of the example")
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    from edgepipe.config.schema import example_config_path, load_config
    from edgepipe.core.versions import cpu_model
    from edgepipe.engine.context import RunContext
    from edgepipe.examples.models import resolve_model
    from edgepipe.formats.runners import open_runner
    from edgepipe.formats.throughput import one_by_one
    from edgepipe.validators.accuracy import predict_all

    cfg = load_config(example_config_path("elpv-xception"))
    images = RunContext(cfg, resolve_model(cfg), cache_root=args.output / "stages").validation.images[:args.images]
    runners = {}
    for folder, fmt, pattern in ARTIFACTS:
        found = sorted((args.output / "artifacts" / folder).glob(pattern))
        if found:
            runners[folder] = open_runner(fmt, found[0], args.threads)
    if not runners:
        sys.exit(f"{args.output}/artifacts: expected the example's host artifacts. Received: none")
    paths = {"batch-1": one_by_one, "throughput": predict_all}
    pairs = [(name, path) for name in runners for path in paths]
    seconds: dict = {pair: [] for pair in pairs}
    scores: dict = {}
    load0 = os.getloadavg()[0]
    for r in range(args.rounds):
        for name, path in pairs[r % len(pairs):] + pairs[:r % len(pairs)]:
            t0 = time.perf_counter()
            scores[name, path] = np.asarray(paths[path](runners[name], images), np.float32)
            seconds[name, path].append((time.perf_counter() - t0) / len(images))
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    load1 = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    print(f"\n{cpu_model()}, {cores} cores, threads={args.threads}, {len(images)} test images, {args.rounds} rounds; "
          f"load average {load0:.1f} -> {load1:.1f}" + ("   ** loaded machine: not evidence **"
                                                        if max(load0, load1) > cores else ""))
    print(f"{'artifact':20s} {'batch-1 ms/img':>15s} {'throughput ms/img':>18s} {'ratio':>6s} "
          f"{'spread b1/thr ms':>17s} {'max |diff|':>10s}")
    for name in runners:
        b1, thr = seconds[name, "batch-1"], seconds[name, "throughput"]
        diff = float(np.abs(scores[name, "batch-1"] - scores[name, "throughput"]).max())
        print(f"{name:20s} {1e3 * statistics.median(b1):15.1f} {1e3 * statistics.median(thr):18.1f} "
              f"{statistics.median(b1) / statistics.median(thr):6.2f} "
              f"{1e3 * (max(b1) - min(b1)):8.1f}/{1e3 * (max(thr) - min(thr)):<8.1f} {diff:10.2e}")


if __name__ == "__main__":
    main()
