"""Run the elpv-xception example cold and warm; print the results table, where the time went, and cold vs warm.

    python benchmarks/bench_elpv.py [--output DIR] [--keep] [--example-cache DIR]

Cold = an empty output directory (the example model itself stays in its own cache,
~/.cache/edgepipe; `--example-cache EMPTY_DIR` builds it into that directory instead, so its
build is timed too, and held against its own compute floor). Warm = the same command again.
Each run is one `edgepipe run` process; its wall and CPU seconds (user + system of the process
and its children) are measured here, and its time profile by stage kind (report.json `profile`:
each stage's own wall and CPU seconds, mapped to a kind by the table in
pipeline/reports/profile.py) is printed, and beside it the cold run's compute floor: its forward
passes at this CPU's peak MAC rate (compute_floor.py). The load average before and after each
run is printed too: on a shared machine read the CPU seconds and the shares, not the wall
seconds. Latency numbers are medians over each artifact's timed runs, measured in one process
per run on this machine; compare ratios, not absolute values, across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import compute_floor  # noqa: E402  (beside this script)

from edgepipe.core.cache import MARKER  # noqa: E402  (after the path: run from a checkout)
from edgepipe.reports.profile import lines  # noqa: E402
from edgepipe.reports.rows import roofline_basis, roofline_cell  # noqa: E402


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(out: Path, env: dict) -> dict:
    load0, cpu0, t0 = os.getloadavg()[0], _children_cpu(), time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "edgepipe.cli.app", "run", "--output", str(out)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    report_path = out / "report.json"
    if not report_path.exists():
        sys.exit(f"edgepipe run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return {"wall": wall, "cpu": cpu, "code": proc.returncode, "load": (load0, os.getloadavg()[0]),
            "report": json.loads(report_path.read_text())}


def print_results(report: dict) -> None:
    print(f"\nelpv-xception on {report['environment']['cpu']} ({report['environment']['cores']} cores), "
          f"threads={report['threads']}, validation images={report['data']['validation']['count']}\n")
    hdr = (f"{'artifact':26} {'status':9} {'MB':>6} {'top-1':>7} {'Δ pts':>7} {'agree':>6} {'p50 ms':>7} {'p90 ms':>7} "
           f"{'roofline':>12}")
    print(hdr)
    print("-" * len(hdr))
    for r in report["artifacts"]:
        a, lat = r.get("accuracy") or {}, r.get("latency") or {}
        drop = f"{a['drop_points']:+.2f}" if "drop_points" in a else "—"
        agree = f"{a['agreement']:.3f}" if "agreement" in a else "—"
        print(f"{r['artifact']:26} {r['status']:9} {r.get('size_mb', 0):6.1f} {a.get('top1', float('nan')):7.4f} "
              f"{drop:>7} {agree:>6} {lat.get('p50_ms', float('nan')):7.1f} "
              f"{lat.get('p90_ms', float('nan')):7.1f} {roofline_cell(lat) or '—':>12}")
    basis = roofline_basis([r.get("latency") for r in report["artifacts"]])
    if basis:
        print(basis)


def print_profile(label: str, res: dict) -> None:
    report, prof = res["report"], res["report"].get("profile")
    print(f"\n{label} run: {res['wall']:.1f} s wall, {res['cpu']:.1f} s cpu (process + children), exit {res['code']}, "
          f"load average {res['load'][0]:.1f} -> {res['load'][1]:.1f} on {os.cpu_count()} cores")
    outside = res["wall"] - report["wall_seconds"]
    print(f"  outside run_pipeline (interpreter start, imports, config, example model): {outside:.1f} s wall")
    if prof is None:
        print("  (no profile in report.json: an older edgepipe)")
        return
    for line in lines(prof):
        print(f"  {line}")


def print_stages(report: dict) -> None:
    print("\nstages of the cold run (own time: nested stages and loads counted where they are)")
    print(f"  {'stage':34} {'kind':10} {'wall s':>8} {'cpu s':>8}")
    prof = {s["stage"]: s for s in (report.get("profile") or {}).get("stages", [])}
    for s in report["stages"]:
        p = prof.get(s["stage"], {})
        if s["cached"]:
            print(f"  {s['stage']:34} {p.get('kind', ''):10} {'cached':>8}")
        else:
            print(f"  {s['stage']:34} {p.get('kind', ''):10} {p.get('self_wall_seconds', s['seconds']):8.1f} "
                  f"{p.get('self_cpu_seconds', float('nan')):8.1f}")
    for load in (report.get("profile") or {}).get("loads", []):
        print(f"  {'load: ' + load['what']:34} {'load':10} {load['self_wall_seconds']:8.1f} "
              f"{load['self_cpu_seconds']:8.1f}")


def print_cold_vs_warm(cold: dict, warm: dict) -> None:
    c, w = cold["report"].get("profile") or {}, warm["report"].get("profile") or {}
    print("\ncold vs warm, by kind (wall s / cpu s; warm: stages found cached)")
    print(f"  {'kind':10} {'cold wall':>10} {'cold cpu':>9} {'warm wall':>10} {'warm cpu':>9} {'cached':>7}")
    for kind in c.get("by_kind", {}):
        a, b = c["by_kind"][kind], w.get("by_kind", {}).get(kind, {})
        print(f"  {kind:10} {a['wall_seconds']:10.1f} {a['cpu_seconds']:9.1f} {b.get('wall_seconds', 0):10.1f} "
              f"{b.get('cpu_seconds', 0):9.1f} {b.get('cached', 0):7d}")
    stages = warm["report"]["stages"]
    n_cached = sum(s["cached"] for s in stages)
    print(f"\ncold run: {cold['wall']:7.1f} s wall {cold['cpu']:7.1f} s cpu (exit {cold['code']})   "
          f"warm run: {warm['wall']:6.1f} s wall {warm['cpu']:6.1f} s cpu (exit {warm['code']}, "
          f"{n_cached}/{len(stages)} stages cached)   ratio {cold['wall'] / warm['wall']:.1f}x wall, "
          f"{cold['cpu'] / max(warm['cpu'], 1e-9):.1f}x cpu")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the output directory")
    ap.add_argument("--example-cache", type=Path, default=None,
                    help="EDGEPIPE_CACHE for the runs: an empty directory times the example model's build too")
    args = ap.parse_args()
    out = args.output or Path(tempfile.mkdtemp(prefix="edgepipe-bench-")) / "out"
    if out.exists():
        shutil.rmtree(out)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    if args.example_cache is not None:
        env["EDGEPIPE_CACHE"] = str(args.example_cache.resolve())
    examples = Path(env["EDGEPIPE_CACHE"]) / "examples" if args.example_cache is not None else None
    built_here = examples is not None and not list(examples.glob(f"elpv-xception-*/{MARKER}"))
    cold = run(out, env)
    warm = run(out, env)

    print_results(cold["report"])
    print_profile("cold", cold)
    print_profile("warm", warm)
    print_stages(cold["report"])
    print_cold_vs_warm(cold, warm)
    print()
    print("\n".join(compute_floor.lines(cold["report"])))
    if built_here:  # the cold run built the example into the empty cache
        markers = {p.parent.name.rsplit("-", 1)[0]: json.loads(p.read_text())
                   for p in examples.glob(f"elpv-*/{MARKER}")}
        print("\n".join(compute_floor.build_lines(cold["report"], markers)))
    if not args.keep and args.output is None:
        shutil.rmtree(out.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
