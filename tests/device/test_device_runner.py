"""The on-device runner as a board runs it: a subprocess, stdlib + numpy + one runtime.

Runs in the default suite (ai_edge_litert) and in the `device-old` tox env (Python 3.7,
numpy < 2, tflite-runtime 2.11). Python 3.7 syntax; imports nothing from edgepipe.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ASSETS = os.path.join(HERE, "assets")
RUNNER = os.path.join(HERE, "..", "..", "pipeline", "boards", "device_runner.py")


def run(*args):
    proc = subprocess.run([sys.executable, RUNNER] + [str(a) for a in args], capture_output=True, timeout=120)
    out = proc.stdout.decode().strip().splitlines()
    assert len(out) == 1, proc.stdout  # exactly one JSON object on stdout, logs on stderr
    return proc.returncode, json.loads(out[0])


def make_bundle(root, requires=None, model_bytes=None):
    """A bundle laid out like `edgepipe bundle` writes it (hash list built here, stdlib only)."""
    os.makedirs(os.path.join(root, "sample"))
    if model_bytes is None:
        shutil.copyfile(os.path.join(ASSETS, "tiny_int8.tflite"), os.path.join(root, "model_int8.tflite"))
    else:
        with open(os.path.join(root, "model_int8.tflite"), "wb") as f:
            f.write(model_bytes)
    shutil.copyfile(os.path.join(ASSETS, "sample_images.npy"), os.path.join(root, "sample", "images.npy"))
    shutil.copyfile(os.path.join(ASSETS, "sample_labels.npy"), os.path.join(root, "sample", "labels.npy"))
    with open(os.path.join(root, "labels.txt"), "w") as f:
        f.write("red\ngreen\nblue\n")
    files = []
    for rel in ["labels.txt", "model_int8.tflite", "sample/images.npy", "sample/labels.npy"]:
        with open(os.path.join(root, rel), "rb") as f:
            data = f.read()
        files.append({"path": rel, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)})
    manifest = {"edgepipe_bundle": 1, "name": "tiny-int8", "bundle_version": 1, "files": files,
                "model": {"file": "model_int8.tflite", "format": "tflite"},
                "sample": {"images": "sample/images.npy", "labels": "sample/labels.npy",
                           "host_predictions": [0, 0, 1, 1, 2, 2]},
                "requires": requires if requires is not None else {"tflite_runtime": "2.11", "ai_edge_litert": "1.0"}}
    with open(os.path.join(root, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    return root


@pytest.fixture()
def bundle(tmp_path):
    return make_bundle(str(tmp_path / "b"))


def test_bench_and_eval_on_the_shipped_sample(bundle):
    code, out = run(bundle, "--eval", "--runs", 7, "--warmup", 2, "--threads", 1)
    assert code == 0 and out["ok"], out
    assert out["verification"]["files"] == "ok" and out["verification"]["checked"] == 4
    assert out["runtime"]["name"] in ("ai_edge_litert", "tflite_runtime") and out["runtime"]["version"]
    lat = out["latency"]
    assert lat["runs"] == 7 and lat["images"] == 6 and 0 < lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"]
    assert lat["load_ms"] > 0 and lat["first_ms"] > 0
    assert out["input"] == {"shape": [1, 8, 8, 3], "dtype": "int8"}
    assert out["eval"]["n_labeled"] == 6 and out["eval"]["top1"] == 1.0
    assert out["eval"]["agreement_with_host"] == 1.0
    assert out["python"] and out["numpy"] and out["machine"]


def test_inputs_outputs_raw_and_dequantized(tmp_path):
    x = np.load(os.path.join(ASSETS, "sample_images.npy"))
    np.save(str(tmp_path / "x.npy"), x[:4])
    code, out = run("--model", os.path.join(ASSETS, "tiny_int8.tflite"), "--inputs", tmp_path / "x.npy",
                    "--outputs", tmp_path / "y.npz", "--runs", 2, "--warmup", 0)
    assert code == 0, out
    y = np.load(str(tmp_path / "y.npz"))
    assert y["raw"].dtype == np.int8 and y["raw"].shape == (4, 3)
    assert y["scores"].dtype == np.float32
    # softmax output int8: scale 1/256, zero point -128
    np.testing.assert_allclose(y["scores"], (y["raw"].astype(np.float32) + 128) / 256.0, atol=1e-6)
    assert list(y["scores"].argmax(1)) == [0, 0, 1, 1]
    assert not any(n.startswith("y.npz.tmp") for n in os.listdir(str(tmp_path)))


@pytest.mark.parametrize("tamper,needle", [
    ("byte", "model_int8.tflite"), ("extra", "extra files: evil.sh"), ("missing", "Missing: labels.txt"),
    ("swap_labels", "labels.txt"), ("link", "links: sample/link"), ("dotdot", "'../outside'"),
])
def test_tampered_bundle_refused(bundle, tamper, needle):
    if tamper == "byte":
        with open(os.path.join(bundle, "model_int8.tflite"), "r+b") as f:
            f.seek(200)
            b = f.read(1)
            f.seek(200)
            f.write(bytes([b[0] ^ 1]))
    elif tamper == "extra":
        open(os.path.join(bundle, "evil.sh"), "w").close()
    elif tamper == "missing":
        os.remove(os.path.join(bundle, "labels.txt"))
    elif tamper == "swap_labels":
        with open(os.path.join(bundle, "labels.txt"), "w") as f:
            f.write("green\nred\nblue\n")  # same size, different content
    elif tamper == "link":
        os.symlink("/etc/passwd", os.path.join(bundle, "sample", "link"))
    elif tamper == "dotdot":
        m = json.load(open(os.path.join(bundle, "manifest.json")))
        m["files"].append({"path": "../outside", "sha256": "0" * 64, "size": 1})
        json.dump(m, open(os.path.join(bundle, "manifest.json"), "w"))
    code, out = run(bundle, "--verify-only")
    assert code == 2 and not out["ok"], out
    assert out["error"]["kind"] == "verification" and needle in out["error"]["message"], out


def test_runtime_too_old_names_the_version(bundle):
    code, out = run(bundle, "--min-runtime", "99.1")
    assert code == 4 and out["error"]["kind"] == "runtime"
    assert "expected version >= 99.1" in out["error"]["message"]


def test_manifest_requirement_checked(tmp_path):
    b = make_bundle(str(tmp_path / "b"), requires={"ai_edge_litert": "999", "tflite_runtime": "999"})
    code, out = run(b, "--runs", 1)
    assert code == 4 and ">= 999" in out["error"]["message"], out


def test_missing_runtime_names_what_is_needed(bundle):
    have_litert = _importable("ai_edge_litert")
    missing = "tflite_runtime" if have_litert else "ai_edge_litert"
    code, out = run(bundle, "--runtime", missing, "--runs", 1)
    assert code == 4 and out["error"]["kind"] == "runtime", out
    assert missing in out["error"]["message"] and ">=" in out["error"]["message"]
    code, out = run(bundle, "--runtime", "openvino")
    assert code == 2 and "cannot run a tflite model" in out["error"]["message"]


def test_model_newer_than_the_runtime_is_a_runtime_error(tmp_path):
    """A model with an op version this runtime does not have (as from a newer converter)."""
    np.save(str(tmp_path / "x.npy"), np.load(os.path.join(ASSETS, "sample_images.npy")))
    code, out = run("--model", os.path.join(ASSETS, "tiny_int8_conv_v99.tflite"), "--inputs", tmp_path / "x.npy",
                    "--outputs", tmp_path / "y.npz")
    assert code == 4 and out["error"]["kind"] == "runtime", out
    assert "needs a newer TFLite runtime" in out["error"]["message"] and "CONV_2D" in out["error"]["message"]
    assert not os.path.exists(str(tmp_path / "y.npz"))


def test_model_that_cannot_load_is_an_inference_error(tmp_path):
    b = make_bundle(str(tmp_path / "b"), model_bytes=b"\x00" * 64 + b"not a flatbuffer")
    code, out = run(b, "--runs", 1)
    assert code == 5 and out["error"]["kind"] == "inference" and "model_int8.tflite" in out["error"]["message"]


def test_usage_errors_are_json(tmp_path):
    code, out = run(str(tmp_path / "nope"))
    assert code == 2 and "expected a directory" in out["error"]["message"]
    code, out = run("--model", os.path.join(ASSETS, "tiny_int8.tflite"))
    assert code == 2 and "expected images" in out["error"]["message"]


def _importable(name):
    try:
        __import__(name)
        return True
    except Exception:
        return False
