"""The front door (issue 16): `edgepipe run MODEL --data DIR` with no YAML, `edgepipe init`, `edgepipe schema`,
a first run that ends green when a device target is not available here (exit 3 only with --strict or
`required: true`), toolkit log lines kept off stderr, the CLI conventions (--version, -h, --json on every
command, plain flags, -o/--output) and the extras.

One real run (the tiny Xception, tflite-arm + coral-edgetpu INT8, in a fresh interpreter as a user runs it);
every other run reuses its stage cache.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from edgepipe.cli.app import app
from tests.fixtures import tiny_xception
from tests.fixtures.cli import cli_probe

pytestmark = pytest.mark.heavy(seconds=25)  # worker-seconds measured: longest first (tests/fixtures/scheduling.py)

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
# what the toolkits print straight to fd 2 (measured on this project's machines before the filter)
TOOLKIT_LINES = [re.compile(p) for p in (
    r"absl::InitializeLog", r"^[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\]", r"cudart_stub|cuda_platform|cuInit",
    r"XNNPACK delegate", r"^fully_quantize:", r"^INFO:", r"Statistics collection")]


def _cli(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def one_line(tiny_assets, tmp_path_factory):
    """`edgepipe run MODEL --data DIR --targets tflite-arm,coral-edgetpu --int8 -o OUT --json` in a fresh
    interpreter (TF_CPP_MIN_LOG_LEVEL unset: edgepipe's own defaults). The class folders are named so that
    their sorted order is the order the tiny model was trained with."""
    d = tmp_path_factory.mktemp("oneline")
    data = d / "images"
    data.mkdir()
    for i, name in enumerate(tiny_xception.CLASSES):
        (data / f"{i}_{name}").symlink_to(Path(tiny_assets["data"]) / name, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "EDGEPIPE_VERBOSITY")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-m", "edgepipe.cli.app", "run", str(tiny_assets["model"]), "--data",
                           str(data), "--targets", "tflite-arm,coral-edgetpu", "--int8", "-o", str(d / "out"),
                           "--json"], capture_output=True, text=True, env=env, cwd=d, timeout=1800)
    return {"dir": d, "data": data, "out": d / "out", "proc": proc, "model": Path(tiny_assets["model"])}


def _no_compiler():
    from edgepipe import targets

    if targets.get("coral-edgetpu").host_status()["host"]["compiler"]:
        pytest.skip("this host has edgetpu_compiler: coral-edgetpu is available here")


def test_one_line_run_states_every_choice_and_ends_green(one_line):
    _no_compiler()
    proc = one_line["proc"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)  # stdout holds report.json and nothing else
    assert report["exit_code"] == 0 and report["strict"] is False
    rows = {r["artifact"]: r for r in report["artifacts"]}
    assert list(rows) == ["keras/fp32 (reference)", "tflite-arm/int8", "coral-edgetpu/int8"]
    assert rows["tflite-arm/int8"]["status"] == "passed"
    coral = rows["coral-edgetpu/int8"]
    assert coral["status"] == "partial" and coral["not_available_here"] is True
    assert report["not_available_here"] == ["coral-edgetpu/int8"]
    err = proc.stderr
    labels = [f"{i}_{n}" for i, n in enumerate(tiny_xception.CLASSES)]
    for line in ["input: 71x71, 3 channel(s), from the model's config.json",
                 f"labels: {labels} (the class folders of {one_line['data']}, sorted; pass --labels FILE if the "
                 "model's class order differs)",
                 "precision: int8 artifacts only (--int8)", f"output: {one_line['out']}"]:
        assert line in err.splitlines(), line
    assert any(ln.startswith("preprocessing: xception (") for ln in err.splitlines())
    assert any(ln.startswith(f"data: 180 images in {one_line['data']}: ") and "validates on 54" in ln
               for ln in err.splitlines())
    assert "coral-edgetpu/int8: not available here; to finish it:" in err  # the table is on stderr with --json
    assert f"config: {one_line['out'] / 'pipeline.yaml'}" in err


def test_no_toolkit_log_lines_reach_stderr(one_line):
    """TensorFlow, absl, LiteRT/XNNPACK and converter lines are dropped at the default verbosity, also with
    --json; edgepipe's own lines are all there (previous test)."""
    noisy = [ln for ln in one_line["proc"].stderr.splitlines() if any(p.search(ln) for p in TOOLKIT_LINES)]
    assert noisy == []


def test_written_config_repeats_the_run(one_line):
    from edgepipe.config.schema import load_config

    _no_compiler()
    path = one_line["out"] / "pipeline.yaml"
    text = path.read_text()
    assert text.startswith("# pipeline.yaml for tiny_xception.keras") and "# from the model's config.json" in text
    cfg = load_config(path)
    assert cfg.input.size == (71, 71) and cfg.data.labels == [f"{i}_{n}" for i, n in enumerate(tiny_xception.CLASSES)]
    assert Path(cfg.model.path) == one_line["model"] and Path(cfg.output) == one_line["out"]
    assert [t.name for t in cfg.targets] == ["tflite-arm", "coral-edgetpu"]
    first = json.loads(one_line["proc"].stdout)
    res = _cli("run", path)
    assert res.exit_code == 0, res.output
    again = json.loads((one_line["out"] / "report.json").read_text())
    assert again["stages"] and all(s["cached"] for s in again["stages"])  # the same run: every stage cached
    assert [(r["artifact"], r.get("sha256"), r["status"]) for r in again["artifacts"]] == \
        [(r["artifact"], r.get("sha256"), r["status"]) for r in first["artifacts"]]


def test_not_available_here_counts_only_when_strict_or_required(one_line):
    _no_compiler()
    path = one_line["out"] / "pipeline.yaml"
    res = _cli("run", path, "--strict")
    assert res.exit_code == 3, res.output
    assert json.loads((one_line["out"] / "report.json").read_text())["exit_code"] == 3
    raw = yaml.safe_load(path.read_text())
    for entry in raw["targets"]:
        entry["required"] = entry["name"] == "coral-edgetpu"
    required = one_line["dir"] / "required.yaml"
    required.write_text(yaml.safe_dump(raw))
    res = _cli("run", required)
    assert res.exit_code == 3, res.output
    report = json.loads((one_line["out"] / "report.json").read_text())
    assert report["exit_code"] == 3 and all(s["cached"] for s in report["stages"])
    html = (one_line["out"] / "report.html").read_text()
    assert "exit code 3" in html and "not available here: coral-edgetpu/int8 (they make the run partial" in html


def test_labels_that_do_not_match_the_model_exit_2_before_writing(one_line, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\n")
    res = _cli("run", one_line["model"], "--data", one_line["data"], "--labels", labels, "-o", tmp_path / "out")
    assert res.exit_code == 2
    assert "expected 3 classes, one per model output" in res.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, needle", [
    (["--data", "x"], "--data: expected a MODEL as the first argument"),
    (["--int8", "--targets", "tflite-arm"], "--targets, --int8/--fp32: expected a MODEL"),
])
def test_own_model_options_need_a_model(args, needle):
    res = _cli("run", ROOT / "examples" / "pipeline.yaml", *args, "--json")
    assert res.exit_code == 2 and needle in res.output
    assert json.loads(res.stdout)["exit_code"] == 2  # --json: the error as JSON too


def test_model_without_data_and_artifacts_are_refused(one_line, tmp_path):
    res = _cli("run", one_line["model"])
    assert res.exit_code == 2 and "--data: expected labeled images for tiny_xception.keras" in res.output
    tflite = ROOT / "tests" / "data" / "tiny.tflite"
    res = _cli("run", tflite, "--data", one_line["data"])
    assert res.exit_code == 2 and "`edgepipe validate` and `edgepipe bench` take converted artifacts" in res.output
    res = _cli("run", one_line["model"], "--data", one_line["data"], "--targets", "tflite-arm,nope")
    assert res.exit_code == 2 and "--targets: expected names from" in res.output


def test_source_is_decided_by_the_file(tmp_path, one_line):
    from edgepipe.core.errors import InputError
    from edgepipe.engine.from_model import source_kind

    cfg = tmp_path / "config"  # YAML without a suffix: sniffed as text
    cfg.write_text("model: {example: elpv-xception}\n")
    assert source_kind(cfg) == "config" and source_kind(one_line["model"]) == "model"
    renamed = tmp_path / "model.bin"  # a .keras archive under another name: sniffed as a zip
    renamed.write_bytes(one_line["model"].read_bytes())
    assert source_kind(renamed) == "model"
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="a pipeline.yaml, a .keras file or a SavedModel directory"):
        source_kind(tmp_path / "empty")


def test_model_shapes_are_read_without_loading_the_model(tmp_path, one_line):
    from tests.fixtures.model_files import tiny_savedmodel

    sm = tiny_savedmodel(tmp_path)
    probe = ("import sys, json; from edgepipe.formats import keras, savedmodel; "
             f"print(json.dumps([keras.io_shapes({str(one_line['model'])!r}), savedmodel.io_shapes({str(sm)!r}), "
             "sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))]))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    keras_io, sm_io, heavy = json.loads(out.stdout)
    assert keras_io == [[71, 71, 3], 3] and sm_io == [[8, 8, 3], 4] and heavy == []


def test_init_writes_a_commented_config_that_loads(one_line, tmp_path):
    from edgepipe.config.schema import load_config

    dest = tmp_path / "cfg" / "pipeline.yaml"
    dest.parent.mkdir()
    res = _cli("init", one_line["model"], "--data", one_line["data"], "--targets", "tflite-arm", "-o", dest)
    assert res.exit_code == 0, res.output
    cfg = load_config(dest)
    assert cfg.input.size == (71, 71) and [t.name for t in cfg.targets] == ["tflite-arm"]
    assert Path(cfg.output) == dest.parent / "edgepipe-out"  # relative to the file it wrote
    assert "# from the model's config.json" in dest.read_text()
    bare = tmp_path / "bare.yaml"  # no --data: placeholders marked TODO, still a valid config
    res = _cli("init", one_line["model"], "-o", bare, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["written"] == str(bare)
    cfg = load_config(bare)
    assert cfg.data.labels == ["class_0", "class_1", "class_2"] and "# TODO" in bare.read_text()
    res = _cli("init", one_line["model"], "-o", bare, "--json")  # never overwrites without --force
    assert res.exit_code == 2 and json.loads(res.stdout)["type"] == "ConfigError"


def test_schema_is_generated_and_validates_the_example_configs(one_line):
    import jsonschema

    res = _cli("schema")
    assert res.exit_code == 0
    schema = json.loads(res.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    paths = [ROOT / "examples" / "pipeline.yaml", *sorted((ROOT / "pipeline" / "examples").glob("*.yaml"))]
    if (one_line["out"] / "pipeline.yaml").is_file():
        paths.append(one_line["out"] / "pipeline.yaml")
    for path in paths:
        errors = [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
        assert errors == [], (path, errors)
    bad = yaml.safe_load((ROOT / "examples" / "pipeline.yaml").read_text())
    bad["targets"][0]["options"]["int8_io"] = "maybe"  # a target's own option, checked by its Options model
    bad["targets"][1]["name"] = "tflite-arm64"
    messages = {e.message for e in validator.iter_errors(bad)}
    assert "'maybe' is not of type 'boolean'" in messages and any("tflite-arm64" in m for m in messages)


def test_version_and_short_help_import_no_toolkit():
    from edgepipe import __version__

    r = cli_probe("--version")
    assert r["code"] == 0 and r["out"].strip() == f"edgepipe {__version__}" and r["heavy"] == []
    for args in (("-h",), ("run", "-h"), ("bench", "-h")):
        r = cli_probe(*args)
        assert r["code"] == 0 and "Usage" in r["out"] and r["heavy"] == [], args
        assert "<bool>" not in r["out"]  # flags read as flags
    assert "--install-completion" in cli_probe("-h")["out"]
    usage = next(ln for ln in cli_probe("bench", "-h")["out"].splitlines() if "Usage" in ln)
    assert "artifact" in usage and "target" not in usage  # "target" names tflite-arm & co., not a file


def test_flags_take_no_value():
    res = runner.invoke(app, ["targets", "--json", "true"])
    assert res.exit_code == 2 and "unexpected extra argument" in res.output


def test_json_on_keygen_bundle_verify(tiny_int8_run, tmp_path):
    res = _cli("keygen", "-o", tmp_path / "keys", "--json")
    assert res.exit_code == 0
    keys = json.loads(res.stdout)
    assert Path(keys["private_key"]).is_file() and Path(keys["public_key"]).is_file()
    res = _cli("keygen", "-o", tmp_path / "keys", "--json")  # exists: an error, as JSON too
    assert res.exit_code == 2 and json.loads(res.stdout)["exit_code"] == 2
    res = _cli("bundle", tiny_int8_run["artifact"], "-o", tmp_path / "store", "--key", tiny_int8_run["key"],
               "--tar", "--json")
    assert res.exit_code == 0, res.output
    made = json.loads(res.stdout)
    assert Path(made["bundle"]).is_dir() and Path(made["tar"]).is_file()
    res = _cli("verify", made["tar"], "--pubkey", tiny_int8_run["pub"], "--json")
    assert res.exit_code == 0, res.output
    ok = json.loads(res.stdout)
    assert ok["ok"] is True and ok["bundle_version"] == 1 and ok["files"] >= 5
    res = _cli("verify", made["bundle"], "--pubkey", keys["public_key"], "--json")  # another key: refused
    assert res.exit_code == 2
    refused = json.loads(res.stdout)
    assert refused["exit_code"] == 2 and refused["type"] == "BundleError" and refused["error"]


def test_a_missing_extra_names_the_extra(monkeypatch):
    from edgepipe import targets
    from edgepipe.engine.availability import unbuildable_row
    from edgepipe.targets import host

    real = host.has_package
    monkeypatch.setattr(host, "has_package", lambda name: name not in ("onnxruntime", "tf2onnx") and real(name))
    row = unbuildable_row("onnx-cpu")
    assert row.status == "partial" and row.not_available_here is True
    assert row.how_to_finish == 'pip install "edgepipe[onnx]"; then rerun'
    assert row.reasons[0] == "not built: Python package(s) tf2onnx, onnxruntime not installed"
    assert unbuildable_row("tflite-arm") is None
    assert targets.get("onnx-cpu").as_dict()["how_to_finish"] == row.how_to_finish


def test_extras_match_pyproject_and_tox():
    import configparser

    from edgepipe.core.extras import EXTRAS

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras, core = project["optional-dependencies"], " ".join(project["dependencies"])
    for package, extra in EXTRAS.items():
        dist = package.replace("_", "-")
        assert any(req.startswith(dist) for req in extras[extra]), (package, extra)
        assert dist not in core, package  # the core is TensorFlow + LiteRT and small pure-Python packages
    assert "tensorflow" in core and "ai-edge-litert" in core
    tox = configparser.ConfigParser()
    tox.read(ROOT / "tox.ini")
    assert set(tox["testenv:tests"]["extras"].split()) == {"test", "ray", "openvino", "onnx", "examples"}
    assert set(tox["testenv:run"]["extras"].split()) == {"examples", "openvino", "onnx"}


def test_terminal_and_availability_agree_on_the_reason_prefix():
    from edgepipe.engine.availability import PREFIX
    from edgepipe.reports.terminal import FINISH_PREFIX

    assert FINISH_PREFIX == PREFIX
