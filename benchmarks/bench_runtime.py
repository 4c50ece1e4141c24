"""Runtime settings for the example's INT8 artifacts, side by side in one process: does a knob earn its keep?

    python benchmarks/bench_runtime.py --output RUN_DIR [--rounds 5] [--runs 50] [--warmup 5] [--threads 2]
                                       [--fidelity-images 100] [--only openvino|tflite]

RUN_DIR is an `edgepipe run` output of the built-in example (its `artifacts/openvino-cpu-int8` and
`artifacts/tflite-arm-int8`). Every setting below is a runner opened once in this process; each
round times every runner (warmup, then single-image runs on real preprocessed test images) in an
order rotated by one each round, as ../shared/BENCHMARKING.md asks. The table shows the median of
the rounds' p50s, the spread between rounds, the ratio to the deployed setting, and fidelity
against the deployed setting's scores on the first N test images (max |diff|, top-1 agreement).
The rounds are `validators.latency.side_by_side`'s. The load average and CPU steal (/proc/stat) before and
after are printed and saved (`load`, as every latency result keeps it): a measurement with a load average
above the core count is flagged, its milliseconds are not evidence.

Settings (documented knobs only):
- OpenVINO CPU: as deployed (blob, LATENCY hint, threads, f32); `ENABLE_CPU_PINNING` on and off;
  `NUM_STREAMS` 1 explicitly; `INFERENCE_PRECISION_HINT` bf16 for the float remainder of the INT8
  graph (only when the CPU reports bf16 support; it changes numbers, so fidelity decides);
  `SCHEDULING_CORE_TYPE` is not tried (no hybrid cores on these CPUs).
- LiteRT: as deployed (XNNPACK, threads); the builtin kernels without XNNPACK
  (`BUILTIN_WITHOUT_DEFAULT_DELEGATES`); `experimental_default_delegate_latest_features` (XNNPACK's
  flag-protected features).
Results go to RUN_DIR/bench_runtime.json.
"""

from __future__ import annotations

import gc
import json
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import run_dir_args  # noqa: E402  (beside this script)


def openvino_settings(art: Path, threads: int) -> dict:
    """name -> (factory, settings recorded with the row)."""
    import openvino as ov

    from edgepipe.formats.openvino_ir import OpenVINORunner, plain

    xml = next(art.glob("*.xml"))
    blob = xml.with_suffix(".blob") if xml.with_suffix(".blob").is_file() else None

    class Tuned(OpenVINORunner):
        """The deployed runner with extra CPU plugin properties set on its Core before it compiles; each row
        reads them back from the compiled model (runner_info), so a setting that did not take shows."""

        extra: dict = {}

        def compile(self, hint, streams=None):
            self.core.set_property("CPU", dict(self.extra))
            return super().compile(hint, streams)

    def tuned(precision: str = "f32", **extra):
        def make():
            cls = type("T", (Tuned,), {"extra": extra})
            r = cls(xml, threads, "LATENCY", precision, blob=blob)
            r.info.update({k: plain(r.compiled.get_property(k)) for k in extra})
            return r
        return make

    rows = {
        "openvino-cpu/int8 deployed": (lambda: OpenVINORunner(xml, threads, "LATENCY", "f32", blob=blob), {}),
        "openvino-cpu/int8 pinning on": (tuned(ENABLE_CPU_PINNING=True), {"ENABLE_CPU_PINNING": True}),
        "openvino-cpu/int8 pinning off": (tuned(ENABLE_CPU_PINNING=False), {"ENABLE_CPU_PINNING": False}),
        "openvino-cpu/int8 streams 1": (tuned(NUM_STREAMS=1), {"NUM_STREAMS": 1}),
    }
    caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if "BF16" in caps:
        rows["openvino-cpu/int8 bf16 remainder"] = (tuned("bf16"), {"INFERENCE_PRECISION_HINT": "bf16"})
    return rows


def tflite_settings(art: Path, threads: int) -> dict:
    from edgepipe.formats.tflite import TFLiteRunner, tflite_interpreter_class

    path = next(art.glob("*.tflite"))

    def latest_features():
        r = TFLiteRunner(path, threads)
        cls, _ = tflite_interpreter_class()
        r.interp = cls(model_path=str(path), num_threads=threads, experimental_default_delegate_latest_features=True)
        r.interp.allocate_tensors()
        r.inp, r.out = r.interp.get_input_details()[0], r.interp.get_output_details()[0]
        r.info["latest_features"] = True
        return r

    return {
        "tflite-arm/int8 deployed": (lambda: TFLiteRunner(path, threads), {}),
        "tflite-arm/int8 builtin kernels": (lambda: TFLiteRunner(path, threads, xnnpack=False), {"xnnpack": False}),
        "tflite-arm/int8 xnnpack latest features": (latest_features, {"experimental_default_delegate_latest_features":
                                                                       True}),
    }


def main() -> None:
    ap = run_dir_args.parser(__doc__)
    ap.add_argument("--fidelity-images", type=int, default=100)
    ap.add_argument("--only", choices=["openvino", "tflite"], default=None)
    args = ap.parse_args()

    from edgepipe.config.schema import example_config_path, load_config
    from edgepipe.engine.context import RunContext
    from edgepipe.examples.models import resolve_model
    from edgepipe.validators.latency import side_by_side

    cfg = load_config(example_config_path("elpv-xception"))
    ctx = RunContext(cfg, resolve_model(cfg), cache_root=args.output / "stages")
    images = ctx.validation.images
    arts = args.output / "artifacts"
    rows: dict = {}
    if args.only in (None, "openvino"):
        rows.update(openvino_settings(arts / "openvino-cpu-int8", args.threads))
    if args.only in (None, "tflite"):
        rows.update(tflite_settings(arts / "tflite-arm-int8", args.threads))
    runners = {name: make() for name, (make, _) in rows.items()}

    fid = images[: args.fidelity_images]
    scores = {name: np.stack([r.predict(x) for x in fid]) for name, r in runners.items()}
    names = list(runners)

    def progress(rnd: int, p50s: dict) -> None:
        print(f"round {rnd + 1}/{args.rounds}: " + ", ".join(f"{n.split(' ', 1)[1]} {p50s[n][-1]:.1f}" for n in names),
              flush=True)

    # every runner timed in each round, the order rotated by one per round; garbage collected between runners
    res = side_by_side(runners, images, args.rounds, args.warmup, args.runs, between=gc.collect, on_round=progress)
    p50, load = res["round_p50_ms"], res["load"]
    result = {"threads": args.threads, "rounds": args.rounds, "runs": args.runs, "warmup": args.warmup,
              "cpu": res["cpu"], "cores": load["cores"], "load": load, "rows": {}}
    la = [s["loadavg"][0] if s["loadavg"] else float("nan") for s in (load["before"], load["after"])]
    print(f"\nload average {la[0]:.1f} -> {la[1]:.1f} on {load['cores']} cores, steal {load['steal_pct']}%"
          + ("   ** loaded machine: not evidence **" if load["busy"] else ""))
    print(f"{'setting':44} {'p50 ms':>8} {'spread':>7} {'× deployed':>10} {'max|diff|':>10} {'agree':>6}  runtime says")
    for n in names:
        base = next(b for b in names if b.split(" ", 1)[0] == n.split(" ", 1)[0] and b.endswith("deployed"))
        med = statistics.median(p50[n])
        ratio = med / statistics.median(p50[base])
        diff = float(np.abs(scores[n] - scores[base]).max())
        agree = float((scores[n].argmax(1) == scores[base].argmax(1)).mean())
        result["rows"][n] = {"settings": rows[n][1], "p50_ms": med, "p50_ms_rounds": p50[n],
                             "ratio_to_deployed": ratio, "max_abs_diff": diff, "top1_agreement": agree,
                             "fidelity_images": len(fid), "runner_info": runners[n].info}
        print(f"{n:44} {med:8.1f} {max(p50[n]) - min(p50[n]):7.1f} {ratio:10.3f} {diff:10.2e} {agree:6.3f}  "
              f"{runners[n].info}")
    (args.output / "bench_runtime.json").write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
