"""Time one tiny sweep (2 recipes x 2 targets, INT8) on each executor, from a cold cache.

    PYTHONPATH=. python benchmarks/bench_sweep.py [--repeat 1] [--executors local,process,ray]

Builds the tiny Xception test fixture once (tests/tiny_xception.py) in --work, then runs the
same sweep with every executor into a fresh output directory (so nothing is cached) and
prints wall times (median over --repeat), ratios to local-sequential, the serial part (model
preparation: FP32 reference + SavedModel export) and the sum of the cells' stage times, and
checks that every executor produced the same artifacts (sha256).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PREP_STAGES = {"accuracy-reference", "latency-reference", "savedmodel"}


def tiny_assets(work: Path) -> dict:
    from tests.fixtures import tiny_xception

    model = work / "tiny_xception.keras"
    data = work / "data"
    if not model.is_file():
        images, labels = tiny_xception.synthetic_images(n_per_class=60, seed=0)
        tiny_xception.write_folder(data, images, labels)
        m = tiny_xception.build(input_size=71)
        tiny_xception.train(m, images, labels, epochs=8)
        m.save(model)
    return {"model": model, "data": data}


def sweep_raw(assets: dict, out: Path, threads: int) -> dict:
    from tests.fixtures.configs import tiny_config

    return {
        "base": tiny_config(assets, out / "unused", threads=threads),
        "output": str(out),
        "recipes": [
            {"name": "fast", "options": {"precisions": ["int8"]},
             "targets": {"openvino-cpu": {"recipe": "default"}, "tflite-arm": {"int8_io": True}}},
            {"name": "careful", "options": {"precisions": ["int8"]},
             "targets": {"openvino-cpu": {"recipe": "nncf-mixed"}, "tflite-arm": {"int8_io": False}}},
        ],
        "targets": ["openvino-cpu", "tflite-arm"],
    }


def run_once(kind: str, assets: dict, out: Path, threads: int) -> dict:
    from edgepipe.core.progress import stderr
    from edgepipe.executors.factory import make_executor
    from edgepipe.sweeps.config import parse_sweep
    from edgepipe.sweeps.runner import run_sweep

    shutil.rmtree(out, ignore_errors=True)
    sweep = parse_sweep(sweep_raw(assets, out, threads), base_dir=out.parent)
    t0 = time.perf_counter()
    executor = make_executor(kind)
    startup = time.perf_counter() - t0
    try:
        report = run_sweep(sweep, executor, console=stderr)
    finally:
        executor.close()
    wall = time.perf_counter() - t0
    stages = report["stages"]
    return {
        "executor": executor.name, "wall_s": wall, "startup_s": startup,
        "prep_stage_s": sum(s["seconds"] for s in stages if s["stage"] in PREP_STAGES and not s["cached"]),
        "cell_stage_s": sum(s["seconds"] for s in stages if s["stage"] not in PREP_STAGES and not s["cached"]),
        "failed_cells": report["failed_cells"],
        "hashes": {r["id"]: r.get("sha256") for r in report["rows"]},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgepipe-bench-sweep"))
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="inference threads per cell (= CPUs a cell asks for)")
    ap.add_argument("--executors", default="local,process,ray")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    assets = tiny_assets(args.work)
    results: dict[str, list[dict]] = {}
    for kind in args.executors.split(","):
        for i in range(args.repeat):
            res = run_once(kind, assets, args.work / f"out-{kind}-{i}", args.threads)
            results.setdefault(kind, []).append(res)
            print(json.dumps({k: v for k, v in res.items() if k != "hashes"}), flush=True)
    base = statistics.median(r["wall_s"] for r in results[next(iter(results))])
    ref_hashes = next(iter(results.values()))[0]["hashes"]
    print(f"\n{'executor':<12} {'median wall s':>14} {'ratio':>7} {'startup s':>10} {'prep stages s':>14} "
          f"{'cell stages s':>14}  same artifacts")
    for rs in results.values():
        med = statistics.median(r["wall_s"] for r in rs)
        same = all(r["hashes"] == ref_hashes for r in rs)
        startup, prep, cells = (statistics.median(r[k] for r in rs) for k in ("startup_s", "prep_stage_s",
                                                                               "cell_stage_s"))
        print(f"{rs[0]['executor']:<12} {med:>14.1f} {base / med:>6.2f}x {startup:>10.1f} {prep:>14.1f} "
              f"{cells:>14.1f}  {same}")


if __name__ == "__main__":
    main()
