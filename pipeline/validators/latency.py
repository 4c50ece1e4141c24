"""Latency on real preprocessed images: load, first inference, warmup, steady state.

Steady state is summarised as p50/p90/p99/mean with a 95% CI on the median (order
statistics: no distribution assumed) and on the mean (bootstrap), and single-stream
throughput. End-to-end time (decode + resize + scale from the image file, then inference)
is measured separately, so preprocessing is never hidden in or left out of a number. The raw
steady-state timings are kept (`timings_ms`, at most MAX_TIMINGS) and so is the machine's load
around the measurement (`load`: load average and CPU steal before and after, `busy`; see
`machine_load.py`). Neither is part of a cache key: a cached result from before simply lacks them.

`measure` runs in this process (used for the Keras reference). Deployment artifacts are
measured in a fresh child process (`latency_child`), so its peak RSS is that of a process
that holds only the runtime, the model and its inputs. `gate` is the `max_p90_ms` gate; the
registry's entry, `LatencyValidator`, is in `latency_stage.py` (the cached stage).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np

from edgepipe.validators import machine_load, stats

PROTOCOL = 3  # bump when the measurement changes: part of the cache key
SWEEP_KEYS = ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "p50_ci95_ms", "throughput_ips", "peak_rss_mb")
MAX_TIMINGS = 1000  # raw steady-state timings kept in the result (for the report's distribution chart)


def gate(gates, latency: dict | None) -> list[str]:
    """`max_p90_ms` on the steady-state p90 (nothing to judge when latency was not measured)."""
    if gates.max_p90_ms is None or not latency or not latency["p90_ms"] > gates.max_p90_ms:
        return []
    return [f"p90 {latency['p90_ms']:.1f} ms > max_p90_ms {gates.max_p90_ms:g}"]


def summarize(times_ms: np.ndarray, prefix: str = "") -> dict:
    t = np.asarray(times_ms, dtype=np.float64)
    p50, p90, p99 = (float(v) for v in np.percentile(t, [50, 90, 99]))
    lo, hi = stats.median_ci(t)
    rng = np.random.default_rng(stats.BOOTSTRAP_SEED)
    means = t[rng.integers(0, len(t), size=(stats.BOOTSTRAP_RESAMPLES, len(t)))].mean(axis=1)
    out = {
        "p50_ms": p50, "p90_ms": p90, "p99_ms": p99,
        "mean_ms": float(t.mean()), "std_ms": float(t.std(ddof=1)) if len(t) > 1 else 0.0,
        "min_ms": float(t.min()), "max_ms": float(t.max()),
        "p50_ci95_ms": [lo, hi],
        "mean_ci95_ms": [float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))],
    }
    return {f"{prefix}{k}": v for k, v in out.items()}


def kept_timings(times_ms: np.ndarray, limit: int = MAX_TIMINGS) -> list[float]:
    """The raw timings in run order, every k-th one when there are more than `limit` (0.1 us resolution)."""
    t = np.asarray(times_ms, dtype=np.float64)
    step = max(1, -(-len(t) // limit))
    return [round(float(v), 4) for v in t[::step]]


def time_runner(runner, images: np.ndarray, warmup: int, runs: int, progress=None) -> dict:
    """First inference, warmup, then `runs` timed single-image inferences cycling over `images`."""
    t0 = time.perf_counter()
    runner.predict(images[0])
    first_ms = (time.perf_counter() - t0) * 1e3
    for i in range(warmup):
        runner.predict(images[i % len(images)])
    times = np.empty(runs)
    for i in range(runs):
        img = images[i % len(images)]
        t0 = time.perf_counter()
        runner.predict(img)
        times[i] = (time.perf_counter() - t0) * 1e3
        if progress:
            progress(1)
    res = {"first_ms": first_ms, "warmup": warmup, "runs": runs, "images": int(min(runs, len(images))),
           **summarize(times)}
    res["throughput_ips"] = 1e3 / res["mean_ms"]  # single stream, batch 1
    res["timings_ms"] = kept_timings(times)
    return res


def side_by_side(runners: dict, images: np.ndarray, rounds: int = 3, warmup: int = 3, runs: int = 20,
                 between=None, on_round=None) -> dict:
    """p50 of several runners measured in one process, `rounds` rounds in a rotated order (each round
    starts with the next runner), so drift in the machine's load falls on all of them alike. Returns per
    runner the median of its rounds' p50s and every round's p50, plus the CPU and the load around it.
    `between()` runs after each runner's timing, outside it (e.g. `gc.collect`); `on_round(i, p50s)` after
    round i (0-based) with every runner's p50s so far (e.g. progress lines)."""
    from edgepipe.core.versions import cpu_model

    names = list(runners)
    p50s: dict[str, list[float]] = {n: [] for n in names}
    before = machine_load.snapshot()
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            p50s[name].append(time_runner(runners[name], images, warmup, runs)["p50_ms"])
            if between is not None:
                between()
        if on_round is not None:
            on_round(r, p50s)
    load = machine_load.record(before, machine_load.snapshot(), os.cpu_count())
    return {"rounds": rounds, "runs": runs, "cpu": cpu_model(), "load": load,
            "p50_ms": {n: float(np.median(v)) for n, v in p50s.items()}, "round_p50_ms": p50s}


def time_end_to_end(runner, spec, paths: list[str], runs: int, progress=None) -> dict:
    """Per run: read + decode + resize + scale one image file, then infer. Reported apart
    from the steady state, with the preprocessing share on its own."""
    pre = np.empty(runs)
    total = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        x = spec.load(paths[i % len(paths)])
        t1 = time.perf_counter()
        runner.predict(x)
        t2 = time.perf_counter()
        pre[i], total[i] = (t1 - t0) * 1e3, (t2 - t0) * 1e3
        if progress:
            progress(1)
    return {"runs": runs, **summarize(total), "preprocess_p50_ms": float(np.median(pre)),
            "preprocess_mean_ms": float(pre.mean())}


def _rss_mb() -> float:
    import psutil

    return psutil.Process(os.getpid()).memory_info().rss / 1e6


def measure(make_runner: Callable[[], object], images: np.ndarray, warmup: int, runs: int, progress=None,
            spec=None, paths: list[str] | None = None) -> dict:
    """In-process measurement. RSS is a delta (after - before loading), since this process
    also holds whatever else was loaded (TensorFlow, the data set)."""
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    runner = make_runner()
    load_ms = (time.perf_counter() - t0) * 1e3
    before = machine_load.snapshot()
    res = {"load_ms": load_ms, **time_runner(runner, images, warmup, runs, progress)}
    if spec is not None and paths:
        res["end_to_end"] = time_end_to_end(runner, spec, paths, runs)
    res.update(rss_scope="in-process delta", rss_delta_mb=_rss_mb() - rss0,
               runtime=getattr(runner, "runtime", None), **getattr(runner, "info", {}))
    res["load"] = machine_load.record(before, machine_load.snapshot())
    return res
