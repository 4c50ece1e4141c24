"""Latency on real preprocessed images: load, first inference, warmup, timed runs."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def measure(make_runner: Callable[[], object], images: np.ndarray, warmup: int, runs: int, progress=None) -> dict:
    t0 = time.perf_counter()
    runner = make_runner()
    load_ms = (time.perf_counter() - t0) * 1e3
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
    return {
        "load_ms": load_ms,
        "first_ms": first_ms,
        "warmup": warmup,
        "runs": runs,
        "p50_ms": float(np.percentile(times, 50)),
        "p90_ms": float(np.percentile(times, 90)),
        "mean_ms": float(times.mean()),
        "min_ms": float(times.min()),
        "runtime": getattr(runner, "runtime", None),
        **getattr(runner, "info", {}),
    }
