"""Cross-quantizer check: INT8 artifacts of different quantizers should agree on top-1.

Each INT8 artifact is compared with the median top-1 of the *other* INT8 artifacts (leave one
out, so two artifacts are enough and a single broken one cannot drag the median towards
itself). One more than `gates.cross_quantizer_max_gap` points below that median is flagged
and fails its gate: the typical sign of a broken quantizer or backend (a public conformance
run once saw Xception fall to 1% top-1 on one backend while the others kept 78%).

On small validation sets a few images are many points (one of 9 images is 11 points), so the
gap must also exceed NOISE_IMAGES images' worth of top-1 to count.

A run validator (`edgepipe.validators.base.RunValidator`): it reads every row of the run and returns
a result per INT8 row it compared (`cross_quantizer` in that row) with the flagged ones' gate failures;
the run makes the new, failed rows (`edgepipe.engine.orchestrate`).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping

from edgepipe.validators.base import RunVerdict, ValidatorResult

NAME = "cross_quantizer"
NOISE_IMAGES = 3


def compare(rows: list[Mapping], max_gap: float | None) -> RunVerdict:
    """Each INT8 row's gap to the median of the others (rows as report.json holds them; none is changed)."""
    int8 = [r for r in rows if r.get("precision") == "int8" and r.get("status") in ("passed", "failed")
            and (r.get("accuracy") or {}).get("top1") is not None]
    summary = {"max_gap_points": max_gap, "artifacts": [r["artifact"] for r in int8], "flagged": []}
    if max_gap is None or len(int8) < 2:
        summary["skipped"] = "disabled" if max_gap is None else "fewer than 2 INT8 artifacts"
        return RunVerdict(summary, {})
    results = {}
    for r in int8:
        others = [o["accuracy"]["top1"] for o in int8 if o is not r]
        median = statistics.median(others)
        top1 = r["accuracy"]["top1"]
        gap = 100.0 * (median - top1)
        n = r["accuracy"].get("n_images") or 0
        limit = max(max_gap, 100.0 * NOISE_IMAGES / n) if n else max_gap
        failures = []
        if gap > limit:
            why = f"cross_quantizer_max_gap {max_gap:g}" if limit == max_gap else \
                f"{limit:.1f} = {NOISE_IMAGES} of {n} images, the noise floor above cross_quantizer_max_gap {max_gap:g}"
            failures.append(f"cross-quantizer: top-1 {top1:.4f} is {gap:.1f} pts below the median "
                            f"{median:.4f} of the other INT8 artifacts (> {why})")
            summary["flagged"].append(r["artifact"])
        results[r["artifact"]] = ValidatorResult(NAME, {"median_others_top1": median, "gap_points": gap,
                                                        "limit_points": limit, "flagged": gap > limit}, failures)
    return RunVerdict(summary, results)


class CrossQuantizerValidator:
    """The registry's run-level entry: `gates.cross_quantizer_max_gap` over the run's INT8 rows."""

    name = NAME

    def run(self, gates, rows: list[Mapping]) -> RunVerdict:
        return compare(rows, gates.cross_quantizer_max_gap)
