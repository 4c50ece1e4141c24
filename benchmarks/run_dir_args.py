"""The command line the side-by-side benches over an `edgepipe run` output share (bench_runtime.py,
bench_latency.py): the run directory, and the rounds, runs, warmup and threads of the measurement."""

from __future__ import annotations

import argparse
from pathlib import Path


def parser(doc: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--output", type=Path, required=True, help="an edgepipe run output of the example")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    return ap
