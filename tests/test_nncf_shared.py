"""One NNCF statistics pass for openvino-cpu and openvino-npu (pipeline/quantize/quantizers/nncf_shared.py): the
IRs are byte-identical to separate `nncf.quantize` calls, and in a run the CPU stage publishes the NPU stage."""

from __future__ import annotations

import json

import pytest

from edgepipe.core.hashing import sha256_file
from edgepipe.quantize.recipes import BUILTIN
from tests.fixtures.configs import tiny_config, tiny_split
from tests.fixtures.tiny_runs import seed_stages, stage_output

pytestmark = pytest.mark.heavy(seconds=14)  # worker-seconds measured: longest first (tests/fixtures/scheduling.py)


@pytest.fixture(scope="module")
def fp32_ir(tiny_full_run):
    return stage_output(tiny_full_run, "ov-ir-fp32", "model_fp32.xml")  # the tiny run's one FP32 IR


def test_one_pass_gives_the_same_irs_as_separate_nncf_quantize_calls(fp32_ir, tiny_assets, tmp_path):
    """The example's pair: 7-bit weights (overflow fix) for the CPU, NNCF's NPU hardware config for the NPU."""
    import openvino as ov

    from edgepipe.quantize.quantizers.nncf import nncf_arguments, op_names, quantize_nncf, save_quantized
    from edgepipe.quantize.quantizers.nncf_shared import quantize_shared

    calib = tiny_split(tiny_assets, "calibration").images
    jobs = [(BUILTIN["eq-sep-7bit"], "ANY"), (BUILTIN["eq-sep"], "NPU")]
    shared = quantize_shared(fp32_ir, calib, [(nncf_arguments(r), d) for r, d in jobs])
    for i, ((recipe, device), model) in enumerate(zip(jobs, shared, strict=True)):
        alone = quantize_nncf(fp32_ir, tmp_path, calib, recipe, device, name=f"alone{i}.xml")
        together = save_quantized(model, op_names(ov.Core().read_model(str(fp32_ir))), tmp_path / f"shared{i}.xml")
        assert sha256_file(together) == sha256_file(alone), device
        assert sha256_file(together.with_suffix(".bin")) == sha256_file(alone.with_suffix(".bin")), device
    assert sha256_file(tmp_path / "shared0.bin") != sha256_file(tmp_path / "shared1.bin")  # two configurations


def test_the_cpu_stage_publishes_the_npu_stage_of_the_same_ir(tiny_full_run, tiny_assets, fp32_ir, tmp_path):
    from typer.testing import CliRunner

    from edgepipe.cli.app import app
    from edgepipe.quantize.quantizers.nncf import quantize_nncf
    from tests.fixtures.configs import write_config

    seed_stages(tiny_full_run, tmp_path / "out", leave_out=("nncf-int8*",))
    cfg = tiny_config(tiny_assets, tmp_path / "out", targets=[
        {"name": "openvino-cpu", "options": {"precisions": ["int8"]}}, {"name": "openvino-npu"}])
    res = CliRunner().invoke(app, ["run", str(write_config(tmp_path / "p.yaml", cfg))], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    entries = [s for s in report["stages"] if s["stage"].startswith("nncf-int8")]
    assert [(s["stage"], s["cached"]) for s in entries] == [("nncf-int8-npu", False), ("nncf-int8", False)], entries
    stages = tmp_path / "out" / "stages"
    (npu_dir,) = stages.glob("nncf-int8-npu-*")
    (cpu_dir,) = [d for d in stages.glob("nncf-int8-*") if d != npu_dir]
    assert json.loads((cpu_dir / "_stage.json").read_text())["meta"]["statistics_shared_with"] == ["nncf-int8-npu"]
    assert json.loads((npu_dir / "_stage.json").read_text())["meta"]["statistics_from"] == "nncf-int8"
    rows = {r["artifact"]: r for r in report["artifacts"]}
    assert rows["openvino-npu/int8"]["accuracy"]["n_images"] == 54
    # the same IR openvino-npu's own `nncf.quantize` call makes
    alone = quantize_nncf(fp32_ir, tmp_path, tiny_split(tiny_assets, "calibration").images, BUILTIN["default"], "NPU",
                          name="alone.xml")
    assert sha256_file(npu_dir / "model_int8.xml") == sha256_file(alone)
    assert sha256_file(npu_dir / "model_int8.bin") == sha256_file(alone.with_suffix(".bin"))


def test_nncf_internals_that_moved_fall_back_to_one_call_per_stage(tmp_path, monkeypatch, caplog):
    """If NNCF's internals the shared pass uses are gone (another NNCF), each stage quantizes on its own, and
    the log says so: nothing fails and nothing is published for the partner."""
    import logging
    from types import SimpleNamespace

    from edgepipe.quantize.quantizers import nncf, nncf_shared

    caplog.set_level(logging.WARNING, logger="edgepipe")  # whatever level an earlier run left on the root

    def moved(*_a, **_k):
        raise AttributeError("'PostTrainingQuantization' object has no attribute '_pipeline'")

    calls, stages = [], []
    monkeypatch.setattr(nncf_shared, "quantize_shared", moved)
    monkeypatch.setattr(nncf, "quantize_nncf", lambda ir, out, calib, recipe, target_device: calls.append(
        target_device) or (out / "model_int8.xml"))

    class Ctx:
        def is_cached(self, name, params):
            return False

        def stage(self, name, params, fn):
            stages.append(name)
            return SimpleNamespace(name=name, meta=fn(tmp_path))

    ir = SimpleNamespace(key="IR", path=tmp_path, meta={"file": "model_fp32.xml"})
    calib = SimpleNamespace(sha256="c", images=None)
    res, _ = nncf.int8_stage(Ctx(), ir, BUILTIN["eq-sep-7bit"], calib, "ANY", ((BUILTIN["eq-sep"], "NPU"),))
    assert calls == ["ANY"] and stages == ["nncf-int8"] and res.meta == {"file": "model_int8.xml"}
    assert "one NNCF statistics pass for ['nncf-int8', 'nncf-int8-npu'] is not available" in caplog.text
