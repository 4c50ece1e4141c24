#!/usr/bin/env python3
# ruff: noqa: UP004, UP031, B905
"""edgepipe on-device runner: verify a bundle, benchmark it, evaluate its shipped sample.

ONE self-contained file. Needs only the standard library, numpy (1.x or 2.x) and one runtime:
`ai_edge_litert`, `tflite_runtime` (TFLite models) or `openvino` (OpenVINO IR). Python >= 3.7.
It never imports anything from edgepipe: it is copied onto boards next to the bundles.

    python3 device_runner.py [BUNDLE_DIR | --model FILE] [--runtime auto|ai_edge_litert|tflite_runtime|openvino]
        [--threads T] [--verify-only] [--warmup W] [--runs N] [--eval]
        [--inputs X.npy --outputs Y.npz] [--min-runtime VERSION] [--pubkey PEM]

Prints ONE JSON object on stdout (logs go to stderr). Exit codes: 0 ok, 2 bad usage or a
bundle that fails verification (tampered, extra, missing file, unsafe path), 4 runtime missing
or too old, 5 the model failed to load or run. On failure the JSON has "ok": false and
"error": {"kind", "message"}.

Verification: every file listed in manifest.json must exist as a regular file with the listed
size and sha256; no other file (and no link, FIFO or device) may be in the bundle, except
manifest.json and its signature manifest.sig. A manifest that is not a regular file of at most
MAX_MANIFEST bytes, is not JSON, is nested deeper than JSON's parser allows, or has a field of
the wrong type (`check_manifest`) is refused like a tampered bundle: exit 2. The Ed25519
signature over manifest.json's bytes is checked when the `cryptography` package is importable,
against `--pubkey`, or by default against the install root's trusted.pub (R/trusted.pub for a
runner at R/runner/ or a bundle at R/bundles/<name> or R/current); otherwise the result says why
it was not checked (the host always checks it before uploading).
"""

import argparse
import hashlib
import json
import os
import platform
import re
import stat
import sys
import time

RUNNER_VERSION = 1
BUNDLE_FORMAT = 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
UNSIGNED = (MANIFEST, SIGNATURE)
TRUSTED = "trusted.pub"  # the install root's trusted key (put there by the first edgepipe ship or bench)

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_VERIFY = 2
EXIT_RUNTIME = 4
EXIT_INFERENCE = 5

# The board columns of edgepipe's formats table (pipeline/formats/registry.py: board_runtimes, suffixes).
# This file cannot import it (it runs alone on boards); tests/test_formats.py checks they agree.
MAX_MANIFEST = 16 * 1024 * 1024
MAX_THREADS_PER_CORE = 4

RUNTIMES_FOR_FORMAT = {"tflite": ("ai_edge_litert", "tflite_runtime"), "openvino-ir": ("openvino",)}
FORMAT_OF_SUFFIX = {".tflite": "tflite", ".xml": "openvino-ir"}
# platform.machine() spellings of one ISA (Linux, macOS, Windows) -> the name manifests use ("isa")
ISA_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64", "armv8": "aarch64"}
EMULATED_ENV = "EDGEPIPE_BOARD_EMULATED"  # set only by a test board under emulation (e.g. "qemu-user")


class RunnerError(Exception):
    def __init__(self, kind, message, exit_code):
        Exception.__init__(self, message)
        self.kind = kind
        self.exit_code = exit_code


def log(msg):
    sys.stderr.write("device_runner: %s\n" % msg)
    sys.stderr.flush()


# ---------------------------------------------------------------------------- versions
def parse_version(text):
    """'2.11.0' -> (2, 11, 0); '2026.4.1-22982-abc' -> (2026, 4, 1). Non-numeric parts stop."""
    out = []
    for part in re.split(r"[.\-+]", str(text)):
        m = re.match(r"\d+", part)
        if not m:
            break
        out.append(int(m.group(0)))
    return tuple(out)


def version_at_least(have, need):
    h, n = parse_version(have), parse_version(need)
    width = max(len(h), len(n))
    return h + (0,) * (width - len(h)) >= n + (0,) * (width - len(n))


def dist_version(module, dist):
    v = getattr(module, "__version__", None)
    if v:
        return str(v)
    try:
        from importlib import metadata  # Python >= 3.8

        return metadata.version(dist)
    except Exception:
        return "unknown"


# ---------------------------------------------------------------------------- verification
def safe_relpath(rel):
    """A manifest path must stay inside the bundle: relative, no '..', no empty parts."""
    if not isinstance(rel, str) or not rel or rel.startswith("/") or "\\" in rel or "\0" in rel:
        return False
    parts = rel.split("/")
    return all(p not in ("", ".", "..") for p in parts)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
    return h.hexdigest()


def bundle_files(root):
    """Every non-directory entry under root (relative posix paths); links and special files (FIFOs,
    devices, sockets: a read would block or never end) are reported in the second list."""
    found, links = [], []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in list(dirnames) + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            mode = os.lstat(full).st_mode
            if stat.S_ISLNK(mode) or not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                links.append(rel)
            elif not stat.S_ISDIR(mode):
                found.append(rel)
    return sorted(found), sorted(links)


def read_manifest(root):
    path = os.path.join(root, MANIFEST)
    if not os.path.isfile(path) or os.path.islink(path):
        raise RunnerError("verification", "bundle %r: expected a regular file %s. Received: none" % (root, MANIFEST),
                          EXIT_VERIFY)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise RunnerError("verification", "%s: expected a regular file" % MANIFEST, EXIT_VERIFY)
        raw = f.read(MAX_MANIFEST + 1)
    if len(raw) > MAX_MANIFEST:
        raise RunnerError("verification", "%s: expected at most %d bytes. Received: more" % (MANIFEST, MAX_MANIFEST),
                          EXIT_VERIFY)
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as err:  # RecursionError: nested deeper than the parser allows
        raise RunnerError("verification", "%s: expected JSON. Received: %s: %s"
                          % (MANIFEST, type(err).__name__, str(err)[:200]), EXIT_VERIFY) from None
    if not isinstance(manifest, dict) or manifest.get("edgepipe_bundle") != BUNDLE_FORMAT:
        raise RunnerError("verification", "%s: expected edgepipe_bundle=%d. Received: %r"
                          % (MANIFEST, BUNDLE_FORMAT, manifest.get("edgepipe_bundle") if isinstance(manifest, dict)
                             else type(manifest).__name__), EXIT_VERIFY)
    check_manifest(manifest)
    return manifest, raw


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def check_manifest(manifest):
    """The types every reader of a manifest relies on; a wrong one is a verification error (exit 2)."""
    def bad(where, expected, value):
        text = repr(value)
        raise RunnerError("verification", "%s %s: expected %s. Received: %s"
                          % (MANIFEST, where, expected, text if len(text) <= 80 else text[:80] + "..."), EXIT_VERIFY)

    files = manifest.get("files")
    if not isinstance(files, list):
        bad("files", "a list", type(files).__name__)
    for i, entry in enumerate(files):
        if not isinstance(entry, dict):
            bad("files[%d]" % i, "an object with path, size, sha256", type(entry).__name__)
        if not _is_int(entry.get("size")) or entry.get("size") < 0:
            bad("files[%d].size" % i, "a non-negative integer", entry.get("size"))
        sha = entry.get("sha256")
        if not isinstance(sha, str) or not re.match(r"^[0-9a-f]{64}$", sha):
            bad("files[%d].sha256" % i, "64 hex digits", sha)
    model = manifest.get("model")
    if not (isinstance(model, dict) and isinstance(model.get("file"), str) and isinstance(model.get("format"), str)):
        bad("model", "an object with string 'file' and 'format'", model)
    sample = manifest.get("sample")
    if sample is not None:
        if not isinstance(sample, dict) or not all(isinstance(sample.get(k), str) for k in ("images", "labels")):
            bad("sample", "null or an object with string 'images' and 'labels'", sample)
        preds = sample.get("host_predictions")
        if preds is not None and not (isinstance(preds, list) and all(_is_int(p) for p in preds)):
            bad("sample.host_predictions", "a list of integers", preds)
    isa = manifest.get("isa")
    if isa is not None and not (isinstance(isa, list) and isa and all(isinstance(v, str) for v in isa)):
        bad("isa", "null (any ISA) or a non-empty list of ISA names", isa)
    requires = manifest.get("requires")
    if requires is not None and not (isinstance(requires, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in requires.items())):
        bad("requires", "an object of runtime -> version strings", requires)
    for key in ("name", "target", "precision"):
        if manifest.get(key) is not None and not isinstance(manifest.get(key), str):
            bad(key, "a string", manifest.get(key))
    if manifest.get("bundle_version") is not None and not _is_int(manifest.get("bundle_version")):
        bad("bundle_version", "an integer", manifest.get("bundle_version"))


def default_pubkey(root):
    """The install root's trusted.pub: beside this runner's runner/ folder, else two levels above the bundle
    (R/bundles/<name>, or R/current resolved). None when neither exists."""
    here = os.path.dirname(os.path.realpath(__file__))
    candidates = [os.path.join(os.path.dirname(here), TRUSTED)] if os.path.basename(here) == "runner" else []
    candidates.append(os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(root))), TRUSTED))
    for path in candidates:
        if os.path.isfile(path):
            return path
    return None


def verify_signature(root, raw, pubkey):
    sig_path = os.path.join(root, SIGNATURE)
    if pubkey is None:
        return "not checked: no --pubkey given and no %s in the install root" % TRUSTED
    if not os.path.isfile(sig_path) or os.path.islink(sig_path):
        raise RunnerError("verification", "bundle: expected a signature file %s. Received: none" % SIGNATURE,
                          EXIT_VERIFY)
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.serialization import load_pem_public_key
    except ImportError:
        return "not checked: the cryptography package is not installed on this device"
    import base64

    with open(sig_path, "rb") as f:
        try:
            sig = json.loads(f.read().decode("utf-8"))
            signature = base64.b64decode(sig["signature"])
        except (ValueError, KeyError, TypeError) as err:
            raise RunnerError("verification", "%s: expected JSON with a base64 'signature'. Received: %s"
                              % (SIGNATURE, err), EXIT_VERIFY) from err
    try:
        with open(pubkey, "rb") as f:
            key = load_pem_public_key(f.read())
    except (OSError, ValueError) as err:
        raise RunnerError("usage", "--pubkey %s: expected an Ed25519 PEM public key. Received: %s" % (pubkey, err),
                          EXIT_USAGE) from err
    try:
        key.verify(signature, raw)
    except InvalidSignature:
        raise RunnerError("verification", "%s: expected a valid Ed25519 signature of %s by the trusted key %s. "
                          "Received: a signature that does not match" % (SIGNATURE, MANIFEST, pubkey),
                          EXIT_VERIFY) from None
    return "valid"


def verify_bundle(root, pubkey=None):
    """Check every file against the manifest. Returns (manifest, verification dict)."""
    manifest, raw = read_manifest(root)
    listed = {}
    for entry in manifest["files"]:
        rel = entry.get("path")
        if not safe_relpath(rel):
            raise RunnerError("verification", "manifest: expected relative paths inside the bundle. Received: %r"
                              % (rel,), EXIT_VERIFY)
        listed[rel] = entry
    if not listed:
        raise RunnerError("verification", "manifest: expected a non-empty 'files' list. Received: none", EXIT_VERIFY)
    model = manifest["model"]
    sample = manifest.get("sample") or {}
    for what, ref in (("model.file", model.get("file")), ("sample.images", sample.get("images", "")),
                      ("sample.labels", sample.get("labels", ""))):
        if ref != "" and ref not in listed:
            raise RunnerError("verification", "manifest %s: expected one of the listed files. Received: %r"
                              % (what, ref), EXIT_VERIFY)
    present, odd = bundle_files(root)
    links = [p for p in odd if os.path.islink(os.path.join(root, *p.split("/")))]
    if links:
        raise RunnerError("verification", "bundle: expected regular files only. Received links: %s"
                          % ", ".join(links), EXIT_VERIFY)
    if odd:
        raise RunnerError("verification", "bundle: expected regular files only. Received special files (FIFO, "
                          "device or socket): %s" % ", ".join(odd), EXIT_VERIFY)
    extra = [p for p in present if p not in listed and p not in UNSIGNED]
    if extra:
        raise RunnerError("verification", "bundle: expected only the files in the manifest. Received extra files: %s"
                          % ", ".join(extra), EXIT_VERIFY)
    missing = [p for p in sorted(listed) if p not in present]
    if missing:
        raise RunnerError("verification", "bundle: expected every manifest file. Missing: %s" % ", ".join(missing),
                          EXIT_VERIFY)
    for rel in sorted(listed):
        entry = listed[rel]
        full = os.path.join(root, *rel.split("/"))
        size = os.path.getsize(full)
        if size != entry.get("size"):
            raise RunnerError("verification", "file %s: expected %s bytes. Received: %d bytes (tampered?)"
                              % (rel, entry.get("size"), size), EXIT_VERIFY)
        digest = sha256_file(full)
        if digest != entry.get("sha256"):
            raise RunnerError("verification", "file %s: expected sha256 %s. Received: %s (tampered)"
                              % (rel, entry.get("sha256"), digest), EXIT_VERIFY)
    result = {"files": "ok", "checked": len(listed), "signature": verify_signature(root, raw, pubkey),
              "bundle_version": manifest.get("bundle_version")}
    return manifest, result


# ---------------------------------------------------------------------------- ISA
def isa_of(machine):
    """platform.machine() -> the ISA name manifests use: 'AMD64' -> 'x86_64', 'arm64' -> 'aarch64'."""
    m = str(machine or "").strip().lower()
    return ISA_ALIASES.get(m, m)


def isa_problem(manifest, machine):
    """None when the bundle's model runs on this ISA (no "isa" in the manifest: any), else what is wrong."""
    isa = manifest.get("isa")
    if not isa or isa_of(machine) in [isa_of(v) for v in isa]:
        return None
    return ("ISA: expected a board whose CPU is one of %s (the bundle's %s model needs it). Received: %s"
            % (", ".join(isa), (manifest.get("model") or {}).get("format"), machine or "unknown"))


# ---------------------------------------------------------------------------- runtimes
def load_runtime(name, fmt, min_version=None, requires=None):
    """Import one runtime; raise a 'runtime' error naming the version needed if missing or too old."""
    candidates = RUNTIMES_FOR_FORMAT.get(fmt)
    if candidates is None:
        raise RunnerError("usage", "model format: expected one of %s. Received: %r"
                          % (sorted(RUNTIMES_FOR_FORMAT), fmt), EXIT_USAGE)
    if name != "auto" and name not in candidates:
        raise RunnerError("usage", "--runtime %s cannot run a %s model: expected one of %s"
                          % (name, fmt, ", ".join(candidates)), EXIT_USAGE)
    names = candidates if name == "auto" else (name,)
    requires = requires or {}
    errors = []
    for rt in names:
        need = min_version or requires.get(rt)
        try:
            if rt == "ai_edge_litert":
                import ai_edge_litert
                from ai_edge_litert.interpreter import Interpreter

                version = dist_version(ai_edge_litert, "ai-edge-litert")
                handle = Interpreter
            elif rt == "tflite_runtime":
                import tflite_runtime
                from tflite_runtime.interpreter import Interpreter

                version = dist_version(tflite_runtime, "tflite-runtime")
                handle = Interpreter
            else:
                import openvino

                version = dist_version(openvino, "openvino")
                handle = openvino
        except Exception as err:  # ImportError, or a broken wheel (e.g. tflite-runtime 2.14 with numpy 2)
            errors.append("%s: %s: %s" % (rt, type(err).__name__, err))
            continue
        if need and version != "unknown" and not version_at_least(version, need):
            raise RunnerError("runtime", "runtime %s: expected version >= %s. Received: %s (upgrade it on the device)"
                              % (rt, need, version), EXIT_RUNTIME)
        return rt, version, handle
    needs = ", ".join("%s>=%s" % (rt, min_version or requires.get(rt)) if (min_version or requires.get(rt)) else rt
                      for rt in names)
    raise RunnerError("runtime", "runtime for %s models: expected one of %s installed. Received: %s"
                      % (fmt, needs, "; ".join(errors)), EXIT_RUNTIME)


class TFLiteModel(object):
    def __init__(self, Interpreter, path, threads, runtime="this runtime"):
        import numpy as np

        self.np = np
        try:
            self.interp = Interpreter(model_path=path, num_threads=threads)
            self.interp.allocate_tensors()
        except Exception as err:
            text = str(err)
            if "Didn't find op for builtin opcode" in text or "Op builtin_code out of range" in text:
                # an op (or op version) newer than this runtime: an incompatibility, not a broken model
                raise RunnerError("runtime", "model %s needs a newer TFLite runtime than %s: %s"
                                  % (os.path.basename(path), runtime, text.strip().splitlines()[0]),
                                  EXIT_RUNTIME) from err
            raise RunnerError("inference", "model %s: expected a TFLite model this runtime can load. Received: "
                              "%s: %s" % (os.path.basename(path), type(err).__name__, err), EXIT_INFERENCE) from err
        self.inp = self.interp.get_input_details()[0]
        self.out = self.interp.get_output_details()[0]
        self.input_shape = tuple(int(v) for v in self.inp["shape"])
        self.input_dtype = self.np.dtype(self.inp["dtype"]).name

    def quantize(self, x):
        return quantize_input(self.np, x, self.inp["dtype"], self.inp["quantization"])

    def run(self, image):
        """One preprocessed HWC float32 image -> (raw output in its native dtype, float32 scores)."""
        np = self.np
        x = image[None]
        if x.shape != self.input_shape:
            raise RunnerError("inference", "input: expected shape %s (NHWC). Received: %s"
                              % (self.input_shape, x.shape), EXIT_INFERENCE)
        self.interp.set_tensor(self.inp["index"], self.quantize(x))
        self.interp.invoke()
        raw = self.interp.get_tensor(self.out["index"])[0].copy()
        if self.out["dtype"] != np.float32:
            scale, zp = self.out["quantization"]
            return raw, ((raw.astype(np.float32) - zp) * scale).astype(np.float32)
        return raw, raw.astype(np.float32)


class OpenVINOModel(object):
    def __init__(self, ov, path, threads):
        import numpy as np

        self.np = np
        try:
            core = ov.Core()
            config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                      "INFERENCE_PRECISION_HINT": "f32"}
            try:
                self.compiled = core.compile_model(path, "CPU", config)
            except RuntimeError:  # older plugins without one of the hints
                self.compiled = core.compile_model(path, "CPU", {"INFERENCE_NUM_THREADS": threads})
        except Exception as err:
            raise RunnerError("inference", "model %s: expected an OpenVINO IR this runtime can load. Received: %s: %s"
                              % (os.path.basename(path), type(err).__name__, err), EXIT_INFERENCE) from err
        self.request = self.compiled.create_infer_request()
        self.input_shape = tuple(int(v) for v in self.compiled.input(0).get_shape())
        self.input_dtype = "float32"

    def run(self, image):
        np = self.np
        x = image[None].astype(np.float32)
        if x.shape != self.input_shape:
            raise RunnerError("inference", "input: expected shape %s. Received: %s" % (self.input_shape, x.shape),
                              EXIT_INFERENCE)
        self.request.infer({0: x})
        raw = np.array(self.request.get_output_tensor(0).data[0])
        return raw, raw.astype(np.float32)


def open_model(rt, handle, path, threads, version=""):
    if rt == "openvino":
        return OpenVINOModel(handle, path, threads)
    return TFLiteModel(handle, path, threads, ("%s %s" % (rt, version)).strip())


# ---------------------------------------------------------------------------- measurements
def percentile(sorted_ms, q):
    """Linear interpolation, the same as numpy.percentile's default."""
    if len(sorted_ms) == 1:
        return sorted_ms[0]
    pos = (len(sorted_ms) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_ms) - 1)
    return sorted_ms[lo] + (sorted_ms[hi] - sorted_ms[lo]) * (pos - lo)


def benchmark(make_model, images, warmup, runs):
    t0 = time.perf_counter()
    model = make_model()
    load_ms = (time.perf_counter() - t0) * 1e3
    t0 = time.perf_counter()
    model.run(images[0])
    first_ms = (time.perf_counter() - t0) * 1e3
    for i in range(warmup):
        model.run(images[i % len(images)])
    times = []
    for i in range(runs):
        img = images[i % len(images)]
        t0 = time.perf_counter()
        model.run(img)
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    lat = {"load_ms": load_ms, "first_ms": first_ms, "warmup": warmup, "runs": runs, "images": len(images)}
    if times:
        lat.update(p50_ms=percentile(times, 50), p90_ms=percentile(times, 90), p99_ms=percentile(times, 99),
                   mean_ms=sum(times) / len(times), min_ms=times[0])
    return model, lat


def evaluate(model, images, labels, expected=None):
    np = model.np
    preds = []
    for img in images:
        _, scores = model.run(img)
        if not np.all(np.isfinite(scores)):
            raise RunnerError("inference", "output: expected finite scores. Received: NaN or inf", EXIT_INFERENCE)
        preds.append(int(np.argmax(scores)))
    labels = [int(v) for v in labels]
    labeled = [(p, t) for p, t in zip(preds, labels) if t >= 0]
    out = {"n_images": len(preds), "n_labeled": len(labeled), "predictions": preds,
           "top1": (sum(1 for p, t in labeled if p == t) / float(len(labeled))) if labeled else None}
    if expected is not None:
        same = sum(1 for p, e in zip(preds, expected) if p == int(e))
        out["agreement_with_host"] = same / float(len(preds)) if preds else None
    return out


def run_inputs(model, x, out_path):
    """Every image of x -> out_path (.npz) with `raw` (native dtype) and `scores` (float32). Written atomically."""
    np = model.np
    raws, scores = [], []
    for img in x:
        r, s = model.run(img)
        raws.append(r)
        scores.append(s)
    tmp = out_path + ".tmp-%d" % os.getpid()
    with open(tmp, "wb") as f:
        np.savez(f, raw=np.stack(raws), scores=np.stack(scores).astype(np.float32))
    os.replace(tmp, out_path)
    return {"path": out_path, "n": len(raws), "raw_dtype": str(raws[0].dtype) if raws else None}


# ---------------------------------------------------------------------------- main
def parse_args(argv):
    p = argparse.ArgumentParser(prog="device_runner.py", description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", nargs="?", help="bundle directory (with manifest.json)")
    p.add_argument("--model", help="a bare model file instead of a bundle (needs --inputs for data)")
    p.add_argument("--runtime", default="auto", choices=["auto", "ai_edge_litert", "tflite_runtime", "openvino"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--verify-only", action="store_true")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--eval", action="store_true", help="top-1 on the bundle's shipped labeled sample")
    p.add_argument("--inputs", help="float32 N x H x W x C preprocessed images (.npy)")
    p.add_argument("--outputs", help="write raw and dequantized outputs for --inputs here (.npz)")
    p.add_argument("--min-runtime", help="refuse runtimes older than this version")
    p.add_argument("--pubkey", help="trusted Ed25519 public key (PEM) to check manifest.sig with (default: the "
                   "install root's trusted.pub)")
    return p.parse_args(argv)


def environment():
    info = {"runner_version": RUNNER_VERSION, "python": platform.python_version(), "machine": platform.machine()}
    if os.environ.get(EMULATED_ENV):
        info["emulated"] = os.environ[EMULATED_ENV]
    try:
        import numpy

        info["numpy"] = numpy.__version__
    except ImportError:
        info["numpy"] = None
    return info


def quantize_input(np, x, dtype, quantization):
    """A float image for an input tensor of `dtype`: unchanged for float32, else quantized with the
    tensor's own (scale, zero point) and clipped to the dtype. The host's TFLite runner uses it too."""
    if dtype == np.float32:
        return x.astype(np.float32)
    scale, zp = quantization
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zp), info.min, info.max).astype(dtype)


def parse_output(stdout):
    """The runner's one JSON object from its stdout (the last line that is one), or None. Host-side
    callers (ship over SSH, the arm64 emulation) read the runner's output with this."""
    for line in reversed((stdout or "").strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    result = environment()
    result["ok"] = False
    try:
        result.update(_main(args))
        result["ok"] = True
        code = EXIT_OK
    except RunnerError as err:
        result["error"] = {"kind": err.kind, "message": str(err)}
        code = err.exit_code
        log(str(err))
    except Exception as err:  # a bug or an unforeseen input: still one JSON object, never a bare traceback
        result["error"] = {"kind": "internal", "message": "%s: %s" % (type(err).__name__, err)}
        code = 1
        log(result["error"]["message"])
    sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    sys.stdout.flush()
    return code


def _main(args):
    if (args.bundle is None) == (args.model is None):
        raise RunnerError("usage", "expected exactly one of BUNDLE_DIR or --model FILE", EXIT_USAGE)
    if bool(args.inputs) != bool(args.outputs):
        raise RunnerError("usage", "--inputs and --outputs go together", EXIT_USAGE)
    max_threads = MAX_THREADS_PER_CORE * (os.cpu_count() or 1)
    if not (0 <= args.runs <= 1000000 and 0 <= args.warmup <= 100000 and 1 <= args.threads <= max_threads):
        raise RunnerError("usage", "expected 0 <= --runs <= 1000000, 0 <= --warmup <= 100000, 1 <= --threads <= %d "
                          "(4 x the cores). Received: %d, %d, %d" % (max_threads, args.runs, args.warmup, args.threads),
                          EXIT_USAGE)
    out = {}
    manifest = {}
    if args.bundle is not None:
        root = os.path.abspath(args.bundle)
        if not os.path.isdir(root):
            raise RunnerError("usage", "bundle: expected a directory. Received: %r" % args.bundle, EXIT_USAGE)
        pubkey = args.pubkey or default_pubkey(root)
        manifest, out["verification"] = verify_bundle(root, pubkey)
        out["verification"]["pubkey"] = pubkey
        out["bundle"] = {"name": manifest.get("name"), "version": manifest.get("bundle_version"),
                         "target": manifest.get("target"), "precision": manifest.get("precision")}
        model_path = os.path.join(root, *manifest["model"]["file"].split("/"))
        fmt = manifest["model"]["format"]
        if args.verify_only:
            return out
        wrong_isa = isa_problem(manifest, platform.machine())
        if wrong_isa:
            raise RunnerError("runtime", wrong_isa, EXIT_RUNTIME)
    else:
        model_path = os.path.abspath(args.model)
        if not os.path.isfile(model_path):
            raise RunnerError("usage", "--model: expected a model file. Received: %r" % args.model, EXIT_USAGE)
        fmt = FORMAT_OF_SUFFIX.get(os.path.splitext(model_path)[1])
        out["verification"] = {"files": "not checked: bare model, no bundle"}
        if args.verify_only:
            return out
    try:
        import numpy as np
    except ImportError:
        raise RunnerError("runtime", "numpy: expected numpy >= 1.16 installed. Received: not importable",
                          EXIT_RUNTIME) from None
    rt, version, handle = load_runtime(args.runtime, fmt, args.min_runtime, manifest.get("requires"))
    out["runtime"] = {"name": rt, "version": version}
    out["threads"] = args.threads
    make = lambda: open_model(rt, handle, model_path, args.threads, version)  # noqa: E731

    sample, labels, expected = None, None, None
    if manifest.get("sample"):
        s = manifest["sample"]
        sample = load_images(np, os.path.join(root, *s["images"].split("/")), "sample images")
        labels = np.load(os.path.join(root, *s["labels"].split("/")), allow_pickle=False)
        expected = s.get("host_predictions")
    inputs = load_images(np, args.inputs, "--inputs") if args.inputs else None
    timing_images = sample if sample is not None else inputs
    if timing_images is None or len(timing_images) == 0:
        raise RunnerError("usage", "latency: expected images (a bundle with a sample, or --inputs). Received: none",
                          EXIT_USAGE)
    if args.eval and sample is None:
        raise RunnerError("usage", "--eval: expected a bundle with a labeled sample. Received: none", EXIT_USAGE)
    try:
        model, out["latency"] = benchmark(make, timing_images, args.warmup, args.runs)
        out["input"] = {"shape": list(model.input_shape), "dtype": model.input_dtype}
        if args.eval:
            out["eval"] = evaluate(model, sample, labels, expected)
        if inputs is not None:
            out["outputs"] = run_inputs(model, inputs, args.outputs)
    except RunnerError:
        raise
    except Exception as err:  # the runtime failed while invoking the model
        raise RunnerError("inference", "model %s: expected it to run. Received: %s: %s"
                          % (os.path.basename(model_path), type(err).__name__, err), EXIT_INFERENCE) from err
    return out


def load_images(np, path, what):
    try:
        x = np.load(path, allow_pickle=False)
    except Exception as err:
        raise RunnerError("usage", "%s %s: expected a .npy array. Received: %s" % (what, path, err),
                          EXIT_USAGE) from err
    if x.ndim != 4 or x.dtype != np.float32:
        raise RunnerError("usage", "%s: expected float32 N x H x W x C preprocessed images. Received: %s %s"
                          % (what, x.dtype, x.shape), EXIT_USAGE)
    return x


if __name__ == "__main__":
    sys.exit(main())
