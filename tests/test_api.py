"""The Python API, importable as `edgepipe` from anywhere (also from a folder holding a user's own
`pipeline.py`, `targets.py` and `calibration.py`, which the installed distribution must not collide with)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import edgepipe
from tests.fixtures.configs import tiny_config
from tests.fixtures.tiny_runs import seed_stages

pytestmark = pytest.mark.heavy(seconds=11)  # worker-seconds measured: longest first (tests/fixtures/scheduling.py)

ROOT = Path(__file__).resolve().parents[1]


def test_import_edgepipe_from_a_folder_with_generic_module_names(tmp_path):
    for name in ("pipeline", "targets", "calibration"):
        (tmp_path / f"{name}.py").write_text(f"raise SystemExit('the user\\'s own {name}.py was imported')\n")
    code = ("import json, edgepipe; from edgepipe.engine.orchestrate import run_pipeline; "
            "print(json.dumps([edgepipe.__version__, [t['name'] for t in edgepipe.targets()]]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    version, names = json.loads(out.stdout.strip().splitlines()[-1])
    assert version == edgepipe.__version__ and "tflite-arm" in names and "onnx-cpu" in names


def test_the_distribution_installs_one_top_level_package(tmp_path):
    """The wheel built from this tree holds one top-level package, edgepipe (pipeline/, targets/ and
    calibration/ mapped under it), plus its metadata and nothing else."""
    import shutil
    import zipfile
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    src = tmp_path / "src"  # a copy: setuptools writes build/ and *.egg-info into the tree it builds
    for name in ("pipeline", "targets", "calibration"):
        shutil.copytree(root / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--disable-pip-version-check",
                    "-w", str(tmp_path / "dist"), str(src)], check=True, capture_output=True, timeout=600)
    (wheel,) = (tmp_path / "dist").glob("edgepipe-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"edgepipe"}, tops
    for inside in ("edgepipe/targets/tflite_arm.py", "edgepipe/calibration/preprocess.py",
                   "edgepipe/boards/device_runner.py", "edgepipe/examples/elpv-xception.yaml",
                   "edgepipe/reports/templates/report.html.j2"):
        assert inside in names


def test_import_is_light():
    code = ("import sys, edgepipe; edgepipe.targets(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'keras', 'openvino', 'nncf', 'onnx', 'onnxruntime')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_run_a_dict_config_with_an_in_memory_keras_model(tiny_assets, tiny_full_run, tmp_path):
    """`edgepipe.run(dict, model=keras.Model)` returns a typed report whose rows are report.json's. The model,
    saved again by `run`, is another .keras file (Keras writes the save time into it) holding the same model:
    the stages keyed on its content are the ones the session's cold run of the file made."""
    import keras

    model = keras.models.load_model(tiny_assets["model"])
    cfg = tiny_config(tiny_assets, tmp_path / "out",
                      targets=[{"name": "tflite-arm", "options": {"precisions": ["fp32"]}}])
    seed_stages(tiny_full_run, tmp_path / "out")
    report = edgepipe.run(cfg, model=model)
    assert isinstance(report, edgepipe.Report) and report.exit_code == 0
    on_disk = json.loads((tmp_path / "out" / "report.json").read_text())
    cold = tiny_full_run["report"]["model"]
    assert on_disk["model"]["sha256"] != cold["sha256"]  # another file ...
    assert on_disk["model"]["content_sha256"] == cold["content_sha256"]  # ... of the same model
    assert on_disk["stages"] and all(s["cached"] for s in on_disk["stages"]), on_disk["stages"]
    assert [r.to_json() for r in report.rows] == on_disk["artifacts"]
    row = report.row("tflite-arm/fp32")
    assert row.status == "passed" and row.accuracy["top1"] > 0.5
    with pytest.raises(KeyError, match="expected an artifact of this run"):
        report.row("no-such/artifact")
    art = tmp_path / "out" / "artifacts" / "tflite-arm-fp32" / "model_fp32.tflite"
    assert edgepipe.validate(art, data=tiny_assets["data"], limit=20)["accuracy"]["top1"] > 0.5


def test_bad_config_type_is_a_clear_error():
    import edgepipe.engine.orchestrate  # noqa: F401  (a loaded sub-package never hides the API's names)
    from edgepipe.core.errors import ConfigError

    assert callable(edgepipe.run) and callable(edgepipe.validate) and callable(edgepipe.targets)

    with pytest.raises(ConfigError, match="expected a pipeline.yaml path, 'example:NAME', a dict or a PipelineConfig"):
        edgepipe.run(42)


def test_the_documented_example_runs(tiny_assets, tiny_full_run, tmp_path):
    """examples/python_api.py, the README's notebook-sized example, on the tiny fixture (a real run)."""
    import runpy

    import yaml

    seed_stages(tiny_full_run, tmp_path / "out")  # the conversions are not what this test checks

    cfg = tiny_config(tiny_assets, tmp_path / "unused", targets=[{"name": "tflite-arm"}])
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(cfg))
    example = runpy.run_path(str(ROOT / "examples" / "python_api.py"))
    report, checked = example["main"](str(tiny_assets["model"]), str(tmp_path / "pipeline.yaml"),
                                      str(tmp_path / "out"), str(tiny_assets["data"]))
    assert report.exit_code == 0 and (tmp_path / "out" / "report.json").is_file()
    assert {r.artifact for r in report.rows} >= {"tflite-arm/fp32", "tflite-arm/int8"}
    assert checked is not None and 0.0 <= checked["accuracy"]["top1"] <= 1.0


def test_a_keras_files_content_hash_ignores_when_it_was_saved(tiny_assets, tmp_path):
    import zipfile

    import keras

    from edgepipe.core.hashing import sha256_file
    from edgepipe.formats.keras import content_sha256 as keras_content_sha256

    model = keras.saving.load_model(tiny_assets["model"], compile=False)
    a, b = tmp_path / "a.keras", tmp_path / "b.keras"
    model.save(a)
    with zipfile.ZipFile(a) as z:
        meta = json.loads(z.read("metadata.json"))
    meta["date_saved"] = "1999-01-01@00:00:00"  # as if saved at another time (a save takes under a second)
    with zipfile.ZipFile(a) as src, zipfile.ZipFile(b, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, json.dumps(meta) if info.filename == "metadata.json" else src.read(info))
    assert sha256_file(a) != sha256_file(b) and keras_content_sha256(a) == keras_content_sha256(b)
    # saved by another process, without the optimizer state the trained file holds: the same model
    assert keras_content_sha256(a) == keras_content_sha256(tiny_assets["model"]) and sha256_file(a) != \
        sha256_file(tiny_assets["model"])
    layer = model.layers[-1]
    layer.set_weights([w + 1e-3 for w in layer.get_weights()])
    model.save(b)
    assert keras_content_sha256(b) != keras_content_sha256(a)  # other weights: another model
    (tmp_path / "not-a-zip.keras").write_bytes(b"not a zip")
    assert keras_content_sha256(tmp_path / "not-a-zip.keras") == sha256_file(tmp_path / "not-a-zip.keras")
