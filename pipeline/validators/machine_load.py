"""How busy the machine was around a latency measurement.

`snapshot()` reads the load average and the CPU tick counters of /proc/stat (total and steal) with a
UTC timestamp; `record(before, after)` is what a latency result keeps under `load`: both snapshots,
the share of CPU time stolen by the hypervisor between them (`steal_pct`), the core count, and
`busy` when the 1-minute load average exceeded the core count before or after the measurement.
A busy row's latency says as much about the neighbours as about the artifact; every renderer flags it.

Standard library only: it runs in the latency child, which imports nothing but the runtime.
"""

from __future__ import annotations

import datetime as dt
import os

PROC_STAT = "/proc/stat"


def cpu_ticks(path: str = PROC_STAT) -> dict | None:
    """{"total", "steal"} jiffies of the aggregate `cpu` line of /proc/stat; None where there is none."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("cpu "):
                    vals = [int(v) for v in line.split()[1:]]
                    # user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
                    return {"total": sum(vals[:8]), "steal": vals[7] if len(vals) > 7 else 0}
    except (OSError, ValueError):
        pass
    return None


def snapshot() -> dict:
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:  # not available on this platform
        load = None
    return {"time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "loadavg": load,
            "cpu_ticks": cpu_ticks()}


def steal_pct(before: dict, after: dict) -> float | None:
    """Percent of all CPU time between the two snapshots that was stolen (None without /proc/stat)."""
    b, a = before.get("cpu_ticks"), after.get("cpu_ticks")
    if not b or not a or a["total"] <= b["total"]:
        return None
    return round(100.0 * (a["steal"] - b["steal"]) / (a["total"] - b["total"]), 2)


def is_busy(before: dict, after: dict, cores: int | None) -> bool:
    """The 1-minute load average above the core count at either end of the measurement."""
    loads = [s["loadavg"][0] for s in (before, after) if s.get("loadavg")]
    return bool(cores) and any(v > cores for v in loads)


def record(before: dict, after: dict, cores: int | None = None) -> dict:
    cores = cores if cores is not None else os.cpu_count()
    return {"before": before, "after": after, "cores": cores, "steal_pct": steal_pct(before, after),
            "busy": is_busy(before, after, cores)}
