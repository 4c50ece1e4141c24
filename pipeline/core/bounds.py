"""Bounds on the numbers a config file or a command line may give, so no value can start 10,000
threads, allocate a terabyte or loop for days before anything says no.

`Threads` (at most `THREADS_PER_CORE` x this host's cores), `InputSide`, `Runs`, `Warmup`,
`Images` and `CalibrationImages` are pydantic types the schemas use; `check_threads` is the same
rule for command-line options. A value out of range is refused with "expected ... Received ...".
"""

from __future__ import annotations

import os
from typing import Annotated

from pydantic import AfterValidator, Field

from edgepipe.core.errors import InputError, expected_received

THREADS_PER_CORE = 4
MAX_INPUT_SIDE = 2048  # pixels; Xception takes 299, and 2048 x 2048 x 3 float32 is already 48 MiB per image
MAX_RUNS = 100_000  # timed latency runs
MAX_WARMUP = 10_000
MAX_IMAGES = 1_000_000  # images in one subset
MAX_CALIBRATION = 100_000  # calibration / sample images
MAX_SEED = 2**63 - 1


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def max_threads() -> int:
    return THREADS_PER_CORE * cores()


def threads_problem(n: int) -> str | None:
    top = max_threads()
    if n > top:
        return (f"expected at most {THREADS_PER_CORE} x the {cores()} cores of this host = {top} threads. "
                f"Received: {n}")
    return None


def _threads(n: int) -> int:
    problem = threads_problem(n)
    if problem:
        raise ValueError(problem)
    return n


def check_threads(n: int, what: str = "--threads") -> int:
    """The `Threads` rule for a command-line option: an InputError (exit 2) when out of range."""
    if n < 1:
        raise InputError(expected_received(what, "a positive number of threads", n))
    problem = threads_problem(n)
    if problem:
        raise InputError(f"{what}: {problem}")
    return n


Threads = Annotated[int, Field(ge=1), AfterValidator(_threads)]
InputSide = Annotated[int, Field(ge=1, le=MAX_INPUT_SIDE)]
Runs = Annotated[int, Field(le=MAX_RUNS)]
Warmup = Annotated[int, Field(ge=0, le=MAX_WARMUP)]
Images = Annotated[int, Field(ge=1, le=MAX_IMAGES)]
CalibrationImages = Annotated[int, Field(ge=1, le=MAX_CALIBRATION)]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
