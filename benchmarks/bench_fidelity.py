"""Fidelity of elpv-xception's INT8 artifacts to FP32: artifact x recipe -> agreement [95% CI], output SNR,
KL, top-1, p50 and p50 ratio vs the plain INT8 artifact of the same toolchain.

    python benchmarks/bench_fidelity.py [--output DIR] [--rows SUBSTR,...] [--split control|test]
                                        [--latency-rounds R] [--table] [--redo]

Rows (fidelity_rows.ROWS): per toolchain (tflite = tflite-arm / coral's converter, nncf = openvino-cpu,
ort = onnx-cpu) the plain INT8 artifact edgepipe builds with its `default` recipe, the toolchain's
defaults run by hand (TFLiteConverter default PTQ, nncf.quantize defaults, quantize_static defaults),
the float floors (TFLite FP32, TFLite fp16 weights; OpenVINO bf16 only on a CPU with avx512_bf16 / AMX)
and the methods of pipeline/quantize/ alone and combined.

Splits: `control` is 300 images of elpv's train split (never calibration, never test): methods and
their hyper-parameters are chosen there. `test` is the 786-image test split: reported once, at the end.

`--latency-rounds R` measures the p50 of every selected row side by side in this one process: R rounds,
each timing every row once (warmup + runs, same threads, same images) in a rotated order; the table
shows the median of the rounds' p50s and the ratio to the plain INT8 artifact of the same toolchain
measured in the same rounds, with the conditions (CPU, ISA flags, threads, load average, steal).

Every build and every score array is a stage in DIR/stages (pipeline/core/cache.py): reruns are cheap.
Results accumulate in DIR/bench_fidelity.json (merged under a lock: several runs may share DIR); a row
already there is not measured again unless `--redo`.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fidelity_build import Builder, artifact_key, bf16_supported, runner_factory  # noqa: E402
from fidelity_rows import PLAIN, ROWS, Row  # noqa: E402

CONTROL = {"source": "example:elpv", "split": "train", "size": 300}
LAT = "_latency"


def _config(output: Path):
    import yaml

    from edgepipe.config.schema import example_config_path, parse_config

    path = example_config_path("elpv-xception")
    raw = yaml.safe_load(path.read_text())
    raw["output"] = str(output)
    raw["targets"] = [{"name": "tflite-arm", "options": {"precisions": ["int8"], "recipe": "default"}}]
    return parse_config(raw, base=path.parent, source="bench_fidelity")


def steal() -> dict:
    """Aggregate CPU jiffies from /proc/stat (steal is the 8th field)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return {"total": sum(v), "steal": v[7] if len(v) > 7 else 0}


class Bench:
    def __init__(self, output: Path):
        from edgepipe.calibration.dataset import load_subset
        from edgepipe.config.schema import Subset
        from edgepipe.engine.context import RunContext
        from edgepipe.examples.models import resolve_model

        self.output = output
        cfg = _config(output)
        self.ctx = RunContext(cfg, resolve_model(cfg))
        self.control = load_subset(Subset(**CONTROL), cfg.data.splits, self.ctx.labels, self.ctx.spec, "control")
        self.splits = {"control": self.control, "test": self.ctx.validation}
        self.build = Builder(self.ctx, self.ctx.calibration, self.control)
        self.builders = {None: self.build}  # by calibration size (Row.calibration_size)
        self.path = output / "bench_fidelity.json"
        self.results = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.touched: set[str] = set()  # rows (and the latency entry) this process measured

    def save(self) -> None:
        """Merge what this process measured into the file under a lock: several bench processes may share
        one output directory, and none drops the rows another wrote since it started."""
        from filelock import FileLock

        from edgepipe.core.tempdirs import atomic_write_text

        with FileLock(str(self.path) + ".lock"):
            disk = json.loads(self.path.read_text()) if self.path.exists() else {}
            for name in self.touched:
                disk.setdefault(name, {}).update(self.results[name])
            self.results = {**disk, **{n: self.results[n] for n in self.touched}}
            atomic_write_text(self.path, json.dumps(self.results, indent=1, default=float))

    # ---- scores ----------------------------------------------------------------------
    def scores(self, split: str, key: dict, make_runner, label: str) -> np.ndarray:
        from edgepipe.validators.accuracy import predict_all

        batch = self.splits[split]

        def fn(out: Path) -> dict:
            t0 = time.perf_counter()
            np.save(out / "scores.npy", predict_all(make_runner(), batch.images))
            return {"n": len(batch), "seconds": time.perf_counter() - t0}

        print(f"[score] {label} on {split}", flush=True)
        res = self.ctx.stage("fid-scores", {**key, "data": batch.sha256}, fn)
        return np.load(res.path / "scores.npy")

    def reference(self, split: str) -> np.ndarray:
        from edgepipe.core.versions import tool_versions

        key = {"model": self.ctx.model_sha, **tool_versions("tensorflow", "keras")}
        if split == "test":  # the same stage as the pipeline's own reference
            from edgepipe.engine.reference import scores_stage

            return scores_stage(self.ctx, "accuracy-reference", key, self.ctx.reference_runner)[0]
        return self.scores(split, {"reference": key}, self.ctx.reference_runner, "keras/fp32")

    # ---- rows ------------------------------------------------------------------------
    def builder(self, size: int | None) -> Builder:
        """The builder over the calibration subset a recipe with `calibration_size: size` gets in the pipeline
        (RunContext.calibration_for): its stages have their own keys."""
        if size not in self.builders:
            from edgepipe.quantize.recipes import Recipe

            self.builders[size] = Builder(self.ctx, self.ctx.calibration_for(Recipe(calibration_size=size)),
                                          self.control)
        return self.builders[size]

    def artifact(self, row: Row) -> tuple[Path, str]:
        """(artifact path, runtime precision)."""
        b = self.builder(row.calibration_size)
        if row.kind == "by-hand":
            return b.by_hand(row.tool), "f32"
        if row.kind == "fp16":
            return b.fp16(), "f32"
        if row.kind == "fp32":
            return {"tflite": b.tflite_fp32, "nncf": b.ir, "ort": b.onnx}[row.tool](row.chain), "f32"
        if row.kind == "bf16":
            return b.ir(row.chain), "bf16"
        return b.quantized(row.tool, row.chain, row.recipe, row.native), "f32"

    def measure(self, row: Row, split: str) -> dict:
        from edgepipe.validators.accuracy import accuracy_metrics
        from edgepipe.validators.fidelity import fidelity_metrics

        path, precision = self.artifact(row)
        make = runner_factory(path, self.ctx.cfg.threads, precision)
        if precision != "f32":
            got = make().info.get("inference_precision")
            if got != precision:
                return {"skipped": f"runtime reports inference precision {got!r}, not {precision!r} "
                                   f"(CPU flags: {bf16_supported()['flags'] or 'no avx512_bf16 / amx'})"}
        key = {"artifact": artifact_key(path), "precision": precision}
        s = self.scores(split, key, make, row.name)
        ref = self.reference(split)
        batch = self.splits[split]
        fid = fidelity_metrics(ref, s, names=[Path(p).name for p in batch.paths] if batch.paths else None,
                               class_names=self.ctx.labels)
        acc = accuracy_metrics(s, batch.labels, ref)
        return {"path": str(path), "top1": acc["top1"], "ref_top1": acc["ref_top1"],
                "size_mb": sum(f.stat().st_size for f in [path, path.with_suffix(".bin")] if f.exists()) / 1e6,
                **fid}

    def run(self, names: list[str], split: str, redo: bool = False) -> None:
        for row in ROWS:
            if names and not selected(row.name, names):
                continue
            store = self.results.setdefault(row.name, {})
            if split in store and "error" not in store[split] and not redo:
                continue
            t0 = time.perf_counter()
            print(f"[run ] {row.name} ({split})", flush=True)
            try:
                r = self.measure(row, split)
            except Exception as err:  # one failing row is reported, the others still run
                r = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc(limit=8)}
            r["seconds"] = round(time.perf_counter() - t0, 1)
            store[split] = r
            self.touched.add(row.name)
            self.save()
            print(f"[done] {row.name}: {_brief(r)}", flush=True)

    # ---- latency, side by side -------------------------------------------------------
    def side_by_side(self, names: list[str], rounds: int) -> None:
        from edgepipe.core.versions import host_facts
        from edgepipe.validators import latency as lat_mod

        factories = {}
        for row in ROWS:
            if (not names or selected(row.name, names) or row.name in PLAIN.values()) and \
                    row.kind not in ("bf16",):
                done = self.results.get(row.name, {})
                if any("path" in v for v in done.values()):
                    path, precision = self.artifact(row)
                    factories[row.name] = runner_factory(path, self.ctx.cfg.threads, precision)
        lat = self.ctx.cfg.latency
        images = self.ctx.validation.images[:16]
        order = list(factories)
        p50 = {n: [] for n in order}
        info = {}
        before = {"loadavg": os.getloadavg(), "stat": steal(), "time": time.strftime("%Y-%m-%d %H:%M")}
        t0 = time.perf_counter()
        for rnd in range(rounds):
            for n in order[rnd % len(order):] + order[:rnd % len(order)]:
                m = lat_mod.measure(factories[n], images, lat.warmup, lat.runs)
                p50[n].append(m["p50_ms"])
                info[n] = {k: m.get(k) for k in ("runtime", "threads", "xnnpack", "inference_precision")}
                gc.collect()
                print(f"[lat ] round {rnd + 1}/{rounds} {n}: p50 {p50[n][-1]:.1f} ms", flush=True)
        after = {"loadavg": os.getloadavg(), "stat": steal()}
        d_total = after["stat"]["total"] - before["stat"]["total"]
        self.results[LAT] = {
            "rounds": rounds, "runs": lat.runs, "warmup": lat.warmup, "threads": self.ctx.cfg.threads,
            "p50_ms": {n: statistics.median(v) for n, v in p50.items()}, "p50_ms_all": p50, "runtime": info,
            "loadavg_before": before["loadavg"], "loadavg_after": after["loadavg"],
            "steal_share": (after["stat"]["steal"] - before["stat"]["steal"]) / max(d_total, 1),
            "seconds": round(time.perf_counter() - t0, 1), "date": before["time"], "host": host_facts()}
        self.touched.add(LAT)
        self.save()


def _brief(r: dict) -> str:
    if "error" in r:
        return "ERROR " + r["error"][:300]
    if "skipped" in r:
        return "skipped: " + r["skipped"]
    return (f"agree {r['agreement']:.3f} [{r['agreement_ci95'][0]:.3f}, {r['agreement_ci95'][1]:.3f}]  "
            f"SNR {r['output_snr_db']:.1f} dB  KL {r['kl_mean']:.4f}  top-1 {r['top1']:.4f}  ({r['seconds']:.0f} s)")


def table(results: dict, split: str) -> str:
    lat = results.get(LAT)
    lines = [f"split: {split}" + (f"; p50: median of {lat['rounds']} rotated rounds, side by side" if lat else ""),
             "| row | agreement [95% CI] | flips | SNR dB | KL mean | top-1 | p50 ms | × plain p50 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in ROWS:
        r = results.get(row.name, {}).get(split)
        if r is None:
            continue
        if "error" in r or "skipped" in r:
            lines.append(f"| {row.name} | {(r.get('error') or r.get('skipped'))[:90]} | | | | | | |")
            continue
        p = lat["p50_ms"].get(row.name) if lat else None
        base = lat["p50_ms"].get(PLAIN.get(row.tool, "")) if lat else None
        ratio = f"{p / base:.2f}" if p and base and row.kind not in ("fp32", "fp16") else "—"
        lo, hi = r["agreement_ci95"]
        lines.append(f"| {row.name} | {r['agreement']:.3f} [{lo:.3f}, {hi:.3f}] | {r['flipped']} | "
                     f"{r['output_snr_db']:.1f} | {r['kl_mean']:.4f} | {r['top1']:.4f} | "
                     f"{'—' if p is None else f'{p:.1f}'} | {ratio} |")
    if lat:
        h = lat["host"]
        lines.append(f"\nlatency: {lat['rounds']} rounds × ({lat['warmup']} warmup + {lat['runs']} runs) per row, "
                     f"{lat['threads']} threads, {lat['date']}, {lat['seconds']:.0f} s; CPU {h['cpu']} "
                     f"({h['cores']} cores, ISA {', '.join(h['isa_flags']) or 'none listed'}); load average "
                     f"before {lat['loadavg_before'][0]:.2f}, after {lat['loadavg_after'][0]:.2f}; "
                     f"steal {100 * lat['steal_share']:.1f}%")
    return "\n".join(lines)


def selected(name: str, names: list[str]) -> bool:
    """`--rows`: substrings of row names; one ending in `$` is a whole name (`tflite-arm/int8 eq-sep$` is not
    `tflite-arm/int8 eq-sep + qat`)."""
    return any(name == n[:-1] if n.endswith("$") else n in name for n in names)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", type=Path, default=Path("edgepipe-bench-fidelity"))
    ap.add_argument("--rows", default="", help="comma-separated substrings of row names, or whole names ending "
                    "in $ (default: all)")
    ap.add_argument("--split", choices=["control", "test"], default="control")
    ap.add_argument("--table", action="store_true", help="only print the table from DIR/bench_fidelity.json")
    ap.add_argument("--latency-rounds", type=int, default=0, metavar="R")
    ap.add_argument("--redo", action="store_true", help="measure the selected rows again even when DIR has them")
    args = ap.parse_args()
    names = [n for n in args.rows.split(",") if n]
    if args.table:
        print(table(json.loads((args.output / "bench_fidelity.json").read_text()), args.split))
        return
    bench = Bench(args.output)
    bench.run(names, args.split, args.redo)
    if args.latency_rounds:
        bench.side_by_side(names, args.latency_rounds)
    print()
    print(table(bench.results, args.split))


if __name__ == "__main__":
    main()
