"""Session fixture shared by the reliability tests: a tiny tflite-arm run, interrupted twice through
the real CLI (SIGTERM, then kill -9, both in the middle of the INT8 conversion) and then resumed.
Its completed output is copied by other tests, so the suite pays for one cold run. Registered in
tests/conftest.py (`pytest_plugins`) so that every module shares the one session-scoped instance."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.core.cache import MARKER
from tests.conftest import tiny_config, write_config

ROOT = Path(__file__).resolve().parent.parent


def _start(cfg_path: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli.app", "run", str(cfg_path)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_stage_in_progress(proc: subprocess.Popen, stages: Path, name: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if list(stages.glob(f".tmp-{name}-*-{proc.pid}")):
            return
        if proc.poll() is not None:
            raise AssertionError(f"run ended (rc {proc.returncode}) before {name} started:\n{proc.stderr.read()}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"{name} did not start within {timeout} s")


def _complete_stages(stages: Path) -> set[str]:
    return {p.name for p in stages.iterdir() if (p / MARKER).is_file()}


@pytest.fixture(scope="session")
def resumed(tiny_assets, tmp_path_factory) -> dict:
    """Also the completed tiny tflite-arm output that other reliability tests copy (tests/test_probe.py,
    tests/test_bad_inputs.py), so the suite pays for one cold run."""
    d = tmp_path_factory.mktemp("interrupt")
    out = d / "out"
    cfg = tiny_config(tiny_assets, out, targets=[{"name": "tflite-arm"}])
    cfg_path = write_config(d / "pipeline.yaml", cfg)
    stages = out / "stages"
    facts: dict = {"dir": d, "out": out, "cfg": cfg}

    proc = _start(cfg_path)  # 1. SIGTERM while the INT8 conversion runs
    _wait_for_stage_in_progress(proc, stages, "tflite-int8")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    facts.update(term_rc=proc.returncode, term_err=err, term_leftovers=sorted(p.name for p in stages.glob(".tmp-*")),
                 term_complete=_complete_stages(stages), term_report=(out / "report.json").exists())

    proc = _start(cfg_path)  # 2. kill -9 at the same point: no chance to clean up
    _wait_for_stage_in_progress(proc, stages, "tflite-int8")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    facts.update(kill_rc=proc.returncode, kill_leftovers=sorted(p.name for p in stages.glob(".tmp-*")),
                 kill_complete=_complete_stages(stages))

    proc = _start(cfg_path)  # 3. the rerun
    _, err = proc.communicate(timeout=600)
    facts.update(rc=proc.returncode, err=err, report=json.loads((out / "report.json").read_text()))
    return facts


