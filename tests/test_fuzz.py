"""Fuzz (bounded, deterministic, in the default suite): mutated tiny .tflite / .onnx / config / labels files.

The property: validating a mutated file either accepts it or raises an EdgepipeError, and a model
that passes the structural check is loaded and first-run only in the child process of
`pipeline/engine/probe.py` (which either succeeds or raises an EdgepipeError). Any other exception, or a
crash of this (the parent) process, fails the test. 20 + 12 + 15 + 10 examples.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edgepipe.config.schema import load_config
from edgepipe.core.errors import EdgepipeError
from edgepipe.core.labels import read_labels
from edgepipe.engine.probe import ProbeLimits, probe
from edgepipe.formats.inspect import check_model_file
from tests.fixtures.model_files import TINY_TFLITE, tiny_onnx

LIMITS = ProbeLimits(timeout_s=20, memory_mb=4096)
def fuzz(n: int) -> settings:
    return settings(max_examples=n, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


# single-byte edits dominate: they are the ones that can slip past the structural check
edits = st.lists(st.tuples(st.sampled_from(["flip"] * 4 + ["set"] * 4 + ["truncate", "insert", "delete"]),
                           st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=3)
OUTCOMES: dict[str, Counter] = {"tflite": Counter(), "onnx": Counter()}


def mutate(data: bytes, ops) -> bytes:
    b = bytearray(data)
    for op, where, value in ops:
        i = int(where * max(1, len(b)))
        if op == "truncate":
            del b[i:]
        elif op == "insert":
            b[i:i] = bytes([value]) * (1 + value % 8)
        elif b and op == "delete":
            del b[min(i, len(b) - 1)]
        elif b and op == "flip":
            b[min(i, len(b) - 1)] ^= 1 << (value % 8)
        elif b:
            b[min(i, len(b) - 1)] = value
    return bytes(b)


def check_then_probe(path: Path, fmt: str) -> str:
    try:
        check_model_file(path, fmt)
    except EdgepipeError:
        return "rejected"
    try:
        probe(path, fmt, threads=1, limits=LIMITS)
    except EdgepipeError:
        return "failed in the child"
    return "ran"


@pytest.fixture(scope="module")
def onnx_seed(tmp_path_factory) -> bytes:
    return tiny_onnx(tmp_path_factory.mktemp("seed") / "tiny.onnx").read_bytes()


@fuzz(20)
@given(ops=edits)
@example(ops=[("flip", 0.5, 6)])  # a bit inside the weights: passes the check, runs in the child
@example(ops=[("truncate", 0.5, 0)])
def test_mutated_tflite(tmp_path, ops):
    p = tmp_path / "m.tflite"
    p.write_bytes(mutate(TINY_TFLITE.read_bytes(), ops))
    OUTCOMES["tflite"][check_then_probe(p, "tflite")] += 1


@fuzz(12)
@given(ops=edits)
@example(ops=[("flip", 0.5, 6)])
@example(ops=[("truncate", 0.5, 0)])
def test_mutated_onnx(tmp_path, onnx_seed, ops):
    p = tmp_path / "m.onnx"
    p.write_bytes(mutate(onnx_seed, ops))
    OUTCOMES["onnx"][check_then_probe(p, "onnx")] += 1


CONFIG = yaml.safe_dump({
    "model": {"path": "m.keras"}, "input": {"size": [71, 71], "preprocessing": "xception"},
    "data": {"labels": ["a", "b"], "calibration": {"source": "data", "split": "calibration"},
             "validation": {"source": "data", "split": "test"}},
    "targets": [{"name": "tflite-arm", "options": {"int8_io": True}}, {"name": "openvino-cpu"}],
    "latency": {"runs": 50}, "probe": {"timeout_s": 60},
}).encode()


@fuzz(15)
@given(ops=edits)
def test_mutated_config(tmp_path, ops):
    p = tmp_path / "pipeline.yaml"
    p.write_bytes(mutate(CONFIG, ops))
    try:
        load_config(p)
    except EdgepipeError:
        pass


@fuzz(10)
@given(ops=edits)
def test_mutated_labels(tmp_path, ops):
    p = tmp_path / "labels.txt"
    p.write_bytes(mutate(b"functional\npossibly_defective\nlikely_defective\ndefective\n", ops))
    try:
        assert all(isinstance(x, str) and x for x in read_labels(p))
    except EdgepipeError:
        pass


def test_the_fuzz_reached_both_the_validator_and_the_child():
    """Guard against a fuzz that only ever exercises one path (e.g. every mutation rejected)."""
    if not sum(OUTCOMES["tflite"].values()):
        pytest.skip("run together with the fuzz tests above")
    for fmt, seen in OUTCOMES.items():
        assert seen["rejected"] > 0 and seen["ran"] + seen["failed in the child"] > 0, (fmt, dict(seen))
