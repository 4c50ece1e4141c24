"""The formats table (`pipeline/formats/registry.py`), row by row: a format is tested the day it is registered.

For every registered format: a real small file of it is identified (sniff, suffix, structural
check), only by its own row; truncated or foreign bytes are refused with a message that names the
file and says what was expected and what was received; the row's runner class is the one in the
format's module; a format the standalone commands open is opened and run. Across the table: the
runtime packages (validator cache keys) are those of before the table, listing the table imports
no toolkit, and the copies that cannot import the table (`device_runner.py`, `Artifact.from_files`)
agree with it.
"""

from __future__ import annotations

import inspect
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgepipe import formats
from edgepipe.boards import device_runner
from edgepipe.core.artifacts import Artifact
from edgepipe.core.errors import InputError
from edgepipe.formats.inspect import check_model_file, describe, format_of, sniff
from edgepipe.formats.runners import RUNNERS, image_input_shape, open_runner
from tests.fixtures.model_files import TINY_TFLITE, tiny_ir, tiny_keras, tiny_onnx, tiny_savedmodel

ROOT = Path(__file__).resolve().parent.parent
# one real small file per format: a format added to the table without one here fails test_every_format_has_a_sample
SAMPLES = {
    "tflite": lambda d: TINY_TFLITE,
    "openvino-ir": tiny_ir,
    "onnx": lambda d: tiny_onnx(d / "tiny.onnx"),
    "keras": lambda d: tiny_keras(d / "tiny.keras"),
    "savedmodel": tiny_savedmodel,
}
EXPECTED_RECEIVED = r"expected .+\. Received: "
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 24


def by_name(fmt: formats.Format) -> str:
    return fmt.name


every_format = pytest.mark.parametrize("fmt", formats.FORMATS, ids=by_name)


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> dict[str, Path]:
    out = {}
    for name, build in SAMPLES.items():
        d = tmp_path_factory.mktemp(name.replace("-", "_"))
        out[name] = Path(build(d))
    return out


def main_file(fmt: formats.Format, path: Path) -> Path:
    """The bytes that make the format: the file itself, or a directory format's graph file."""
    return path / "saved_model.pb" if fmt.directory else path


def copy_sample(fmt: formats.Format, src: Path, dest_dir: Path) -> Path:
    """The sample with its companions, in a fresh directory (so it can be damaged)."""
    if fmt.directory:
        return Path(shutil.copytree(src, dest_dir / src.name))
    for name in fmt.model_files(src):
        shutil.copyfile(src.parent / name, dest_dir / name)
    return dest_dir / src.name


def test_every_format_has_a_sample():
    assert set(SAMPLES) == set(formats.names())


def test_names_and_suffixes_are_unique():
    assert len(set(formats.names())) == len(formats.FORMATS)
    suffixes = [s for f in formats.FORMATS for s in f.suffixes]
    assert len(suffixes) == len(set(suffixes)) and all(s == s.lower() and s.startswith(".") for s in suffixes)
    assert all(f.directory != bool(f.suffixes) for f in formats.FORMATS)  # a file format has a suffix


def test_an_unknown_format_is_named():
    with pytest.raises(InputError, match=r"artifact format: expected one of \[.*'tflite'.*\]\. Received: 'pt'"):
        formats.get("pt")
    assert formats.find("pt") is None and formats.runtime_packages("pt") == ()


# ---- row by row ------------------------------------------------------------------------------
@every_format
def test_a_real_file_is_identified_and_passes_its_check(samples, fmt):
    p = samples[fmt.name]
    assert sniff(p) == fmt.kind
    assert formats.for_path(p) is fmt
    check_model_file(p, fmt.name)
    if fmt.suffixes:
        assert format_of(p) == fmt.name and formats.for_suffix(p.with_suffix(p.suffix.upper())) is fmt
        check_model_file(p)  # the format from the suffix
    if fmt.noun:
        assert describe(p).startswith(fmt.noun)


@every_format
def test_only_its_own_row_claims_it(samples, fmt):
    """Sniffing does not depend on the table's order: no other format's predicate accepts this format's bytes."""
    p = samples[fmt.name]
    head = None if fmt.directory else p.read_bytes()[:4096]
    claimed = [f.name for f in formats.FORMATS if f.looks_like(p, head)]
    assert claimed == [fmt.name]


@every_format
def test_a_truncated_file_is_refused(samples, fmt, tmp_path):
    p = copy_sample(fmt, samples[fmt.name], tmp_path)
    target = main_file(fmt, p)
    data = target.read_bytes()
    cuts = sorted({0, 1, 7, len(data) // 3, len(data) // 2, len(data) - 1})
    for cut in (c for c in cuts if data[c:].strip()):  # dropping only trailing whitespace leaves XML complete
        target.write_bytes(data[:cut])
        with pytest.raises(InputError, match=EXPECTED_RECEIVED) as exc:
            check_model_file(p, fmt.name)
        assert str(p) in str(exc.value), (cut, str(exc.value))


@every_format
def test_foreign_bytes_are_refused_with_what_they_look_like(samples, fmt, tmp_path):
    if fmt.directory:
        p = copy_sample(fmt, samples[fmt.name], tmp_path)
        (p / "saved_model.pb").write_bytes(bytes(range(256)) * 4)
    else:
        p = tmp_path / f"model{fmt.suffixes[0]}"
        p.write_bytes(PNG)
    with pytest.raises(InputError, match=EXPECTED_RECEIVED) as exc:
        check_model_file(p, fmt.name)
    msg = str(exc.value)
    assert str(p) in msg
    if not fmt.directory:
        assert "a PNG image (32 bytes)" in msg


@every_format
def test_its_runner_class_is_in_its_module(fmt):
    cls = fmt.runner_class()
    assert (cls.__name__, cls.__module__) == (fmt.runner, fmt.module)
    assert "check_input(" in inspect.getsource(cls.predict)
    assert fmt.opens_files == hasattr(cls, "from_file") == (fmt.name in RUNNERS)
    if fmt.opens_files:  # what `edgepipe validate | bench` need of it
        assert callable(getattr(fmt.load(), "detect_precision", None)) and fmt.runtime_modules


@every_format
def test_its_host_runtime_imports(fmt):
    assert fmt.import_runtime().__name__ in fmt.runtime_modules


@pytest.mark.parametrize("fmt", [f for f in formats.FORMATS if f.opens_files], ids=by_name)
def test_a_format_the_standalone_commands_open_runs(samples, fmt):
    from edgepipe.engine.standalone import detect_format, detect_precision

    p = samples[fmt.name]
    assert detect_format(p) == fmt.name
    runner = open_runner(fmt.name, p, 1)
    scores = runner.predict(np.zeros(image_input_shape(runner), np.float32))
    assert scores.dtype == np.float32 and scores.shape == (4,) and np.all(np.isfinite(scores))
    assert detect_precision(fmt.name, p, runner) == "fp32"


@pytest.mark.parametrize("fmt", [f for f in formats.FORMATS if f.companions], ids=by_name)
def test_a_missing_companion_is_named(samples, fmt, tmp_path):
    from edgepipe.engine.standalone import detect_format

    p = copy_sample(fmt, samples[fmt.name], tmp_path)
    for suffix, what in fmt.companions:
        p.with_suffix(suffix).unlink()
        with pytest.raises(InputError, match=rf"its {what} '{p.with_suffix(suffix).name}' beside it"):
            detect_format(p)


@pytest.mark.parametrize("fmt", [f for f in formats.FORMATS if not f.directory], ids=by_name)
def test_artifact_records_count_the_same_model_files(samples, fmt):
    """`Artifact.from_files` (in core, below the table) keeps its own companion rule: it must be the table's."""
    p = samples[fmt.name]
    art = Artifact.from_files("x", "t", fmt.name, "fp32", p)
    assert art.files == fmt.model_files(p)
    assert art.size_bytes == sum((p.parent / f).stat().st_size for f in fmt.model_files(p))


# ---- across the table ------------------------------------------------------------------------
def test_runtime_packages_are_the_validator_cache_keys_of_before():
    """The validators' stage key holds tool_versions(*runtime_packages): same packages, same order, or every
    cached validation runs again (this was `RUNTIME_TOOLS` in the run module)."""
    before = {"tflite": ("ai-edge-litert",), "openvino-ir": ("openvino",), "keras": ("tensorflow", "keras"),
              "onnx": ("onnxruntime",)}
    assert {name: formats.runtime_packages(name) for name in before} == before


def test_the_standalone_files_message_follows_the_table():
    from edgepipe.engine.standalone import detect_format

    assert formats.file_labels(tuple(f for f in formats.FORMATS if f.opens_files)) == \
        ".tflite, .xml (OpenVINO IR) or .onnx"
    with pytest.raises(InputError, match=r"expected an existing \.tflite, \.xml \(OpenVINO IR\) or \.onnx file"):
        detect_format(Path("/nonexistent/model.tflite"))


def test_device_runner_agrees_with_the_table():
    """device_runner.py runs alone on boards and cannot import the table: its copy must say the same."""
    on_board = [f for f in formats.FORMATS if f.board_runtimes]
    assert device_runner.RUNTIMES_FOR_FORMAT == {f.name: f.board_runtimes for f in on_board}
    assert device_runner.FORMAT_OF_SUFFIX == {s: f.name for f in on_board for s in f.suffixes}
    for rt in {rt for f in on_board for rt in f.board_runtimes}:
        assert device_runner.parse_args(["--runtime", rt]).runtime == rt
    for f in on_board:  # a bundle asks only for versions of runtimes the board would try
        assert set(dict(f.board_min_versions)) <= set(f.board_runtimes)
        assert set(f.board_requires()) <= set(f.board_runtimes)
    with pytest.raises(device_runner.RunnerError, match="model format: expected one of"):
        device_runner.load_runtime("auto", "onnx")


def test_listing_the_table_imports_no_toolkit_and_no_format_module():
    code = ("import sys, json\nfrom pipeline import formats\n"
            "rows = [(f.name, f.suffixes, f.runtime_packages, f.board_runtimes) for f in formats.FORMATS]\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('numpy', 'tensorflow', 'keras', 'openvino', 'onnx', 'onnxruntime', 'ai_edge_litert') "
            "or (m.startswith('edgepipe.formats.') and m != 'edgepipe.formats.registry'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_onnx_runtime_gets_the_exact_int8_option_only_where_u8s8_pairs_saturate(monkeypatch):
    """x86 without VNNI or AMX sums u8 x s8 products in int16: ONNX Runtime's session option for exact products is
    set there and nowhere else (on a VNNI CPU it would only convert the weights for slower kernels). The onnx-cpu
    INT8 job carries it in its runner parameters, a part of its validators' stage keys; its FP32 job does not."""
    from edgepipe.formats import onnx as onnx_format
    from edgepipe.targets import onnx_cpu

    exact = {onnx_format.X64_QUANT_PRECISION: "1"}
    assert onnx_format.exact_int8_config({"avx2", "fma"}) == exact
    assert onnx_format.exact_int8_config({"avx2", "avx512f"}) == exact
    for flags in ({"avx2", "avx512f", "avx512_vnni"}, {"avx2", "avx_vnni"}, {"avx2", "amx_int8", "avx512_vnni"},
                  {"asimd", "neon"}, set()):
        assert onnx_format.exact_int8_config(flags) == {}, flags
    for flags, params in (({"avx2", "fma"}, {"session_config": exact}), ({"avx2", "avx512_vnni"}, {})):
        monkeypatch.setattr(onnx_format, "cpu_flags", lambda f=flags: (set(f), "vendor"))
        jobs = {j.precision: j for j in onnx_cpu.jobs(None, onnx_cpu.Options(precisions=["fp32", "int8"]))}
        assert jobs["int8"].runner_params == params and jobs["fp32"].runner_params == {}
        assert _layer_stage_key("onnx").get("session_config") == params.get("session_config")
        assert "session_config" not in _layer_stage_key("tflite")


def _layer_stage_key(kind: str) -> dict:
    """The cache key the per-layer diagnosis stage of `kind` asks for (the stage itself is not run)."""
    from types import SimpleNamespace

    from edgepipe.diagnostics.layer_errors import layer_error_stage

    seen = {}

    class Asked(Exception):
        pass

    def stage(name, params, fn):
        seen.update(params)
        raise Asked

    class Images(list):
        sha256 = "1" * 64

    art = SimpleNamespace(sha256="0" * 64, name=f"{kind}/int8")
    ctx = SimpleNamespace(validation=Images([0] * 8), is_savedmodel=True, stage=stage,
                          cfg=SimpleNamespace(diagnostics=SimpleNamespace(per_layer_images=4), threads=1))
    with pytest.raises(Asked):
        layer_error_stage(ctx, kind, art, art)
    return seen
