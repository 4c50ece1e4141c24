"""The example's artifacts against each toolchain's defaults by hand and against the roofline, side by side.

    python benchmarks/bench_latency.py --output RUN_DIR [--rounds 5] [--runs 50] [--warmup 5] [--threads 2]
                                       [--clock-ghz GHZ] [--only openvino,tflite,onnx]

RUN_DIR is an `edgepipe run` output of the built-in example (`bench_elpv.py --keep` leaves one): its
artifacts, and in `stages/` the SavedModel the by-hand rows start from. The by-hand artifacts are
built once into RUN_DIR/bench_latency/ with `benchmarks/by_hand.py` on the run's calibration images
(NNCF: `ov.convert_model` + `nncf.quantize` with every default; TFLite: `Optimize.DEFAULT` PTQ; ONNX Runtime:
`quantize_static` with its defaults on the run's onnx-cpu/fp32 model).

Rows, every one at batch 1 on real preprocessed test images, all opened once in this process and
timed in rounds in an order rotated by one each round (../shared/BENCHMARKING.md); the table shows
the median of the rounds' p50s, the spread between rounds, the ratio that issue 17's goal names,
and the share of the CPU's peak MAC rate (`pipeline/validators/roofline.py`: MACs counted in the
FP32 IR, peak from the ISA flags and the clock):
- openvino-cpu/int8 as deployed (its blob and recorded config: LATENCY, the threads, f32 for the
  float remainder) against NNCF's defaults by hand compiled as a user would, `compile_model(model,
  "CPU", {threads, LATENCY})`, which leaves the inference precision to the plugin (bf16 on CPUs with
  bf16); the by-hand IR again with f32 says how much of the ratio is the runtime setting;
- tflite-arm/int8 against default PTQ by hand (both XNNPACK, same threads);
- onnx-cpu/int8 against onnx-cpu/fp32, and quantize_static's defaults by hand against the same FP32 (both
  in a plain session, as a user opens them; edgepipe's own runner adds a session option only on x86 CPUs
  without VNNI); openvino-cpu/fp32 for the FP32 share.
The load average and CPU steal around the measurement are printed and saved: above the core count
the figures are flagged. Results go to RUN_DIR/bench_latency.json.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import run_dir_args  # noqa: E402  (beside this script)


def by_hand(run: Path, calib, shape, only: set[str]) -> dict[str, Path]:
    """The by-hand artifacts of the toolchains in `only`, built once into RUN_DIR/bench_latency/."""
    from by_hand import nncf_by_hand, ort_by_hand, tflite_by_hand

    saved = next(p / "saved_model" for p in sorted((run / "stages").glob("savedmodel-*"))
                 if not p.name.startswith("savedmodel-equalized"))
    onnx_fp32 = run / "artifacts" / "onnx-cpu-fp32" / "model_fp32.onnx"
    out = {}
    for tool, name, build, file in (
            ("openvino", "nncf", lambda d: nncf_by_hand(saved, d, calib, shape), "model.xml"),
            ("tflite", "tflite", lambda d: tflite_by_hand(saved, d, calib), "model.tflite"),
            ("onnx", "ort", lambda d: ort_by_hand(onnx_fp32, d, calib), "model.onnx")):
        if tool not in only:
            continue
        d = run / "bench_latency" / name
        if not (d / file).is_file():
            tmp = d.with_name(name + ".partial")
            tmp.mkdir(parents=True, exist_ok=True)
            print(f"building {name} by hand on {len(calib)} calibration images ...", flush=True)
            build(tmp)
            tmp.rename(d)
        out[name] = d / file
    return out


def rows_for(run: Path, hand: dict, threads: int, only: set[str]) -> dict:
    """name -> (factory, comparator row or None, precision of the roofline it is held against)."""
    from edgepipe.formats.runners import ONNXRunner, OpenVINORunner, TFLiteRunner

    arts = run / "artifacts"

    def one(folder: str, pattern: str) -> Path:
        return next((arts / folder).glob(pattern))

    def deployed_ov(folder: str):
        xml = one(folder, "*.xml")
        blob = xml.with_suffix(".blob")
        return lambda: OpenVINORunner(xml, threads, "LATENCY", "f32", blob=blob if blob.is_file() else None)

    rows: dict = {}
    if "openvino" in only:
        rows["openvino-cpu/int8 edgepipe"] = (deployed_ov("openvino-cpu-int8"), "openvino-cpu/int8 NNCF by hand",
                                              "int8")
        # as a user compiles it: the plugin picks the precision of the float parts (bf16 on CPUs with bf16)
        rows["openvino-cpu/int8 NNCF by hand"] = (lambda: OpenVINORunner(hand["nncf"], threads, precision=None), None,
                                                  "int8")
        rows["openvino-cpu/int8 NNCF by hand, f32"] = (lambda: OpenVINORunner(hand["nncf"], threads), None, "int8")
        rows["openvino-cpu/fp32 edgepipe"] = (deployed_ov("openvino-cpu-fp32"), None, "fp32")
    if "tflite" in only:
        rows["tflite-arm/int8 edgepipe"] = (lambda: TFLiteRunner(one("tflite-arm-int8", "*.tflite"), threads),
                                            "tflite-arm/int8 PTQ by hand", "int8")
        rows["tflite-arm/int8 PTQ by hand"] = (lambda: TFLiteRunner(hand["tflite"], threads), None, "int8")
    if "onnx" in only:
        rows["onnx-cpu/int8 edgepipe"] = (lambda: ONNXRunner(one("onnx-cpu-int8", "*.onnx"), threads),
                                          "onnx-cpu/fp32 edgepipe", "int8")
        rows["onnx-cpu/int8 quantize_static by hand"] = (lambda: ONNXRunner(hand["ort"], threads),
                                                         "onnx-cpu/fp32 edgepipe", "int8")
        rows["onnx-cpu/fp32 edgepipe"] = (lambda: ONNXRunner(one("onnx-cpu-fp32", "*.onnx"), threads), None, "fp32")
    return rows


def main() -> None:
    ap = run_dir_args.parser(__doc__)
    ap.add_argument("--clock-ghz", type=float, default=None, help="the cores' clock under load (default: cpufreq's "
                                                                   "maximum, else BENCHMARKING.md's Zen 4 figure)")
    ap.add_argument("--only", default="openvino,tflite,onnx")
    args = ap.parse_args()

    import openvino as ov

    from edgepipe.config.schema import example_config_path, load_config
    from edgepipe.engine.context import RunContext
    from edgepipe.examples.models import resolve_model
    from edgepipe.validators import roofline
    from edgepipe.validators.latency import side_by_side

    cfg = load_config(example_config_path("elpv-xception"))
    ctx = RunContext(cfg, resolve_model(cfg), cache_root=args.output / "stages")
    only = set(args.only.split(","))
    hand = by_hand(args.output, ctx.calibration.images, ctx.spec.shape, only)
    rows = rows_for(args.output, hand, args.threads, only)
    runners = {name: make() for name, (make, _, _) in rows.items()}

    fp32_ir = next((args.output / "artifacts" / "openvino-cpu-fp32").glob("*.xml"))
    macs = roofline.macs_per_image(ov.Core().read_model(str(fp32_ir)))
    peak = roofline.host_peak(min(args.threads, os.cpu_count() or 1), args.clock_ghz)  # cores in use
    res = side_by_side(runners, ctx.validation.images, args.rounds, args.warmup, args.runs)

    load = res["load"]
    print(f"\n{res['cpu']}, {args.threads} threads, {args.rounds} rotated rounds x ({args.warmup} warmup + "
          f"{args.runs} runs); load average {load['before']['loadavg']} -> {load['after']['loadavg']}, steal "
          f"{load.get('steal_pct')}%" + ("   ** loaded machine: not evidence **" if load.get("busy") else ""))
    if peak:
        print(f"roofline: {macs / 1e9:.2f} GMAC per image; peak {peak['int8_macs_per_s'] / 1e9:.0f} GMAC/s INT8, "
              f"{peak['fp32_macs_per_s'] / 1e9:.0f} FP32 ({peak['assumes']}; {peak['cores']} cores at "
              f"{peak['clock_ghz']} GHz, {peak['clock_source']}): {1e3 * macs / peak['int8_macs_per_s']:.1f} ms "
              f"INT8, {1e3 * macs / peak['fp32_macs_per_s']:.1f} ms FP32")
    print(f"{'row':38} {'p50 ms':>7} {'spread':>7} {'ratio':>16} {'roofline':>9}  runtime says")
    out = {"cpu": res["cpu"], "threads": args.threads, "rounds": args.rounds, "runs": args.runs, "load": load,
           "macs_per_image": macs, "peak": peak, "rows": {}}
    for name, (_, versus, precision) in rows.items():
        med = res["p50_ms"][name]
        rounds = res["round_p50_ms"][name]
        ratio = res["p50_ms"][versus] / med if versus else None
        pct = roofline.share(med, macs, peak[f"{precision}_macs_per_s"]) if peak else None
        info = getattr(runners[name], "info", {})
        out["rows"][name] = {"p50_ms": med, "round_p50_ms": rounds, "versus": versus, "speedup": ratio,
                             "roofline_share": pct, "roofline_precision": precision, "runtime": info}
        ratio_text = f"x{ratio:.3f} vs {'by hand' if 'by hand' in versus else 'fp32'}" if versus else ""
        print(f"{name:38} {med:7.1f} {max(rounds) - min(rounds):7.1f} {ratio_text:>16} "
              f"{'' if pct is None else f'{100 * pct:.0f}%':>9}  {info}")
    (args.output / "bench_latency.json").write_text(json.dumps(out, indent=2, default=str))
    print(f"\nsaved {args.output / 'bench_latency.json'}; medians of round p50s: "
          f"{ {n: round(statistics.median(v), 2) for n, v in res['round_p50_ms'].items()} }")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
