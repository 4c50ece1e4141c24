"""Where a run's time went: every stage mapped to its kind (one table, `KINDS`), summed by kind.

The profile is plain JSON for report.json (`profile`) and `benchmarks/bench_elpv.py`. Per kind: how
many of its stages ran and how many were cached, their own wall and CPU seconds (stages nested in
a stage and loads inside it are counted once, where they are), and for the cached ones what they
cost when they ran (so a warm run says what the cache saved). CPU seconds are the process's and
its waited-for children's user + system time (`pipeline/core/timing.py`): on a shared machine
wall time is noisy, CPU time much less so. Stages that ran in another executor worker carry the
cost measured there.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from edgepipe.reports.numbers import fmt, rounded

# stage name pattern -> kind; the first match wins (so the reference's stages come before `accuracy-*`)
KINDS: tuple[tuple[str, str], ...] = (
    ("accuracy-reference", "reference"),
    ("latency-reference", "reference"),
    ("savedmodel", "convert"),
    ("savedmodel-equalized", "quantize"),  # a recipe's equalization: statistics over the calibration images
    ("savedmodel-finetuned", "quantize"),  # a recipe's quantization-aware fine-tuning
    ("tflite-fp32", "convert"),
    ("ov-ir-*", "convert"),
    ("onnx-fp32", "convert"),
    ("ov-cpu-blob-*", "compile"),
    ("ov-npu-blob", "compile"),
    ("edgetpu-compile", "compile"),
    ("tflite-int8*", "quantize"),
    ("nncf-int8*", "quantize"),
    ("onnx-qdq-int8*", "quantize"),
    ("control-*", "quantize"),  # an accuracy budget's search on the control images
    ("probe-*", "probe"),
    ("accuracy-*", "accuracy"),
    ("latency-*", "latency"),
    ("layers-*", "diagnose"),
    ("arm64-*", "emulate"),
    ("bench-*", "benchmark"),
)
ORDER = ("load", "reference", "convert", "quantize", "compile", "probe", "accuracy", "latency", "diagnose",
         "emulate", "benchmark", "other")


def kind_of(stage: str) -> str:
    return next((kind for pattern, kind in KINDS if fnmatchcase(stage, pattern)), "other")


def _r(x: float) -> float:
    return rounded(x, 2)


def profile(events, spans, run_wall: float, run_cpu: float, load_average: tuple | None = None) -> dict:
    """The `profile` entry of report.json from the cache's events (StageResult) and spans (loads)."""
    kinds: dict[str, dict] = {}

    def slot(kind: str) -> dict:
        return kinds.setdefault(kind, {"ran": 0, "cached": 0, "wall_seconds": 0.0, "cpu_seconds": 0.0,
                                       "cached_cost_wall_seconds": 0.0, "cached_cost_cpu_seconds": 0.0})

    stages, own_wall, own_cpu = [], 0.0, 0.0
    for e in events:
        kind = kind_of(e.name)
        k = slot(kind)
        row = {"stage": e.name, "kind": kind, "cached": e.cached}
        if e.cached:
            k["cached"] += 1
            if e.cost is not None:
                k["cached_cost_wall_seconds"] += e.cost.self_wall
                k["cached_cost_cpu_seconds"] += e.cost.self_cpu
                row["cost_when_it_ran"] = e.cost.to_json()
        else:
            k["ran"] += 1
            cost = e.cost
            wall, cpu = (cost.self_wall, cost.self_cpu) if cost is not None else (e.seconds, 0.0)
            k["wall_seconds"] += wall
            k["cpu_seconds"] += cpu
            own_wall, own_cpu = own_wall + wall, own_cpu + cpu
            if cost is not None:
                row.update(cost.to_json())
        stages.append(row)
    loads = []
    for s in spans:
        k = slot(s.kind)
        k["ran"] += 1
        k["wall_seconds"] += s.cost.self_wall
        k["cpu_seconds"] += s.cost.self_cpu
        own_wall, own_cpu = own_wall + s.cost.self_wall, own_cpu + s.cost.self_cpu
        loads.append({"what": s.name, "kind": s.kind, **s.cost.to_json()})
    by_kind = {name: {key: (_r(v) if isinstance(v, float) else v) for key, v in kinds[name].items()}
               for name in sorted(kinds, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))}
    out = {
        "by_kind": by_kind,
        "run": {"wall_seconds": _r(run_wall), "cpu_seconds": _r(run_cpu)},
        "outside_stages": {"wall_seconds": _r(max(0.0, run_wall - own_wall)),
                           "cpu_seconds": _r(max(0.0, run_cpu - own_cpu))},
        "stages": stages,
        "loads": loads,
        "cpu": "user + system seconds of the process and its waited-for children (os.times)",
    }
    if load_average is not None:
        out["load_average"] = [round(v, 2) for v in load_average]
    return out


def lines(prof: dict) -> list[str]:
    """One line per kind, then the work outside stages and the whole run: wall and CPU seconds, ran / cached."""
    def line(what: str, wall, cpu, note: str) -> str:
        return f"{what.ljust(11)}{fmt(wall, '8.1f')} s wall {fmt(cpu, '8.1f')} s cpu  {note}"

    out = []
    for kind, k in prof["by_kind"].items():
        cached = f", {k['cached']} cached (cost {fmt(k['cached_cost_wall_seconds'], '.1f')} s when they ran)" \
            if k["cached"] else ""
        out.append(line(kind, k["wall_seconds"], k["cpu_seconds"], f"({k['ran']} ran{cached})"))
    outside, run = prof["outside_stages"], prof["run"]
    out.append(line("other", outside["wall_seconds"], outside["cpu_seconds"],
                    "(outside stages and loads: imports, publishing, reports)"))
    out.append(line("run", run["wall_seconds"], run["cpu_seconds"], ""))
    return out
