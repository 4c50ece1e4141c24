"""The Python API, importable as `edgepipe` from anywhere (also from a folder holding a user's own
`pipeline.py`, `targets.py` and `calibration.py`, which the installed distribution must not collide with)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import edgepipe
from tests.fixtures.configs import tiny_config


def test_import_edgepipe_from_a_folder_with_generic_module_names(tmp_path):
    for name in ("pipeline", "targets", "calibration"):
        (tmp_path / f"{name}.py").write_text(f"raise SystemExit('the user\\'s own {name}.py was imported')\n")
    code = ("import json, edgepipe; from edgepipe.run.orchestrate import run_pipeline; "
            "print(json.dumps([edgepipe.__version__, [t['name'] for t in edgepipe.targets()]]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    version, names = json.loads(out.stdout.strip().splitlines()[-1])
    assert version == edgepipe.__version__ and "tflite-arm" in names and "onnx-cpu" in names


def test_the_distribution_installs_one_top_level_package():
    from importlib.metadata import files

    tops = {f.parts[0] for f in files("edgepipe") or () if f.suffix == ".py" and len(f.parts) > 1}
    tops -= {p for p in tops if p.endswith((".dist-info", ".egg-info")) or p.startswith("__")}
    assert tops <= {"edgepipe"}, tops


def test_import_is_light():
    code = ("import sys, edgepipe; edgepipe.targets(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'keras', 'openvino', 'nncf', 'onnx', 'onnxruntime')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_run_a_dict_config_with_an_in_memory_keras_model(tiny_assets, tmp_path):
    """`edgepipe.run(dict, model=keras.Model)` returns a typed report whose rows are report.json's."""
    import keras

    model = keras.models.load_model(tiny_assets["model"])
    cfg = tiny_config(tiny_assets, tmp_path / "out", targets=[{"name": "tflite-arm", "options": {"precisions": ["fp32"]}}])
    report = edgepipe.run(cfg, model=model)
    assert isinstance(report, edgepipe.Report) and report.exit_code == 0
    on_disk = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [r.to_json() for r in report.rows] == on_disk["artifacts"]
    row = report.row("tflite-arm/fp32")
    assert row.status == "passed" and row.accuracy["top1"] > 0.5
    with pytest.raises(KeyError, match="expected an artifact of this run"):
        report.row("no-such/artifact")
    art = tmp_path / "out" / "artifacts" / "tflite-arm-fp32" / "model_fp32.tflite"
    assert edgepipe.validate(art, data=tiny_assets["data"], limit=20)["accuracy"]["top1"] > 0.5


def test_bad_config_type_is_a_clear_error():
    from edgepipe.core.errors import ConfigError

    with pytest.raises(ConfigError, match="expected a pipeline.yaml path, 'example:NAME', a dict or a PipelineConfig"):
        edgepipe.run(42)
