"""The example's OpenVINO INT8 IRs on this CPU, and on this CPU with oneDNN's ISA capped below VNNI.

    python benchmarks/bench_isa_cap.py --output RUN_DIR [--cap AVX512_CORE] [--threads 2]

A CPU without VNNI or AMX sums pairs of int8 products in int16 and saturates on 8-bit weights. Capping oneDNN
(`ONEDNN_MAX_CPU_ISA`, which OpenVINO's CPU plugin honours) makes a VNNI CPU run those kernels, so one machine
shows what the example's IRs score on such a CPU: `AVX512_CORE` is an AVX-512 CPU without VNNI (Skylake-SP).
(`AVX2` on an AVX-512 CPU is not a faithful AVX2 CPU: OpenVINO 2026.4's own kernels ignore the cap, and the
emulated IR does not compile; targets/README.md.)

RUN_DIR is an `edgepipe run` output of the built-in example: its artifacts, its cached Keras FP32 scores on the
test split (`accuracy-reference`) and, when `bench_latency.py` made it, RUN_DIR/bench_latency/nncf (NNCF's
defaults by hand). Rows, each scored on the test split with `OpenVINORunner` (f32 float remainder, as edgepipe
validates) in one subprocess per setting (oneDNN reads the cap once, at its first use):
- openvino-cpu/int8 as edgepipe built it (the example's `faithful` recipe);
- NNCF's defaults by hand;
- openvino-npu/int8's IR on the CPU plugin's int8 kernels, and emulated (FakeQuantize in f32, one stream) as the
  NPU stand-in scores it where the kernels saturate.
The table: agreement with the FP32 top-1, output SNR, top-1, seconds, per setting. Results go to
RUN_DIR/bench_isa_cap.json. It scores the test split: a check of choices made on the control split, never a way
to make them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CAP_VARS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")


def rows(run_dir: Path) -> list[tuple[str, Path, bool]]:
    """(row name, IR, emulated) for the IRs this run directory has."""
    art = run_dir / "artifacts"
    out = []
    for name, folder, emulated in [("openvino-cpu/int8 (edgepipe)", art / "openvino-cpu-int8", False),
                                   ("openvino by hand (nncf.quantize defaults)", run_dir / "bench_latency" / "nncf",
                                    False),
                                   ("openvino-npu/int8 IR, int8 kernels", art / "openvino-npu-int8", False),
                                   ("openvino-npu/int8 IR, emulated (the stand-in)", art / "openvino-npu-int8", True)]:
        xml = sorted(folder.glob("*.xml")) if folder.is_dir() else []
        if xml:
            out.append((name, xml[0], emulated))
    return out


def worker(data: Path, run_dir: Path, threads: int) -> None:
    """In a subprocess under (or without) the cap: every row's fidelity, one JSON line each."""
    from edgepipe.core.versions import int8_saturates, onednn_isa_cap
    from edgepipe.formats.openvino_ir import OpenVINORunner
    from edgepipe.validators.fidelity import fidelity_metrics

    images, labels, ref = (np.load(data / f"{n}.npy") for n in ("images", "labels", "reference"))
    print(json.dumps({"setting": {"cap": onednn_isa_cap(), "int8_saturates": int8_saturates()}}), flush=True)
    for name, xml, emulated in rows(run_dir):
        t = time.perf_counter()
        try:
            scores = OpenVINORunner(xml, threads, emulate_int8=emulated).predict_many(images)
        except RuntimeError as err:  # e.g. the emulated IR under AVX2 on an AVX-512 CPU (see the docstring)
            print(json.dumps({"row": name, "error": str(err).strip().splitlines()[-1][:200]}), flush=True)
            continue
        m = fidelity_metrics(ref, scores)
        print(json.dumps({"row": name, "agreement": m["agreement"], "output_snr_db": m["output_snr_db"],
                          "top1": float((scores.argmax(1) == labels).mean()),
                          "seconds": round(time.perf_counter() - t, 1)}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", type=Path, required=True, help="an edgepipe run output of the example")
    ap.add_argument("--cap", default="AVX512_CORE", help="oneDNN's ISA cap for the capped setting")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker, args.output, args.threads)
    if any(os.environ.get(v) for v in CAP_VARS):
        sys.exit(f"expected no oneDNN ISA cap in this shell (the uncapped setting is the reference). Received: "
                 f"{', '.join(f'{v}={os.environ[v]}' for v in CAP_VARS if os.environ.get(v))}")
    if not rows(args.output):
        sys.exit(f"--output: expected an edgepipe run of the example with OpenVINO INT8 artifacts. Received: "
                 f"{args.output} has none under artifacts/")

    from edgepipe.config.schema import example_config_path, load_config
    from edgepipe.core.versions import host_facts
    from edgepipe.engine.context import RunContext
    from edgepipe.engine.reference import reference
    from edgepipe.examples.models import resolve_model

    cfg = load_config(example_config_path("elpv-xception"))
    ctx = RunContext(cfg, resolve_model(cfg), cache_root=args.output / "stages")
    ref = reference(ctx)["scores"]  # the run's cached Keras FP32 scores on the test split
    env = {k: v for k, v in os.environ.items() if k not in CAP_VARS}
    results, load = {}, [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="bench-isa-cap-") as tmp:
        for name, arr in (("images", ctx.validation.images), ("labels", ctx.validation.labels), ("reference", ref)):
            np.save(Path(tmp) / f"{name}.npy", arr)
        for cap in (None, args.cap):
            cmd = [sys.executable, __file__, "--output", str(args.output), "--threads", str(args.threads),
                   "--worker", tmp]
            print(f"scoring {len(ref)} test images {'under ' + cap if cap else 'without a cap'} ...", flush=True)
            proc = subprocess.run(cmd, env={**env, **({"ONEDNN_MAX_CPU_ISA": cap} if cap else {})},
                                  capture_output=True, text=True, cwd=ROOT)
            lines = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if proc.returncode != 0 or not lines:
                sys.exit(f"the {'capped' if cap else 'uncapped'} setting failed (exit {proc.returncode}): "
                         f"{proc.stderr.strip()[-1500:]}")
            results[cap or "none"] = {"setting": lines[0]["setting"], "rows": lines[1:]}
            load.append(os.getloadavg()[0])

    host = host_facts()  # this process has no cap: the CPU's own flags
    flags = host["isa_flags"]
    print(f"\n{host['cpu']} ({' '.join(flags)}), {args.threads} threads, {len(ref)} test images; load average "
          f"{' -> '.join(f'{v:.1f}' for v in load)}")
    print(f"| row | no cap: agreement, SNR, top-1 | ONEDNN_MAX_CPU_ISA={args.cap} |\n|---|---|---|")
    by_row = {cap: {r["row"]: r for r in res["rows"]} for cap, res in results.items()}

    def cell(r: dict | None) -> str:
        if r is None:
            return "-"
        if "error" in r:
            return f"error: {r['error']}"
        return f"{r['agreement']:.3f}, {r['output_snr_db']:.1f} dB, {r['top1']:.4f} ({r['seconds']:.0f} s)"

    for name, _, _ in rows(args.output):
        print(f"| {name} | {cell(by_row['none'].get(name))} | {cell(by_row[args.cap].get(name))} |")
    saturates = {cap: res["setting"]["int8_saturates"] for cap, res in results.items()}
    print(f"int8 kernels saturate (edgepipe.core.versions.int8_saturates): no cap {saturates['none']}, "
          f"{args.cap} {saturates[args.cap]}")
    out = {"cpu": host["cpu"], "isa_flags": flags, "threads": args.threads, "images": len(ref), "cap": args.cap,
           "loadavg": load, "time": time.strftime("%Y-%m-%d %H:%M"), "results": results}
    (args.output / "bench_isa_cap.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
