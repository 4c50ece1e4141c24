"""Do elpv-xception's INT8 recipes carry over to a model they were never chosen on? The built-in
`kitchenware-xception` example (ImageNet Xception backbone, 150x150, 6 classes) quantized twice, each
INT8 target once with its toolchain's `default` recipe and once with the recipe the elpv example uses
for it (chosen on elpv's control split; read from the example's own config, not copied here):
agreement with FP32 top-1, output SNR, mean KL, top-1, p50, per artifact.

    python benchmarks/bench_transfer.py [--output DIR] [--targets tflite-arm,openvino-cpu,onnx-cpu]

Each recipe set is one `edgepipe run` (its own output directory under DIR, so both keep their stages:
a rerun is cheap). Kitchenware validates on its 18 packaged images (9 labeled for top-1; fidelity needs no
labels): one image is 5.6 agreement points, so read the SNR and KL columns, which use every class score.
Latency comes from each run's own latency stage (50 runs after 5 warmup), not side by side: compare p50
within a target only roughly.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGETS = ("tflite-arm", "openvino-cpu", "onnx-cpu")


def example_config(name: str) -> tuple[Path, dict]:
    from edgepipe.config.schema import example_config_path

    path = example_config_path(name)
    return path, yaml.safe_load(path.read_text())


def elpv_recipes() -> dict[str, str]:
    """target -> the recipe the elpv example uses for it."""
    _, raw = example_config("elpv-xception")
    return {t["name"]: (t.get("options") or {}).get("recipe", "default") for t in raw["targets"]}


def run(out: Path, recipes: dict[str, str], targets: list[str]) -> dict:
    path, raw = example_config("kitchenware-xception")
    raw["model"] = {"example": "kitchenware-xception"}
    raw["targets"] = [{"name": t, "options": {"precisions": ["int8"], "recipe": recipes.get(t, "default")}}
                      for t in targets]
    out.mkdir(parents=True, exist_ok=True)
    cfg = out / "pipeline.yaml"
    cfg.write_text(yaml.safe_dump(raw, sort_keys=False))
    proc = subprocess.run([sys.executable, "-m", "edgepipe.cli.app", "run", str(cfg), "--output", str(out / "run")],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if proc.returncode not in (0, 1):
        sys.exit(f"edgepipe run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads((out / "run" / "report.json").read_text())


def recipe_label(name: str, target: str) -> str:
    """`faithful (eq-sep-u8s8)` for a per-target recipe, else the name."""
    from edgepipe.quantize.recipes import PER_TARGET, per_target

    return f"{name} ({per_target(name, target)})" if name in PER_TARGET else name


def rows(report: dict, label: str, recipes: dict[str, str]) -> list[dict]:
    out = []
    for a in report["artifacts"]:
        f = a.get("fidelity")
        if not f:
            continue
        name = recipe_label(recipes.get(a["target"], "default"), a["target"])
        out.append({"artifact": a["artifact"], "recipe": f"{label}: {name}",
                    "agreement": f["agreement"], "flips": f["flipped"], "n": f["n_images"],
                    "snr_db": f["output_snr_db"], "kl_mean": f["kl_mean"],
                    "top1": (a.get("accuracy") or {}).get("top1"),
                    "p50_ms": (a.get("latency") or {}).get("p50_ms")})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--output", type=Path, default=Path("edgepipe-bench-transfer"))
    ap.add_argument("--targets", default=",".join(TARGETS))
    args = ap.parse_args()
    targets = [t for t in args.targets.split(",") if t]
    chosen = elpv_recipes()
    table = rows(run(args.output / "default", {}, targets), "default", {}) + \
        rows(run(args.output / "elpv", chosen, targets), "elpv's", chosen)
    from edgepipe.core.versions import cpu_model

    print(f"kitchenware-xception, {cpu_model()}, load average {os.getloadavg()[0]:.1f}")
    print("| artifact | recipe | agreement | flips | SNR dB | KL mean | top-1 | p50 ms |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in sorted(table, key=lambda r: (r["artifact"], r["recipe"])):
        p50 = f"{r['p50_ms']:.1f}" if r["p50_ms"] is not None else "—"
        top1 = f"{r['top1']:.3f}" if r["top1"] is not None else "—"
        print(f"| {r['artifact']} | {r['recipe']} | {r['agreement']:.3f} | {r['flips']}/{r['n']} | "
              f"{r['snr_db']:.1f} | {r['kl_mean']:.4f} | {top1} | {p50} |")
    (args.output / "bench_transfer.json").write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
