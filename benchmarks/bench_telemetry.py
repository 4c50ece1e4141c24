"""What the toolkits' usage reporting costs a process that holds TensorFlow (pipeline/core/telemetry.py).

    PYTHONPATH=. python benchmarks/bench_telemetry.py [--rounds 3] [--calls 4]

Exports the tiny Xception test fixture (untrained: conversion time does not depend on the weights) to a
SavedModel, then starts one fresh child per setting and round, in rotated order: each imports TensorFlow
(as every edgepipe run does before it converts), then edgepipe (which turns the telemetry off unless
EDGEPIPE_TOOLKIT_TELEMETRY=1), then OpenVINO, and times `ov.convert_model` --calls times. Prints the
median wall time of one conversion and of `import openvino`, the process's own CPU seconds, and the CPU
seconds of the processes OpenVINO forked to send its events (collected after they ended), with the
CPU model and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SETTINGS = {"off (edgepipe default)": {}, "on (EDGEPIPE_TOOLKIT_TELEMETRY=1)": {"EDGEPIPE_TOOLKIT_TELEMETRY": "1"}}


def child(saved_model: str, calls: int) -> dict:
    import multiprocessing
    import resource

    import tensorflow  # noqa: F401  (a run's process holds TensorFlow before it converts)

    import edgepipe  # noqa: F401  (turns the toolkits' telemetry off unless asked not to)

    t = time.perf_counter()
    import openvino as ov

    imported = time.perf_counter() - t
    walls, cpu0 = [], time.process_time()
    for _ in range(calls):
        t = time.perf_counter()
        ov.convert_model(saved_model)
        walls.append(time.perf_counter() - t)
    cpu = time.process_time() - cpu0
    for p in multiprocessing.active_children():  # the event senders still running
        p.join(30)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"import_s": imported, "convert_s": walls, "cpu_s": cpu, "children_cpu_s": kids.ru_utime + kids.ru_stime}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--calls", type=int, default=4)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]))))
        return

    from edgepipe.core.versions import cpu_model
    from edgepipe.stages.savedmodel import export_savedmodel
    from tests.fixtures import tiny_xception

    work = Path(tempfile.mkdtemp(prefix="bench-telemetry-"))
    sm = export_savedmodel(tiny_xception.build(input_size=71), work, (71, 71, 3))
    names = list(SETTINGS)
    got: dict[str, list[dict]] = {n: [] for n in names}
    base = {k: v for k, v in os.environ.items() if k != "EDGEPIPE_TOOLKIT_TELEMETRY"}
    base.update(TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    for r in range(args.rounds):
        for name in names[r % 2:] + names[: r % 2]:  # rotate the order
            out = subprocess.run([sys.executable, __file__, "--child", str(sm), str(args.calls)], check=True,
                                 capture_output=True, text=True, env={**base, **SETTINGS[name]}).stdout
            got[name].append(json.loads(out.strip().splitlines()[-1]))
    print(f"ov.convert_model of the tiny Xception SavedModel, {args.rounds} rounds x {args.calls} calls, "
          f"CPU: {cpu_model()}, load average {os.getloadavg()[0]:.2f}")
    print(f"{'telemetry':36s} {'convert p50 s':>13s} {'import s':>9s} {'own CPU s':>10s} {'forked CPU s':>13s}")
    for name in names:
        rows = got[name]
        print(f"{name:36s} {statistics.median(w for r in rows for w in r['convert_s']):13.2f} "
              f"{statistics.median(r['import_s'] for r in rows):9.2f} "
              f"{statistics.median(r['cpu_s'] for r in rows):10.2f} "
              f"{statistics.median(r['children_cpu_s'] for r in rows):13.2f}")
    off, on = (statistics.median(w for r in got[n] for w in r["convert_s"]) for n in names)
    print(f"ratio on/off (convert p50): {on / off:.1f}x")


if __name__ == "__main__":
    main()
