"""Untrusted models (issue 18): SavedModel graphs with side-effect ops are refused before TensorFlow
runs them, and every foreign model is run supervised (limits, timeout, SIGTERM always stops edgepipe).

The SavedModel policy is tested on hand-built saved_model.pb protobufs (no TensorFlow: every
reachability case in milliseconds), plus one real SavedModel whose serving function writes a file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from typer.testing import CliRunner

from edgepipe.cli.app import app
from edgepipe.core.errors import InputError
from edgepipe.formats.savedmodel_ops import check_savedmodel, forbidden_ops
from tests.fixtures.hostile import ROOT, cli, config, image_folder, write_yaml
from tests.fixtures.model_files import HANG_TFLITE, TINY_TFLITE

pytestmark = pytest.mark.heavy(seconds=9)  # worker-seconds measured: longest first (tests/fixtures/scheduling.py)


# ---- a minimal protobuf writer for SavedModel graphs -------------------------------------------
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def f(num: int, payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(num << 3 | 2) + _varint(len(data)) + data


def call_attr(fn: str, key: str = "f") -> bytes:  # NodeDef.attr entry {key: AttrValue{func: NameAttrList{name}}}
    return f(5, f(1, key) + f(2, f(10, f(1, fn))))


def node(name: str, op: str, calls: tuple[str, ...] = (), inputs: tuple[str, ...] = ()) -> bytes:
    return f(1, name) + f(2, op) + b"".join(f(3, i) for i in inputs) + b"".join(call_attr(c) for c in calls)


def function(name: str, *nodes: bytes) -> bytes:  # FunctionDef: signature.name (1.1), node_def (3)
    return f(1, f(1, name)) + b"".join(f(3, n) for n in nodes)


def saved_model(top: list[bytes], functions: list[bytes], outputs: tuple[str, ...] = ("serve:0",),
                saver: tuple[str, str] | None = ("save:0", "restore")) -> bytes:
    graph = b"".join(f(1, n) for n in top) + f(2, b"".join(f(1, fn) for fn in functions))
    meta = f(2, graph)
    if saver:
        meta += f(3, f(2, saver[0]) + f(3, saver[1]))
    sig = b"".join(f(2, f(1, "out") + f(2, f(1, t))) for t in outputs)  # SignatureDef.outputs entry -> TensorInfo
    meta += f(5, f(1, "serving_default") + f(2, sig))
    return f(2, meta)


SERVE = function("serve_fn", node("c", "Conv2D"), node("r", "ReadVariableOp"), node("s", "Softmax"))
SAVE = function("save_fn", node("s", "SaveV2"), node("m", "MergeV2Checkpoints"), node("j", "StringJoin"))
RESTORE = function("restore_fn", node("r", "RestoreV2"), node("a", "AssignVariableOp"))
TOP = [node("x", "Placeholder"), node("v", "VarHandleOp"),
       node("serve", "StatefulPartitionedCall", ("serve_fn",), ("x",)),
       node("save", "StatefulPartitionedCall", ("save_fn",), ("v",)),
       node("restore", "StatefulPartitionedCall", ("restore_fn",), ("v",))]


def test_an_exported_models_graph_passes_with_checkpoint_io_in_its_saver_only():
    assert forbidden_ops(saved_model(TOP, [SERVE, SAVE, RESTORE])) == {}


@pytest.mark.parametrize("top, functions, outputs, bad", [
    # the serving function calls the saver function: its file writes would run on every prediction
    (TOP, [function("serve_fn", node("c", "Conv2D"), node("k", "PartitionedCall", ("save_fn",))), SAVE, RESTORE],
     ("serve:0",), {"SaveV2", "MergeV2Checkpoints", "StringJoin"}),
    # the signature's output is the saver node itself
    (TOP, [SERVE, SAVE, RESTORE], ("save:0",), {"SaveV2", "MergeV2Checkpoints", "StringJoin"}),
    # another node depends on the saver node: running it runs the save
    (TOP + [node("y", "Identity", inputs=("save",))], [SERVE, SAVE, RESTORE], ("serve:0",),
     {"SaveV2", "MergeV2Checkpoints", "StringJoin"}),
    # Python, printing and file I/O anywhere else: in a function nothing calls (the loader may), in a
    # While body reached through an attribute, and at the top level
    (TOP, [SERVE, SAVE, RESTORE, function("orphan", node("p", "PyFunc"))], ("serve:0",), {"PyFunc"}),
    (TOP, [function("serve_fn", node("w", "While", ("body_fn",))), function("body_fn", node("p", "PrintV2"),
                                                                            node("wf", "WriteFile")), SAVE, RESTORE],
     ("serve:0",), {"PrintV2", "WriteFile"}),
    (TOP + [node("rf", "ReadFile")], [SERVE, SAVE, RESTORE], ("serve:0",), {"ReadFile"}),
])
def test_side_effect_ops_outside_the_saver_are_found(top, functions, outputs, bad):
    assert set(forbidden_ops(saved_model(top, functions, outputs))) == bad


def test_check_savedmodel_names_the_ops_and_refuses_what_it_cannot_read(tmp_path):
    d = tmp_path / "sm"
    d.mkdir()
    evil = function("o", node("p", "EagerPyFunc"))
    (d / "saved_model.pb").write_bytes(saved_model(TOP, [SERVE, SAVE, RESTORE, evil]))
    with pytest.raises(InputError, match=r"only pure tensor ops .*Received: 1 other op type\(s\): EagerPyFunc "
                                         r"\(in function 'o'\); pass --trust-model"):
        check_savedmodel(d)
    (d / "saved_model.pb").write_bytes(b"\x12\xff\xff\xff\x0f")  # a length past the end
    with pytest.raises(InputError, match=r"expected a readable saved_model\.pb protobuf"):
        check_savedmodel(d)
    (d / "saved_model.pb").unlink()
    (d / "saved_model.pbtxt").write_text("meta_graphs {}")
    with pytest.raises(InputError, match=r"a text saved_model\.pbtxt; pass --trust-model"):
        check_savedmodel(d)


def test_a_real_savedmodel_that_writes_a_file_is_refused_without_trust(tmp_path):
    tf = pytest.importorskip("tensorflow")
    victim = tmp_path / "written-by-the-model.txt"

    class Evil(tf.Module):
        def __init__(self):
            self.w = tf.Variable(tf.ones((3, 4)))

        @tf.function(input_signature=[tf.TensorSpec((1, 71, 71, 3), tf.float32)])
        def __call__(self, x):
            tf.io.write_file(str(victim), "pwned")
            return tf.nn.softmax(tf.matmul(tf.reduce_mean(x, axis=[1, 2]), self.w))

    m = Evil()
    tf.saved_model.save(m, str(tmp_path / "evil"), signatures={"serving_default": m.__call__})
    data = image_folder(tmp_path / "data")
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["run", str(write_yaml(tmp_path / "p.yaml", config(tmp_path / "evil", data, out)))])
    assert res.exit_code == 2 and "WriteFile" in res.output and "--trust-model" in res.output, res.output
    assert not victim.exists() and not out.exists()
    from edgepipe.engine.context import check_model_input

    assert check_model_input(tmp_path / "evil", trust=True) is True  # trusted: the user's call
    # (a real Keras export passing untrusted is the user-SavedModel run in tests/test_run_e2e.py)


# ---- 5. every model run supervised -------------------------------------------------------------
@pytest.fixture(scope="module")
def data8(tmp_path_factory):
    return image_folder(tmp_path_factory.mktemp("d8") / "data", size=8)


@pytest.fixture(scope="module")
def data71(tmp_path_factory):
    return image_folder(tmp_path_factory.mktemp("d71") / "data", size=71, per_class=1)


def test_validate_and_bench_kill_a_hanging_model_at_the_timeout(data71):
    for cmd in (["validate", HANG_TFLITE, "--data", data71], ["bench", HANG_TFLITE, "--data", data71, "--runs", 10]):
        t0 = time.monotonic()
        res = cli(*cmd, "--preprocessing", "unit", "--child-timeout", 2, timeout=90)
        assert res.returncode == 2, res.stderr
        assert "no answer after 2 s (hung; the child was killed)" in " ".join(res.stderr.split())
        assert "Traceback" not in res.stderr and time.monotonic() - t0 < 60


def test_sigterm_stops_validate_and_its_child(data71):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "edgepipe.cli.app", "validate", str(HANG_TFLITE), "--data",
                             str(data71), "--preprocessing", "unit"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    children = []
    deadline = time.monotonic() + 60
    while not children and time.monotonic() < deadline:  # the model's child is running
        children = psutil.Process(proc.pid).children(recursive=True)
        time.sleep(0.2)
    assert children, "the supervised child never started"
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=40)
    assert proc.returncode == 143 and "terminated (SIGTERM)" in err and "Traceback" not in err, err
    time.sleep(0.5)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


def test_sigterm_stops_the_process_even_when_the_main_thread_cannot_handle_it(tmp_path):
    """The backstop: a handler that never runs (a main thread stuck in native code) still ends in exit 143."""
    script = ("import signal, time; from edgepipe.core.children import install_sigterm; install_sigterm(1.0); "
              "signal.signal(signal.SIGTERM, lambda *a: None); print('ready', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 143 and time.monotonic() - t0 < 20


def test_a_model_that_fails_at_inference_is_a_clean_exit_2(tmp_path, data8):
    import onnx
    from onnx import TensorProto, helper

    shape = onnx.numpy_helper.from_array(np.array([1, 7], np.int64), "shape")
    graph = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["y"])], "bad",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 8, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 7])], [shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "bad.onnx")
    res = cli("validate", tmp_path / "bad.onnx", "--data", data8, "--preprocessing", "unit")  # bench: the same child
    assert res.returncode == 2, res.stderr
    assert "expected a loadable onnx model that runs in a child process" in " ".join(res.stderr.split())
    assert "Traceback" not in res.stderr


def test_validate_still_works_through_the_child(data8):
    res = CliRunner().invoke(app, ["validate", str(TINY_TFLITE), "--data", str(data8), "--preprocessing", "unit",
                                   "--json"])
    assert res.exit_code == 0, res.output
    assert '"n_images": 12' in res.output and '"runtime": "ai-edge-litert"' in res.output


@pytest.mark.parametrize("as_json", [True, False])
def test_a_tflite_under_a_path_that_is_not_utf8_is_validated(tmp_path, data8, as_json):
    """LiteRT takes a model path as UTF-8 text only: a valid .tflite whose path held a Latin-1 byte was refused as
    "not loadable" (a TypeError from its bindings). Such a file is handed to LiteRT by content, and its name is
    shown with the byte as \\xNN (printed raw, the output was not UTF-8)."""
    import shutil

    path = Path(os.fsdecode(os.fsencode(str(tmp_path)) + b"/caf\xe9.tflite"))
    shutil.copy(TINY_TFLITE, path)
    res = cli("validate", path, "--data", data8, "--preprocessing", "unit", *(["--json"] if as_json else []))
    assert res.returncode == 0, res.stderr
    assert ('"n_images": 12' if as_json else "caf\\xe9.tflite") in res.stdout and "Traceback" not in res.stderr


def test_an_ir_whose_weights_are_cut_short_is_refused_with_the_runtimes_reason(tmp_path, data8):
    """OpenVINO's message starts with lines that only say where in its sources it was raised; the reason
    ("Incorrect weights in bin file!") is on the last line, and it is what the user is shown."""
    from edgepipe.core.errors import runtime_reason
    from tests.fixtures.model_files import tiny_ir

    xml = tiny_ir(tmp_path)
    data = xml.with_suffix(".bin").read_bytes()
    xml.with_suffix(".bin").write_bytes(data[: len(data) // 2])
    res = cli("validate", xml, "--data", data8, "--preprocessing", "unit")
    said = " ".join(res.stderr.split())
    assert res.returncode == 2 and "Received: RuntimeError: Incorrect weights in bin file!" in said, res.stderr
    assert "Exception from" not in said and "Traceback" not in said
    where = "Exception from src/inference/src/cpp/core.cpp:84:\nCheck 'x' failed at src/a.cpp:9:\nthe reason\n\n"
    assert runtime_reason(RuntimeError(where)) == "the reason"
    assert runtime_reason(RuntimeError("Exception from src/a.cpp:1:")) == "Exception from src/a.cpp:1:"
    assert runtime_reason(ValueError("one\ntwo")) == "one two" and runtime_reason(OSError()) == ""
