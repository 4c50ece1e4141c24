"""Accuracy vs calibration size: every INT8 artifact of elpv-xception quantized from 10 / 30 / 100 / 300 images.

    python benchmarks/bench_calib_size.py [--output DIR] [--reuse STAGES_DIR] [--sizes 10 30 100 300]

For each size, one `edgepipe run` of the built-in example with a recipe `calib-N`
(`calibration_size: N`, everything else the toolchain default) selected for every target;
the full configured calibration split (300 images) is the `default` recipe itself. All runs share
one output directory, so the FP32 conversions, the reference and each size's stages are built
once (`--reuse` copies an existing run's `stages/` in first). Prints top-1, Δ vs FP32 (points),
agreement with FP32 and the quantization stage's wall time per artifact and size.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
QUANT_STAGE = {"tflite-arm/int8": "tflite-int8", "openvino-cpu/int8": "nncf-int8", "onnx-cpu/int8": "onnx-qdq-int8"}


def config_for(size: int, full: int, out: Path, only: list[str] | None = None) -> dict:
    cfg = yaml.safe_load((ROOT / "pipeline" / "examples" / "elpv-xception.yaml").read_text())
    if only:
        cfg["targets"] = [t for t in cfg["targets"] if t["name"] in only]
    recipe = "default" if size >= full else f"calib-{size}"
    if recipe != "default":
        cfg["quantization"] = {"recipes": {recipe: {"calibration_size": size,
                                                    "description": f"{size} calibration images"}}}
    cfg["targets"] = [{"name": t["name"], "options": {"recipe": recipe, "precisions": ["int8"]}}
                      for t in cfg["targets"]]
    cfg["output"] = str(out)
    cfg["diagnostics"] = {"per_layer_images": 0}  # accuracy only: no per-layer report per size
    return cfg


def run(cfg: dict, workdir: Path) -> dict:
    path = workdir / f"calib-{abs(hash(json.dumps(cfg, sort_keys=True)))}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "-m", "edgepipe.cli.app", "run", str(path)], cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    report = Path(cfg["output"]) / "report.json"
    if proc.returncode not in (0, 1) or not report.exists():
        sys.exit(f"edgepipe run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(report.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", type=Path, default=None)
    ap.add_argument("--reuse", type=Path, default=None, help="a previous run's stages/ directory to start from")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 30, 100, 300])
    ap.add_argument("--targets", nargs="+", default=None, help="only these targets (default: the example's)")
    args = ap.parse_args()
    out = args.output or Path(tempfile.mkdtemp(prefix="edgepipe-calib-")) / "out"
    if args.reuse and not (out / "stages").exists():
        shutil.copytree(args.reuse, out / "stages")
    work = Path(tempfile.mkdtemp(prefix="edgepipe-calib-cfg-"))
    full = yaml.safe_load((ROOT / "pipeline" / "examples" / "elpv-xception.yaml").read_text())["data"]["splits"][
        "calibration"]
    results = {}
    for size in args.sizes:
        report = run(config_for(size, full, out, args.targets), work)
        stage_s = {s["stage"]: s["seconds"] for s in report["stages"]}
        results[size] = (report, stage_s)
        done = ", ".join(f"{r['artifact']} {r['accuracy']['top1']:.4f}" for r in report["artifacts"]
                         if r.get("precision") == "int8" and "accuracy" in r)
        print(f"size {size}: {done}", file=sys.stderr, flush=True)

    ref = next(iter(results.values()))[0]
    print(f"\nelpv-xception INT8 top-1 vs calibration size ({ref['data']['validation']['count']} test images, "
          f"{ref['environment']['cpu']}, threads={ref['threads']})\n")
    hdr = f"{'artifact':20} {'calib':>5} {'top-1':>7} {'Δ pts':>7} {'agree':>6} {'quantize s':>10}  calibration sha256"
    print(hdr)
    print("-" * len(hdr))
    for name, stage in QUANT_STAGE.items():
        for size, (report, stage_s) in results.items():
            row = next((r for r in report["artifacts"] if r["artifact"] == name), None)
            if row is None:
                continue
            if "accuracy" not in row:
                print(f"{name:20} {size:5d}   {row['status']}: {'; '.join(row.get('reasons', []))[:80]}")
                continue
            a = row["accuracy"]
            secs = next((v for k, v in stage_s.items() if k == stage), None)
            took = f"{secs:10.1f}" if secs else f"{'cached':>10}"
            delta = round(-a["drop_points"], 2) + 0.0  # no "-0.00"
            print(f"{name:20} {min(size, full):5d} {a['top1']:7.4f} {delta:+7.2f} {a['agreement']:6.3f} "
                  f"{took}  {row.get('calibration_sha256', '')[:12]}")
    ref_row = next(r for r in ref["artifacts"] if r["status"] == "reference")
    print(f"\nFP32 reference top-1: {ref_row['accuracy']['top1']:.4f}.  Δ pts = INT8 top-1 minus FP32 top-1.")


if __name__ == "__main__":
    main()
