"""Rows 1-2: a file that is not a model is named with what it looks like; zero-byte or truncated
.keras / .tflite / .onnx / IR files are rejected by the structural check, before any runtime loads them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgepipe.cli.app import app
from edgepipe.core.errors import InputError
from edgepipe.formats.inspect import check_model_file, describe, sniff
from tests.fixtures.configs import tiny_config, write_config
from tests.fixtures.model_files import TINY_TFLITE, tiny_ir, tiny_onnx

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_assets) -> dict:
    d = tmp_path_factory.mktemp("files")
    return {"tflite": TINY_TFLITE, "onnx": tiny_onnx(d / "tiny.onnx"), "openvino-ir": tiny_ir(d),
            "keras": tiny_assets["model"]}


@pytest.mark.parametrize("content, kind, looks_like", [
    (b"", "empty", "an empty file (0 bytes)"),
    (bytes(range(256)) * 4, "unknown", "1024 bytes of unknown content starting"),
    (b"PK\x03\x04" + b"\0" * 40, "zip", "a zip archive (44 bytes)"),
    (b"\x89HDF\r\n\x1a\n" + b"\0" * 8, "hdf5", "an HDF5 file (16 bytes)"),
    (b"\x1c\0\0\0TFL3" + b"\0" * 8, "tflite", "a TFLite flatbuffer (16 bytes)"),
    (b"\x08\x08\x12\x04edge", "onnx", "an ONNX protobuf (8 bytes)"),
    (b'<?xml version="1.0"?>\n<net name="m" version="11">', "openvino-xml", "an OpenVINO IR XML file"),
    (b"<html><body>hi</body></html>", "xml", "an XML file"),
    (b"functional\ndefective\n", "text", "a text file (21 bytes)"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 8, "unknown", "a PNG image (16 bytes)"),
])
def test_sniff_and_describe_by_magic(tmp_path, content, kind, looks_like):
    p = tmp_path / "f.bin"
    p.write_bytes(content)
    assert sniff(p) == kind
    assert describe(p).startswith(looks_like)


def test_real_files_are_recognised(files):
    assert {fmt: sniff(p) for fmt, p in files.items()} == {
        "tflite": "tflite", "onnx": "onnx", "openvino-ir": "openvino-xml", "keras": "zip"}
    for fmt, p in files.items():
        check_model_file(p, fmt)  # intact files pass


@pytest.mark.parametrize("fmt, other", [("tflite", "onnx"), ("onnx", "tflite"), ("keras", "tflite"),
                                        ("openvino-ir", "keras")])
def test_wrong_kind_is_named(files, tmp_path, fmt, other):
    """A file of another kind under this format's extension: the message says what it really is."""
    suffix = {"tflite": ".tflite", "onnx": ".onnx", "keras": ".keras", "openvino-ir": ".xml"}[fmt]
    p = tmp_path / f"model{suffix}"
    p.write_bytes(files[other].read_bytes())
    with pytest.raises(InputError) as exc:
        check_model_file(p)
    msg = str(exc.value)
    assert str(p) in msg and re.search(r"expected .+\. Received: ", msg)
    assert describe(files[other]).split(" (")[0] in msg


@pytest.mark.parametrize("fmt", ["tflite", "onnx", "keras", "openvino-ir"])
def test_zero_byte_and_every_truncation_is_rejected(files, tmp_path, fmt):
    data = files[fmt].read_bytes()
    p = tmp_path / files[fmt].name
    if fmt == "openvino-ir":
        (tmp_path / files[fmt].with_suffix(".bin").name).write_bytes(files[fmt].with_suffix(".bin").read_bytes())
    cuts = sorted({0, 1, 7, len(data) - 1, *range(0, len(data), max(1, len(data) // 40))})
    for cut in (c for c in cuts if data[c:].strip()):  # dropping only trailing whitespace leaves XML complete
        p.write_bytes(data[:cut])
        with pytest.raises(InputError, match=r"expected .+\. Received: "):
            check_model_file(p, fmt)


def test_ir_with_truncated_or_missing_weights(files, tmp_path):
    xml = tmp_path / "m.xml"
    xml.write_bytes(files["openvino-ir"].read_bytes())
    weights = files["openvino-ir"].with_suffix(".bin").read_bytes()
    with pytest.raises(InputError, match=r"weights 'm.bin'.*Received: no such file"):
        check_model_file(xml)
    (tmp_path / "m.bin").write_bytes(weights[:-4])
    with pytest.raises(InputError, match=rf"at least {len(weights)} bytes.*Received: {len(weights) - 4} bytes"):
        check_model_file(xml)
    (tmp_path / "m.bin").write_bytes(weights)
    check_model_file(xml)


def test_keras_archive_with_a_damaged_member(files, tmp_path):
    src = files["keras"]
    dst = tmp_path / "damaged.keras"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
    raw = bytearray(dst.read_bytes())
    i = raw.find(b"model.weights.h5") + 200  # inside the stored weights member
    raw[i] ^= 0xFF
    dst.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="CRC|damaged"):
        check_model_file(dst)


def test_structural_check_loads_no_runtime(files):
    """Rejected before any runtime kernel could run: checking every format imports no interpreter."""
    code = ("import sys, json; from pathlib import Path; from edgepipe.formats.inspect import check_model_file\n"
            f"for p in {[str(p) for p in files.values()]!r}: check_model_file(Path(p))\n"
            "heavy = ['ai_edge_litert.interpreter', 'openvino', 'onnxruntime', 'tensorflow', 'tflite_runtime']\n"
            "print(json.dumps([m for m in heavy if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


runner = CliRunner()


@pytest.mark.parametrize("content, looks_like", [
    (b"", "an empty file (0 bytes)"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 24, "a PNG image"),
    (b"\x08\x08\x12\x04edge", "an ONNX protobuf"),
])
def test_preflight_names_the_file_and_what_it_looks_like(tmp_path, content, looks_like):
    p = tmp_path / "model.tflite"
    p.write_bytes(content)
    res = runner.invoke(app, ["preflight", str(p)])
    assert res.exit_code == 2
    assert str(p) in res.output.replace("\n", "") and looks_like in res.output


def test_preflight_rejects_a_truncated_tflite(tmp_path):
    p = tmp_path / "cut.tflite"
    p.write_bytes(TINY_TFLITE.read_bytes()[:-100])
    res = runner.invoke(app, ["preflight", str(p)])
    assert res.exit_code == 2 and "expected a complete, consistent TFLite flatbuffer" in res.output


@pytest.mark.parametrize("name, content, looks_like", [
    ("model.tflite", TINY_TFLITE.read_bytes(), "a TFLite flatbuffer"),
    ("model.keras", b"", "an empty file (0 bytes)"),
    ("model.keras", b"PK\x03\x04" + b"\0" * 40, "damaged zip archive"),
    ("weights.bin", bytes(range(200)), "200 bytes of unknown content"),
])
def test_run_rejects_a_non_model_before_writing_anything(tmp_path, tiny_assets, name, content, looks_like):
    p = tmp_path / name
    p.write_bytes(content)
    cfg = tiny_config(tiny_assets, tmp_path / "out", model={"path": str(p)})
    res = runner.invoke(app, ["run", str(write_config(tmp_path / "p.yaml", cfg))])
    assert res.exit_code == 2, res.output
    assert str(p) in res.output.replace("\n", "") and looks_like in res.output
    assert not (tmp_path / "out" / "stages").exists() and not (tmp_path / "out" / "report.json").exists()


def test_a_model_given_as_the_config_is_named(tmp_path):
    p = tmp_path / "pipeline.yaml"
    p.write_bytes(TINY_TFLITE.read_bytes())
    res = runner.invoke(app, ["run", str(p)])
    assert res.exit_code == 2 and "expected UTF-8 YAML text. Received: a TFLite flatbuffer (1728 bytes)" in res.output
