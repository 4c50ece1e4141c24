"""Run the elpv-xception example cold and warm; print the results table and stage times.

    python benchmarks/bench_elpv.py [--output DIR] [--keep]

Cold = an empty output directory (the example model itself stays in its own cache,
~/.cache/edgepipe; delete that to time its build too). Warm = the same command again.
Numbers are medians over each artifact's timed runs, measured in one process per run on
this machine; compare ratios, not absolute values, across machines.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(out: Path) -> tuple[float, int, dict]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli.app", "run", "--output", str(out)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    report_path = out / "report.json"
    if not report_path.exists():
        sys.exit(f"edgepipe run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, proc.returncode, json.loads(report_path.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--output", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the output directory")
    args = ap.parse_args()
    out = args.output or Path(tempfile.mkdtemp(prefix="edgepipe-bench-")) / "out"
    if out.exists():
        shutil.rmtree(out)
    cold, code, report = run(out)
    warm, code2, report2 = run(out)

    print(f"\nelpv-xception on {report['environment']['cpu']} ({report['environment']['cores']} cores), "
          f"threads={report['threads']}, validation images={report['data']['validation']['count']}\n")
    hdr = f"{'artifact':26} {'status':9} {'MB':>6} {'top-1':>7} {'Δ pts':>7} {'agree':>6} {'p50 ms':>7} {'p90 ms':>7}"
    print(hdr)
    print("-" * len(hdr))
    for r in report["artifacts"]:
        a, lat = r.get("accuracy") or {}, r.get("latency") or {}
        drop = f"{a['drop_points']:+.2f}" if "drop_points" in a else "—"
        agree = f"{a['agreement']:.3f}" if "agreement" in a else "—"
        print(f"{r['artifact']:26} {r['status']:9} {r.get('size_mb', 0):6.1f} {a.get('top1', float('nan')):7.4f} "
              f"{drop:>7} {agree:>6} {lat.get('p50_ms', float('nan')):7.1f} "
              f"{lat.get('p90_ms', float('nan')):7.1f}")
    print("\nstage wall times (cold run)")
    for s in report["stages"]:
        took = "cached" if s["cached"] else f"{s['seconds']:8.1f} s"
        print(f"  {s['stage']:32} {took}")
    n_cached = sum(s["cached"] for s in report2["stages"])
    print(f"\ncold run: {cold:7.1f} s (exit {code})   warm run: {warm:6.1f} s (exit {code2}, "
          f"{n_cached}/{len(report2['stages'])} stages cached)   ratio {cold / warm:.1f}x")
    if not args.keep and args.output is None:
        shutil.rmtree(out.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
