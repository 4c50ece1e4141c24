"""Row 3: an artifact that hangs, exhausts memory or is killed by a signal is loaded and first-run
in a child process; the parent survives, the artifact becomes an error row, the others continue.

What this really exercises: `hang.tflite` is a genuine infinite WHILE loop inside LiteRT's kernels;
`big.tflite` genuinely needs 3.2 GB at allocate_tensors() and fails under the child's RLIMIT_AS;
the SIGXCPU case is the kernel killing the hanging child at its RLIMIT_CPU. A model that segfaults
LiteRT was not found (about 800 structurally valid mutated .tflite files all ran or failed cleanly),
so a segfault itself is covered only through the same signal path (`killed by SIG...`).
"""

from __future__ import annotations

import inspect
import json
import shutil
import time

import pytest
from typer.testing import CliRunner

from edgepipe import targets
from edgepipe.cli.app import app
from edgepipe.core.artifacts import Artifact
from edgepipe.engine.probe import ArtifactProbeError, ProbeLimits, probe
from tests.fixtures.configs import tiny_config, write_config
from tests.fixtures.model_files import BIG_TFLITE, HANG_TFLITE, TINY_TFLITE

pytestmark = pytest.mark.heavy(seconds=11)  # worker-seconds measured: longest first (tests/fixtures/scheduling.py)


def test_a_good_artifact_passes_and_reports_its_output():
    facts = probe(TINY_TFLITE, "tflite", limits=ProbeLimits(60, 2048))
    assert facts["output_shape"] == [4] and facts["runtime"] == "ai-edge-litert"


def test_a_hanging_artifact_is_killed_at_the_timeout():
    t0 = time.perf_counter()
    with pytest.raises(ArtifactProbeError, match=r"timeout 3 s.*Received: no answer after 3 s \(hung"):
        probe(HANG_TFLITE, "tflite", limits=ProbeLimits(timeout_s=3, memory_mb=2048, cpu_s=600))
    assert time.perf_counter() - t0 < 15


def test_a_child_killed_by_a_signal_is_reported_by_name():
    with pytest.raises(ArtifactProbeError, match=r"Received: the child was killed by SIGXCPU"):
        probe(HANG_TFLITE, "tflite", limits=ProbeLimits(timeout_s=60, memory_mb=2048, cpu_s=1))


def test_an_artifact_needing_more_memory_than_the_limit_fails_cleanly():
    with pytest.raises(ArtifactProbeError, match=r"memory limit 1024 MiB.*Received: RuntimeError"):
        probe(BIG_TFLITE, "tflite", limits=ProbeLimits(timeout_s=60, memory_mb=1024))


def test_every_target_can_build_its_runner_from_plain_data():
    """The probe rebuilds the validators' runner as make_runner(artifact, threads, **runner_params)."""
    for name in targets.REGISTRY:
        mod = targets.load_module(name)
        params = inspect.signature(mod.make_runner).parameters
        for job in mod.jobs(None, mod.Options()):
            assert set(job.runner_params) <= set(params), (name, job.runner_params, list(params))


@pytest.fixture(scope="module")
def shared_out(tmp_path_factory, resumed):
    out = tmp_path_factory.mktemp("probe-run") / "out"
    shutil.copytree(resumed["out"], out)  # a completed run: only the replaced artifact's stages run
    return out


def _record(out):
    return (out / "artifacts" / "tflite-arm-int8" / "artifact.json").read_bytes()


def _truncated(tmp_path):
    p = tmp_path / "truncated.tflite"
    p.write_bytes(TINY_TFLITE.read_bytes()[:1000])
    return p


@pytest.mark.parametrize("make_bad, limits, reason", [
    (lambda _: HANG_TFLITE, {"timeout_s": 4, "memory_mb": 4096}, "hung; the child was killed"),
    (lambda _: BIG_TFLITE, {"timeout_s": 60, "memory_mb": 1024}, "RuntimeError"),
    (_truncated, {}, "expected a complete, consistent TFLite flatbuffer"),  # caught before the child
], ids=["hang", "memory", "truncated"])
def test_the_run_survives_and_reports_the_bad_artifact(tmp_path, tiny_assets, monkeypatch, shared_out, make_bad,
                                                       limits, reason):
    """The tflite-arm/int8 stage's output is replaced by a bad model file; everything after is the real run."""
    from edgepipe.targets import tflite_arm

    bad = make_bad(tmp_path)

    def bad_int8(ctx, opts):
        return Artifact.from_files("tflite-arm/int8", "tflite-arm", "tflite", "int8", bad)

    monkeypatch.setattr(tflite_arm, "_int8", bad_int8)
    out = shared_out
    good_int8 = _record(out)
    cfg = tiny_config(tiny_assets, out, targets=[{"name": "tflite-arm"}], probe=limits)
    res = CliRunner().invoke(app, ["run", str(write_config(tmp_path / "p.yaml", cfg))], catch_exceptions=False)
    assert res.exit_code == 1, res.output
    rows = {r["artifact"]: r for r in json.loads((out / "report.json").read_text())["artifacts"]}
    assert rows["tflite-arm/fp32"]["status"] == "passed"
    assert rows["tflite-arm/int8"]["status"] == "error"
    assert reason in rows["tflite-arm/int8"]["reasons"][0] and str(bad) in rows["tflite-arm/int8"]["reasons"][0]
    assert _record(out) == good_int8  # the previous good INT8 artifact was not replaced by the bad one
    assert (out / "artifacts" / "tflite-arm-fp32" / "model_fp32.tflite").is_file()
