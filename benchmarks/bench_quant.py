"""Quantization quality table for elpv-xception: artifact x recipe -> top-1, Δ vs FP32, p50.

    python benchmarks/bench_quant.py [--output DIR] [--rows NAME,...] [--table] [--latency-rounds R]

Rows (all in one run, on the 786-image test split, against the Keras FP32 reference):
- each toolchain's defaults run by hand, outside edgepipe's recipe code:
  `TFLiteConverter` + `Optimize.DEFAULT` + the 300 calibration images as representative
  dataset (nothing else set: float I/O, builtin ops allowed), and `ov.convert_model` +
  `nncf.quantize(model, dataset)` with every default, and ONNX Runtime's `quantize_static` on
  the tf2onnx FP32 model with every default (QDQ, per-tensor weights, MinMax) except
  `CalibMaxIntermediateOutputs` (without it MinMax keeps every image's activations: tens of GB);
- edgepipe's INT8 artifacts (tflite-arm, openvino-cpu, onnx-cpu) under the `default` recipe,
  with separable equalization on, and with separable + cross-layer equalization;
- per-tensor weights with and without cross-layer equalization (NNCF), the recipe CLE is for;
- accuracy-aware quantization to 0.3 points (TFLite float fallback, NNCF accuracy control),
  with the calibration split as accuracy-control set.

`--latency-rounds R` (run it on an idle machine, after the rows exist) re-measures the p50 of every
row and of the FP32 reference side by side in this one process: R rounds, each timing every row
once (warmup + `latency.runs` runs, same threads, same images) in a rotated order, and the table
then shows the median of the R p50s and its ratio to the FP32 reference measured in the same
rounds. The rows' own p50s (measured when each row was built, possibly under other load) are
kept in bench_quant.json but not shown then.

Every conversion and measurement is a stage in DIR/stages (pipeline/core/cache.py): copy an
earlier run's stages there (e.g. a previous run's OUTPUT/stages) to reuse the FP32 reference; a rerun
only computes what is missing. Results accumulate in DIR/bench_quant.json row by row.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import time
import traceback
from pathlib import Path

import by_hand  # benchmarks/by_hand.py (this script's folder is sys.path[0])

RECIPES = {  # beside the built-in ones (default, per-tensor, eq-sep, eq-sep-cle)
    "per-tensor-cle": {"description": "per-tensor weights + cross-layer equalization", "weights": "per_tensor",
                       "cross_layer_equalization": True},
    "budget-0.3": {"description": "accuracy-aware, 0.3 points", "max_accuracy_drop": 0.3},
}
# (row name, target, recipe) in the order they run: the essential rows first
ROWS = [
    ("tflite-default-by-hand", "by-hand", "tflite"),
    ("nncf-default-by-hand", "by-hand", "nncf"),
    ("ort-default-by-hand", "by-hand", "ort"),
    ("tflite-arm/int8 eq-sep", "tflite-arm", "eq-sep"),
    ("openvino-cpu/int8 eq-sep", "openvino-cpu", "eq-sep"),
    ("openvino-cpu/int8 default", "openvino-cpu", "default"),
    ("openvino-cpu/int8 budget-0.3", "openvino-cpu", "budget-0.3"),
    ("tflite-arm/int8 default", "tflite-arm", "default"),
    ("openvino-cpu/int8 per-tensor", "openvino-cpu", "per-tensor"),
    ("openvino-cpu/int8 per-tensor-cle", "openvino-cpu", "per-tensor-cle"),
    ("openvino-cpu/int8 eq-sep-cle", "openvino-cpu", "eq-sep-cle"),
    ("onnx-cpu/int8 default", "onnx-cpu", "default"),
    ("onnx-cpu/int8 eq-sep", "onnx-cpu", "eq-sep"),
    ("tflite-arm/int8 budget-0.3", "tflite-arm", "budget-0.3"),
    ("tflite-arm/int8 eq-sep-cle", "tflite-arm", "eq-sep-cle"),
    ("coral-edgetpu/int8 budget-0.3", "coral-edgetpu", "budget-0.3"),
]
SIDE = "_side_by_side"  # bench_quant.json key of the --latency-rounds measurement


def _config(output: Path, target: str | None, recipe: str | None):
    import yaml

    from edgepipe.config.schema import example_config_path, parse_config

    path = example_config_path("elpv-xception")
    raw = yaml.safe_load(path.read_text())
    raw["output"] = str(output)
    raw["quantization"] = {"recipes": RECIPES}
    raw["targets"] = [{"name": target or "tflite-arm", "options": {"precisions": ["int8"],
                                                                   "recipe": recipe or "default"}}]
    return parse_config(raw, base=path.parent, source="bench_quant")


class Bench:
    def __init__(self, output: Path):
        from edgepipe.engine.context import RunContext
        from edgepipe.engine.reference import reference as _reference
        from edgepipe.examples.models import resolve_model

        self.output = output
        cfg = _config(output, None, None)
        self.model_path = resolve_model(cfg)
        self.base = RunContext(cfg, self.model_path)
        self.ref = _reference(self.base)
        self.results_path = output / "bench_quant.json"
        self.results = json.loads(self.results_path.read_text()) if self.results_path.exists() else {}

    def context(self, target: str, recipe: str):
        from edgepipe.engine.context import RunContext

        ctx = RunContext(_config(self.output, target, recipe), self.model_path)
        ctx.__dict__["calibration"] = self.base.calibration  # load the images once
        ctx.__dict__["validation"] = self.base.validation
        ctx.keras_model = self.base.keras_model  # load the Keras model once
        return ctx

    def measure(self, ctx, name: str, path: Path, make_runner) -> dict:
        from edgepipe.core.hashing import sha256_file
        from edgepipe.engine.reference import latency_stage as _latency_stage
        from edgepipe.engine.reference import scores_stage as _scores_stage
        from edgepipe.validators import accuracy as acc_mod

        files = [path] + ([path.with_suffix(".bin")] if path.suffix == ".xml" else [])
        key = {"artifact": [sha256_file(f) for f in files], "runner": name.split(" ")[0]}
        stage = "bench-" + name.replace("/", "-").replace(" ", "-")
        scores, _ = _scores_stage(ctx, f"accuracy-{stage}", key, make_runner)
        acc = acc_mod.accuracy_metrics(scores, ctx.validation.labels, self.ref["scores"])
        lat = _latency_stage(ctx, f"latency-{stage}", key, make_runner)
        return {"top1": acc["top1"], "drop_points": acc["drop_points"], "agreement": acc["agreement"],
                "p50_ms": lat["p50_ms"], "p90_ms": lat["p90_ms"],
                "size_mb": sum(f.stat().st_size for f in files) / 1e6}

    def artifact(self, target: str, recipe: str) -> tuple:
        """(context, artifact path, runner factory, extra row fields) of one row; every build is a
        cached stage, so asking again (e.g. for --latency-rounds) only loads."""
        if target == "by-hand":
            return self.by_hand(recipe)
        return self.edgepipe(target, recipe)

    def by_hand(self, which: str) -> tuple:
        from edgepipe.core.versions import tool_versions
        from edgepipe.formats.runners import OpenVINORunner, TFLiteRunner

        ctx = self.context("tflite-arm", "default")
        sm = ctx.savedmodel()
        calib = ctx.calibration
        threads = ctx.cfg.threads
        if which == "tflite":
            res = ctx.stage("bench-tflite-by-hand", {"savedmodel": sm.key, "calibration": calib.sha256,
                                                     **tool_versions("tensorflow")},
                            lambda out: by_hand.tflite_by_hand(sm.path / "saved_model", out, calib.images))
            path = res.path / "model.tflite"
            return ctx, path, lambda: TFLiteRunner(path, threads), {}
        if which == "ort":
            from edgepipe.formats.runners import ONNXRunner
            from edgepipe.targets import onnx_cpu

            fp32, _ = onnx_cpu._onnx_stage(ctx, onnx_cpu.Options())
            src = fp32.path / fp32.meta["file"]
            res = ctx.stage("bench-ort-by-hand", {"onnx": fp32.key, "calibration": calib.sha256,
                                                  **tool_versions("onnxruntime")},
                            lambda out: by_hand.ort_by_hand(src, out, calib.images))
            path = res.path / "model.onnx"
            return ctx, path, lambda: ONNXRunner(path, threads), {}
        res = ctx.stage("bench-nncf-by-hand", {"savedmodel": sm.key, "calibration": calib.sha256,
                                               "shape": list(ctx.spec.shape), **tool_versions("openvino", "nncf")},
                        lambda out: by_hand.nncf_by_hand(sm.path / "saved_model", out, calib.images, ctx.spec.shape))
        path = res.path / "model.xml"
        return ctx, path, lambda: OpenVINORunner(path, threads), {}

    def edgepipe(self, target: str, recipe: str) -> tuple:
        from edgepipe import targets

        ctx = self.context(target, recipe)
        entry = ctx.cfg.targets[0]
        job = next(j for j in targets.load_module(target).jobs(ctx, entry.typed_options()) if j.precision == "int8")
        art = job.build()
        extra = {"recipe": art.recipe}
        eq = [e for e in ctx.cache.events if e.name == "savedmodel-equalized"]
        if eq:
            extra["equalization"] = eq[0].meta
        return ctx, art.path, lambda: job.runner(art, ctx.cfg.threads), extra

    def side_by_side(self, rounds: int) -> None:
        """p50 of the reference and every measured row, interleaved in one process (see the docstring)."""
        from edgepipe.validators import latency as lat_mod

        factories = {"reference": self.base.reference_runner}
        for name, target, recipe in ROWS:
            r = self.results.get(name)
            if r and "error" not in r:
                factories[name] = self.artifact(target, recipe)[2]
        lat = self.base.cfg.latency
        images = self.base.validation.images
        names = list(factories)
        p50 = {n: [] for n in names}
        load_before = os.getloadavg()
        t0 = time.perf_counter()
        for rnd in range(rounds):
            for n in names[rnd % len(names):] + names[:rnd % len(names)]:
                p50[n].append(lat_mod.measure(factories[n], images, lat.warmup, lat.runs)["p50_ms"])
                gc.collect()
                print(f"[lat ] round {rnd + 1}/{rounds} {n}: p50 {p50[n][-1]:.1f} ms", flush=True)
        self.results[SIDE] = {
            "rounds": rounds, "runs": lat.runs, "warmup": lat.warmup, "threads": self.base.cfg.threads,
            "p50_ms": {n: statistics.median(v) for n, v in p50.items()}, "p50_ms_all": p50,
            "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
            "seconds": round(time.perf_counter() - t0, 1), "date": time.strftime("%Y-%m-%d %H:%M"),
            "cpu": os.cpu_count()}
        self.results_path.write_text(json.dumps(self.results, indent=2, default=str))

    def run(self, names: list[str]) -> None:
        for name, target, recipe in ROWS:
            if names and name not in names:
                continue
            if name in self.results and "error" not in self.results[name]:
                print(f"[have] {name}", flush=True)
                continue
            t0 = time.perf_counter()
            print(f"[run ] {name}", flush=True)
            try:
                ctx, path, make_runner, extra = self.artifact(target, recipe)
                row = {**self.measure(ctx, name, path, make_runner), **extra}
            except Exception as err:  # one failing row is reported, the others still run
                row = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc(limit=6)}
            row["seconds"] = round(time.perf_counter() - t0, 1)
            self.results[name] = row
            self.results_path.write_text(json.dumps(self.results, indent=2, default=str))
            print(f"[done] {name}: {_fmt(row)}", flush=True)

    def float_check(self, n: int = 64) -> dict:
        """max |equalized - original| Keras outputs on the first n test images, per equalized model."""
        out = {}
        for d in sorted((self.output / "stages").glob("savedmodel-equalized-*")):
            def fn(stage_dir: Path, d=d) -> dict:
                import keras

                from edgepipe.quantize.equalize import max_output_diff

                new = keras.saving.load_model(d / "equalized.keras", compile=False)
                return {"max_output_diff": max_output_diff(self.base.keras_model(), new,
                                                           self.base.validation.images[:n]), "images": n}

            res = self.base.stage("bench-float-check", {"equalized": d.name, "n": n}, fn)
            info = json.loads((d / "_stage.json").read_text())["inputs"]
            out[d.name] = {**res.meta, "separable": info["separable"], "cross_layer": info["cross_layer"]}
        return out

    def reference_row(self) -> dict:
        r = self.ref["row"]  # a edgepipe.reports.rows.ReportRow
        return {"top1": r.accuracy["top1"], "p50_ms": r.latency["p50_ms"], "size_mb": r.size_mb}


def _fmt(row: dict) -> str:
    if "error" in row:
        return "ERROR " + row["error"][:200]
    return (f"top-1 {row['top1']:.4f}  Δ {row['drop_points']:+.2f} pts  agree {row['agreement']:.3f}  "
            f"p50 {row['p50_ms']:.1f} ms  ({row['seconds']:.0f} s)")


def table(bench_json: dict, ref: dict) -> str:
    side = bench_json.get(SIDE)
    head = (f"p50 ms (median of {side['rounds']}, side by side) | × FP32 p50" if side
            else "p50 ms (as built, not side by side) | × FP32 p50")
    ref_p50 = side["p50_ms"]["reference"] if side else ref["p50_ms"]

    def p50_of(name: str, row: dict) -> str:
        p = side["p50_ms"].get(name) if side else row["p50_ms"]
        return "not measured | —" if p is None else f"{p:.1f} | {p / ref_p50:.2f}"

    lines = [f"| artifact | recipe | top-1 | drop vs FP32 (pts, + = worse) | agreement | {head} | within 0.3 |",
             "|---|---|---:|---:|---:|---:|---:|:---:|",
             f"| keras/fp32 (reference) | — | {ref['top1']:.4f} | — | — | {ref_p50:.1f} | 1.00 | — |"]
    family = {"tflite": 0, "nncf": 1, "openvino": 1, "ort": 2, "onnx": 2, "coral": 3}
    for name, _, _ in sorted(ROWS, key=lambda row: family[row[0].split("-")[0]]):
        r = bench_json.get(name)
        if r is None:
            continue
        art, _, recipe = name.partition(" ")
        if "error" in r:
            lines.append(f"| {art} | {recipe or '—'} | error: {r['error'][:80]} | | | | | |")
            continue
        ok = "yes" if r["drop_points"] <= 0.3 else "**no**"
        lines.append(f"| {art} | {recipe or 'toolchain defaults'} | {r['top1']:.4f} | {r['drop_points']:+.2f} | "
                     f"{r['agreement']:.3f} | {p50_of(name, r)} | {ok} |")
    if side:
        lines.append(f"\n{side['rounds']} rounds × ({side['warmup']} warmup + {side['runs']} runs) per row, "
                     f"{side['threads']} threads, {side['seconds']:.0f} s, {side['date']}; load average "
                     f"before {side['loadavg_before'][0]:.2f}, after {side['loadavg_after'][0]:.2f}")
    return "\n".join(lines)


def edgetpu_pick(results: dict) -> str:
    """What the coral-edgetpu budget row chose (full-integer repairs, measured on the control set)."""
    r = results.get("coral-edgetpu/int8 budget-0.3")
    if not r or "error" in r:
        return "Edge TPU pick: the coral-edgetpu budget row was not measured"
    pick = r["recipe"]["edgetpu_repair"]
    rungs = ", ".join(f"{c['name']} {c['drop_points']:+.2f}" for c in pick["candidates"])
    return (f"Edge TPU pick (coral-edgetpu, budget 0.3, on {pick['control_images']} control images, "
            f"1 image = {pick['resolution_points']:.2f} pts): {pick['why']}; measured: {rungs}; "
            f"not measured: {pick['not_measured']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--output", type=Path, default=Path("edgepipe-bench-quant"))
    ap.add_argument("--rows", default="", help="comma-separated row names (default: all)")
    ap.add_argument("--table", action="store_true", help="only print the table from DIR/bench_quant.json")
    ap.add_argument("--latency-rounds", type=int, default=0, metavar="R",
                    help="re-measure every row's p50 side by side, R rounds (on an idle machine)")
    args = ap.parse_args()
    bench = Bench(args.output)
    if not args.table:
        bench.run([n for n in args.rows.split(",") if n])
    if args.latency_rounds:
        bench.side_by_side(args.latency_rounds)
    print()
    print(table(bench.results, bench.reference_row()))
    print(edgetpu_pick(bench.results))
    print("float check on test images:", json.dumps(bench.float_check()))
    extras = {n: {k: r[k] for k in ("recipe", "equalization") if k in r} for n, r in bench.results.items()
              if ("budget" in n or "eq-" in n) and n != SIDE}
    print(json.dumps(extras, indent=1, default=str))


if __name__ == "__main__":
    main()
