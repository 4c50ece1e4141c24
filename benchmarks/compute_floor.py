"""The compute floor of a cold `edgepipe run`: how long its forward passes would take at this CPU's peak MAC rate.

    python benchmarks/compute_floor.py OUTPUT_DIR/report.json     (bench_elpv.py prints it after a cold run)

A lower bound on the run's wall time that no scheduling, caching or runtime setting can beat without doing less
work: every pass the run makes over images, counted in multiply-accumulates (the MACs per image OpenVINO counted
for each artifact's roofline, pipeline/validators/roofline.py) and divided by the peak for the pass's precision
(the same peak: cores x clock x MACs per cycle, ../shared/BENCHMARKING.md). Counted, each at least once:

- reference: the Keras model over the validation images, and its latency runs (warmup, timed and end-to-end
  runs), in FP32;
- accuracy: each artifact scored over the validation images, at its precision's peak (an artifact with no MAC
  count of its own, e.g. the NPU's IR scored on the CPU, takes the FP32 model's count);
- quantize: one FP32 pass over the calibration images for each stage that collects statistics (equalization,
  TFLite, NNCF, ONNX Runtime; NNCF's NPU stage reuses the CPU stage's statistics and counts nothing when it
  took no time), the least a calibration can do;
- latency: each artifact's warmup, timed and end-to-end runs (the latter from the image files).
Not counted (so the floor stays a lower bound): conversions, compilation, probes, per-layer diagnoses, the
latency stages' first inference, and everything outside the forward passes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

STATISTICS_STAGES = ("savedmodel-equalized", "tflite-int8", "nncf-int8", "nncf-int8-npu", "onnx-qdq-int8")


def floor(report: dict) -> dict | None:
    """{kind: floor seconds at peak} and the basis, from a report.json whose artifacts have roofline records;
    None when none has one (no peak row for this CPU, or no latency stage ran)."""
    roofs = {r["artifact"]: (r.get("latency") or {}).get("roofline") for r in report["artifacts"]}
    known = [x for x in roofs.values() if x]
    fp32 = next((x for x in known if x["of_peak"] == "fp32"), None)
    int8 = next((x for x in known if x["of_peak"] == "int8"), None)
    if fp32 is None:
        return None
    peak = {"fp32": fp32["peak_macs_per_s"], "int8": (int8 or {}).get("peak_macs_per_s")}
    macs = fp32["macs_per_image"]
    n_val = report["data"]["validation"]["count"]
    calibration = report["data"].get("calibration") or {}
    n_cal = report["data"].get("quantization_calibration_size") or calibration.get("count", 0)
    costs = {s["stage"]: s.get("cost_when_it_ran") or s
             for s in (report.get("profile") or {}).get("stages", [])}
    ran = {s["stage"] for s in report["stages"]}  # a warm run's cached stages: the work its cold run did
    seconds: dict[str, float] = {}

    def timed(lat: dict) -> int:
        return lat["runs"] + lat.get("warmup", 0) + (lat.get("end_to_end") or {}).get("runs", 0)

    def add(kind: str, images: int, precision: str, per_image: int = macs) -> None:
        rate = peak.get(precision) or peak["fp32"]
        seconds[kind] = seconds.get(kind, 0.0) + images * per_image / rate

    for row in report["artifacts"]:
        lat, name = row.get("latency") or {}, row["artifact"]
        roof = roofs.get(name) or {}
        precision = "int8" if row.get("precision") == "int8" else "fp32"
        per_image = roof.get("macs_per_image", macs)
        if name.startswith("keras/"):
            if "accuracy-reference" in ran:
                add("reference", n_val, "fp32")
            if "latency-reference" in ran and lat.get("runs"):
                add("reference", timed(lat), "fp32")
            continue
        slug = name.replace("/", "-")
        if f"accuracy-{slug}" in ran:
            add("accuracy", n_val, precision, per_image)
        if f"latency-{slug}" in ran and lat.get("runs"):
            add("latency", timed(lat), precision, per_image)
    for stage in STATISTICS_STAGES:
        if stage in ran and costs.get(stage, {}).get("self_wall_seconds", 1.0) >= 0.5:
            add("quantize", n_cal, "fp32")
    return {"seconds": seconds, "macs_per_image": macs, "validation_images": n_val, "calibration_images": n_cal,
            "peak_macs_per_s": peak, "isa": fp32["isa"], "clock_ghz": fp32["clock_ghz"], "cores": fp32["cores"]}


def _cold_wall(kind: dict) -> float:
    """A profile kind's wall seconds when it ran: its own, plus what its cached stages cost when they ran."""
    return kind.get("wall_seconds", 0.0) + kind.get("cached_cost_wall_seconds", 0.0)


def lines(report: dict, goal_seconds: float = 360.0) -> list[str]:
    found = floor(report)
    if found is None:
        return ["compute floor: no roofline record in this report (no peak row for this CPU, or no latency stage)"]
    by_kind = (report.get("profile") or {}).get("by_kind", {})
    out = [f"compute floor at this CPU's peak ({found['cores']} cores, {found['isa']}, {found['clock_ghz']} GHz; "
           f"{found['macs_per_image'] / 1e9:.2f} GMAC per image; {found['validation_images']} validation and "
           f"{found['calibration_images']} calibration images)",
           f"  {'kind':10} {'floor s':>8} {'cold wall s':>12} {'floor / wall':>13}"]
    total_floor = total_wall = 0.0
    for kind, secs in found["seconds"].items():
        wall = _cold_wall(by_kind.get(kind, {}))  # a warm report: the cold cost
        total_floor, total_wall = total_floor + secs, total_wall + wall
        out.append(f"  {kind:10} {secs:8.1f} {wall:12.1f} {f'{secs / wall:.2f}' if wall else '—':>13}")
    share = f"{total_floor / total_wall:.2f}" if total_wall else "—"
    out.append(f"  {'counted':10} {total_floor:8.1f} {total_wall:12.1f} {share:>13}")
    rest = {kind: _cold_wall(k) for kind, k in by_kind.items() if kind not in found["seconds"]}
    out.append(f"  not counted: {sum(rest.values()):.1f} s wall in stages of kind {', '.join(rest)}")
    out.append(f"  a cold run of {goal_seconds:.0f} s would leave {goal_seconds - total_floor:.0f} s for everything "
               f"else, with every counted pass at 100% of the peak")
    return out


def build_lines(report: dict, markers: dict[str, dict], goal_seconds: float = 120.0) -> list[str]:
    """The example's build against its floor: the backbone's features over the train split at the FP32 peak.
    `markers`: stage name (`elpv-features`, `elpv-xception`) -> its `_stage.json` in the example cache."""
    found = floor(report)
    feats, model = markers.get("elpv-features"), markers.get("elpv-xception")
    if found is None or feats is None or model is None:
        return ["example build: no cost recorded in the example cache, or no roofline record in the report"]
    n = feats["meta"]["train_images"]
    secs = n * found["macs_per_image"] / found["peak_macs_per_s"]["fp32"]
    f_wall, m_wall = feats["cost"]["self_wall_seconds"], model["cost"]["self_wall_seconds"]
    return [f"example build: {f_wall + m_wall:.1f} s wall (features of {n} train images {f_wall:.1f} s, decoding "
            f"included; the head and the model {m_wall:.1f} s)",
            f"  the features' floor at the FP32 peak: {secs:.1f} s ({secs / f_wall:.2f} of their wall); a build of "
            f"{goal_seconds:.0f} s would leave {goal_seconds - secs:.0f} s for decoding, the head and the model"]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.splitlines()[2].strip())
    print("\n".join(lines(json.loads(Path(sys.argv[1]).read_text()))))
