"""Confidence intervals: a paired bootstrap for accuracy differences, a Wilson score interval for
one accuracy, an order-statistic (distribution-free) interval for a median. Pure numpy, fixed
seeds: the same inputs give the same interval on every run."""

from __future__ import annotations

import math

import numpy as np

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


def paired_bootstrap_diff(a: np.ndarray, b: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES,
                          seed: int = BOOTSTRAP_SEED, level: float = 0.95) -> tuple[float, float]:
    """Percentile CI of mean(a) - mean(b) over images resampled with replacement, the same
    images for both (a paired bootstrap: both models are scored on each resample)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"paired bootstrap: expected two equal-length 1-D arrays. Received: {a.shape}, {b.shape}")
    rng = np.random.default_rng(seed)
    diff = a - b
    stats = np.empty(resamples)
    chunk = max(1, 2_000_000 // len(diff))  # bound memory for large sets
    for start in range(0, resamples, chunk):
        n = min(chunk, resamples - start)
        idx = rng.integers(0, len(diff), size=(n, len(diff)))
        stats[start:start + n] = diff[idx].mean(axis=1)
    alpha = (1.0 - level) / 2
    lo, hi = np.quantile(stats, [alpha, 1 - alpha])
    return float(lo), float(hi)


def median_ci_ranks(n: int, level: float = 0.95) -> tuple[int, int]:
    """0-based ranks (j, k) of the sorted sample such that [x_(j), x_(k)] covers the
    population median with probability >= level (binomial order statistics)."""
    if n < 6:
        return 0, n - 1
    cdf = 0.0
    cdfs = []
    for i in range(n + 1):
        cdf += math.comb(n, i) * 0.5 ** n
        cdfs.append(cdf)
    alpha = (1.0 - level) / 2
    # coverage of [x_(j), x_(n-1-j)] is 1 - 2 P(B <= j), B ~ Bin(n, 1/2): the largest such j
    j = 0
    while j + 1 < n // 2 and cdfs[j + 1] <= alpha:
        j += 1
    k = n - 1 - j
    return j, k


def median_ci(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    x = np.sort(np.asarray(samples, dtype=np.float64))
    j, k = median_ci_ranks(len(x), level)
    return float(x[j]), float(x[k])


def wilson_ci(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (e.g. top-1 accuracy on n images): inside [0, 1], and
    sensible at 0 or n successes, where the normal approximation collapses to a point."""
    if n <= 0:
        raise ValueError(f"wilson_ci: expected n > 0 trials. Received: {n}")
    z = {0.9: 1.6448536269514722, 0.95: 1.959963984540054, 0.99: 2.5758293035489004}[level]
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    return (0.0 if successes == 0 else lo), (1.0 if successes == n else hi)
