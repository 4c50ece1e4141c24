"""Wall and CPU seconds of nested spans of work (stages, loads): what a run's time profile is made of.

CPU seconds are the process's user + system time plus that of its children that were waited for
(`os.times`), so the child processes of a stage (probe, latency) count toward it. Spans nest: a
stage that runs another stage, or loads the validation images, contains them. A span's own
("self") time excludes the spans nested in it, so self times add up without counting anything twice.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


def cpu_seconds() -> float:
    """User + system seconds of this process and its waited-for children so far."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@dataclass(frozen=True)
class Cost:
    """What a span took: inclusive wall and CPU seconds, and its own share (nested spans excluded)."""

    wall: float
    cpu: float
    self_wall: float
    self_cpu: float

    def to_json(self) -> dict:
        return {"wall_seconds": round(self.wall, 3), "cpu_seconds": round(self.cpu, 3),
                "self_wall_seconds": round(self.self_wall, 3), "self_cpu_seconds": round(self.self_cpu, 3)}

    @classmethod
    def from_json(cls, d: dict | None) -> Cost | None:
        if not d or "wall_seconds" not in d:
            return None
        return cls(d["wall_seconds"], d.get("cpu_seconds", 0.0), d.get("self_wall_seconds", d["wall_seconds"]),
                   d.get("self_cpu_seconds", d.get("cpu_seconds", 0.0)))


@dataclass(frozen=True)
class Span:
    """A measured piece of work that is not a stage (loading images or the model): `kind` "load"."""

    name: str
    kind: str
    cost: Cost


@dataclass
class Measured:
    """Filled in when its `Clock.span` closes."""

    cost: Cost | None = None


@dataclass
class Clock:
    """The open spans of one process, innermost last: each frame is [wall0, cpu0, nested wall, nested cpu]."""

    frames: list[list[float]] = field(default_factory=list)

    @contextmanager
    def span(self) -> Iterator[Measured]:
        m = Measured()
        frame = [time.perf_counter(), cpu_seconds(), 0.0, 0.0]
        self.frames.append(frame)
        try:
            yield m
        finally:
            wall, cpu = time.perf_counter() - frame[0], cpu_seconds() - frame[1]
            self.frames.pop()
            if self.frames:  # the enclosing span does not count this one as its own time
                self.frames[-1][2] += wall
                self.frames[-1][3] += cpu
            m.cost = Cost(wall, cpu, max(0.0, wall - frame[2]), max(0.0, cpu - frame[3]))
