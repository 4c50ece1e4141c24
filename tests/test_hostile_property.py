"""Property (issue 18): for random bounded inputs (files, configs, archives), every CLI entry point
exits 0/1/2/3 within a time limit, prints no traceback, and writes nothing outside its output folder.

Each example is a real `edgepipe` process in a fresh sandbox whose HOME, TMPDIR and caches point
inside it; everything in the sandbox except the output folder is compared before and after (so are
the temporary and home folders: children must clean up). Bounded: 10 examples plus three explicit
ones, derandomized.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from tests.fixtures.hostile import cli, image_folder, snapshot
from tests.fixtures.model_files import TINY_TFLITE

TIME_LIMIT_S = 90
# a deeper, random (not derandomized) pass by hand: EDGEPIPE_HOSTILE_EXAMPLES=200 pytest tests/test_hostile_property.py
EXAMPLES = int(os.environ.get("EDGEPIPE_HOSTILE_EXAMPLES", "10"))
EXIT_CODES = {0, 1, 2, 3}

names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"), min_size=1,
                max_size=10).filter(lambda s: s not in (".", ".."))
blobs = st.binary(max_size=600)
numbers = st.one_of(st.integers(-3, 5), st.integers(0, 10**12), st.sampled_from([71, 2049, 2**31, 2**63]))


def mutated(data: bytes):
    return st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=3).map(
        lambda edits: _apply(data, edits))


def _apply(data: bytes, edits) -> bytes:
    b = bytearray(data)
    for where, value in edits:
        if b:
            b[int(where * len(b))] = value
    return bytes(b)


@st.composite
def run_case(draw):
    model = draw(st.one_of(blobs, st.just(b"PK\x05\x06" + bytes(18)), st.just("fifo")))
    cfg = {
        "model": {"path": "m.keras", "trust": draw(st.booleans())},
        "input": {"size": [draw(numbers), draw(numbers)], "preprocessing": draw(st.sampled_from(["unit", "x"]))},
        "data": {"labels": draw(st.one_of(st.just(["red", "green"]), st.lists(names, max_size=3), st.just("l.txt"))),
                 "calibration": {"source": draw(st.sampled_from(["data", "data.csv", "nope"])),
                                 "split": draw(st.sampled_from(["all", "calibration", "bogus"]))},
                 "validation": {"source": "data", "split": "all", "size": draw(st.one_of(st.none(), numbers))}},
        "targets": [{"name": draw(st.sampled_from(["tflite-arm", "openvino-cpu", "nope"]))}],
        "threads": draw(numbers),
        "latency": {"runs": draw(numbers)},
        "output": draw(st.sampled_from(["out", "out", "data", ".", "/", "~", "home"])),
    }
    text = yaml.safe_dump(cfg, allow_unicode=True).encode()
    text = draw(st.one_of(st.just(text), mutated(text), st.just(b"a: &a [1]\n" + b"b: [*a, *a]\n" * 60)))
    csv = draw(st.one_of(st.just(b"path,label\nred/0.png,red\n"), blobs))
    return {"cmd": "run", "model": model, "config": text, "csv": csv, "labels": draw(blobs)}


@st.composite
def sweep_case(draw):
    base = {"model": {"path": "m.keras"}, "data": {"labels": ["red", "green"], "calibration": {"source": "data",
            "split": "all"}, "validation": {"source": "data", "split": "all"}}, "targets": [{"name": "tflite-arm"}]}
    doc = {"base": base, "output": draw(st.sampled_from(["out", "data", "/"])),
           "recipes": draw(st.one_of(st.just([{"name": "default"}]), st.lists(st.fixed_dictionaries(
               {"name": names}), max_size=2))), "threads": draw(numbers)}
    return {"cmd": "sweep", "model": draw(blobs), "config": yaml.safe_dump(doc, allow_unicode=True).encode()}


@st.composite
def artifact_case(draw):
    suffix = draw(st.sampled_from([".tflite", ".onnx", ".xml"]))
    data = draw(st.one_of(blobs, mutated(TINY_TFLITE.read_bytes()))) if suffix == ".tflite" else draw(blobs)
    return {"cmd": draw(st.sampled_from(["validate", "bench"])), "artifact": data, "suffix": suffix,
            "threads": draw(st.integers(1, 3))}


@st.composite
def archive_case(draw):
    kinds = [tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE]
    members = draw(st.lists(st.tuples(st.sampled_from(["b/manifest.json", "b/x", "../x", "/abs", "b/../../y", "b",
                                                       "c/z", "b/manifest.sig"]),
                                      st.sampled_from(kinds), blobs), max_size=4))
    buf = io.BytesIO()
    mode = draw(st.sampled_from(["w", "w:gz", "w:bz2"]))
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = "../../etc/passwd" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    raw = draw(st.one_of(st.just(buf.getvalue()), mutated(buf.getvalue()), blobs))
    return {"cmd": "verify", "archive": raw, "suffix": draw(st.sampled_from([".tar", ".tar.gz"]))}


def _non_utf8_name(data: bytes) -> bytes:
    """The tiny .tflite with one tensor name no longer UTF-8 (same length: the flatbuffer stays valid)."""
    at = data.index(b"Mean/reduction_indices")
    return data[:at] + b"\xa8" + data[at + 1:]


@st.composite
def model_case(draw):
    data = draw(st.one_of(blobs, mutated(TINY_TFLITE.read_bytes()), st.just(_non_utf8_name(TINY_TFLITE.read_bytes()))))
    return {"cmd": draw(st.sampled_from(["preflight", "init"])), "artifact": data}


@st.composite
def bundle_case(draw):
    record = draw(st.one_of(st.just(b""), blobs, st.builds(lambda f, t: json.dumps(
        {"files": f, "target": t, "format": "tflite", "precision": "fp32", "sha256": "0" * 64}).encode(),
        st.lists(names, max_size=2), names)))
    return {"cmd": "bundle", "record": record, "out_is_file": draw(st.booleans())}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from edgepipe.boards.signing import keygen

    d = tmp_path_factory.mktemp("prop")
    key, pub = keygen(d / "keys")
    return {"dir": d, "key": key, "pub": pub}


def _sandbox(base) -> Path:
    box = Path(tempfile.mkdtemp(dir=base["dir"], prefix="box-"))
    for sub in ("home", "tmp", "cache"):
        (box / sub).mkdir()
    image_folder(box / "data", classes=("red", "green"), per_class=2, size=8)
    return box


def _prepare(box: Path, case: dict, base) -> list:
    cmd = case["cmd"]
    if cmd in ("run", "sweep"):
        if case["model"] == "fifo":
            os.mkfifo(box / "m.keras")
        else:
            (box / "m.keras").write_bytes(case["model"])
        (box / "data.csv").write_bytes(case.get("csv", b""))
        (box / "l.txt").write_bytes(case.get("labels", b""))
        (box / "c.yaml").write_bytes(case["config"])
        return [cmd, box / "c.yaml"]
    if cmd in ("validate", "bench"):
        art = box / f"model{case['suffix']}"
        art.write_bytes(case["artifact"])
        if case["suffix"] == ".xml":
            (box / "model.bin").write_bytes(case["artifact"][::-1])
        extra = ["--runs", 10, "--images", 2] if cmd == "bench" else []
        return [cmd, art, "--data", box / "data", "--preprocessing", "unit", "--threads", case["threads"],
                "--child-timeout", 20, "--memory-mb", 2048, *extra]
    if cmd in ("preflight", "init"):
        (box / "m.tflite").write_bytes(case["artifact"])
        return [cmd, box / "m.tflite", *(["--output", box / "out" / "pipeline.yaml"] if cmd == "init" else ["--json"])]
    if cmd == "verify":
        (box / f"b{case['suffix']}").write_bytes(case["archive"])
        return ["verify", box / f"b{case['suffix']}", "--pubkey", base["pub"]]
    art = box / "art" / "tflite-arm-fp32"
    art.mkdir(parents=True)
    (art / "artifact.json").write_bytes(case["record"])
    (art / "model.tflite").write_bytes(TINY_TFLITE.read_bytes())
    if case["out_is_file"]:
        (box / "out").write_text("a file")
    return ["bundle", art, "--out", box / "out", "--key", base["key"], "--samples", box / "data"]


CASES = {"run": run_case(), "sweep": sweep_case(), "validate/bench": artifact_case(), "verify": archive_case(),
         "bundle": bundle_case(), "preflight/init": model_case()}


@settings(max_examples=EXAMPLES, deadline=None, derandomize="EDGEPIPE_HOSTILE_EXAMPLES" not in os.environ,
          database=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=st.sampled_from(sorted(CASES)).flatmap(CASES.get))
@example(case={"cmd": "verify", "archive": b"\x1f\x8b\x08\x00" + bytes(40), "suffix": ".tar.gz"})
@example(case={"cmd": "bundle", "record": b"", "out_is_file": True})
@example(case={"cmd": "preflight", "artifact": _non_utf8_name(TINY_TFLITE.read_bytes())})
def test_cli_entry_points_on_random_inputs(base, case):
    event(case["cmd"])
    box = _sandbox(base)
    args = _prepare(box, case, base)
    out = box / "out"
    before = snapshot(box, skip=out if case["cmd"] != "bundle" or not case["out_is_file"] else None)
    root_lock = os.path.exists("/.edgepipe.lock")
    env = {"HOME": str(box / "home"), "TMPDIR": str(box / "tmp"), "EDGEPIPE_CACHE": str(box / "cache"),
           "XDG_CACHE_HOME": str(box / "cache"), "EDGEPIPE_KEYS": str(box / "home" / "keys")}
    t0 = time.monotonic()
    res = cli(*args, env=env, timeout=TIME_LIMIT_S, cwd=box)
    assert time.monotonic() - t0 < TIME_LIMIT_S
    text = res.stdout + res.stderr
    assert res.returncode in EXIT_CODES, (case["cmd"], res.returncode, text[-3000:])
    event(f"{case['cmd']} exit {res.returncode}")
    assert "Traceback" not in text, (case["cmd"], text[-3000:])
    after = snapshot(box, skip=out if case["cmd"] != "bundle" or not case["out_is_file"] else None)
    assert after == before, (case["cmd"], set(after) ^ set(before), text[-1500:])
    assert os.path.exists("/.edgepipe.lock") == root_lock
