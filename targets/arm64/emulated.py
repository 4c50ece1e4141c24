"""arm64-emulated: run a TFLite artifact on an arm64 userland under qemu-user and compare with the host.

Both sides run the same on-device runner the boards use (`pipeline/boards/device_runner.py`) on the
same preprocessed images: once as aarch64 (`qemu-aarch64-static` + the cached userland of
`targets/arm64/userland.py`, with aarch64 wheels of the host's LiteRT and numpy versions),
once with the host's Python. The outputs are compared by `targets/arm64/compare.py`.

Latency measured under emulation is recorded as `emulated_latency`: it is the speed of a
CPU emulator on this host, never a device figure.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgepipe.boards import device_runner
from edgepipe.core.errors import InputError, StageError, expected_received
from edgepipe.targets.arm64 import compare as arm64_compare
from edgepipe.targets.arm64 import userland as arm64_userland
from edgepipe.targets.arm64.userland import DEFAULT_CPU, QEMU, Userland

RUNNER = Path(device_runner.__file__).resolve()
RUNTIME = "ai_edge_litert"
EMULATED_NOTE = "qemu-user emulation on this host: not a device figure"
EMULATED_RUNS = 5  # timed runs by default: emulated latency only says how long the check takes


@dataclass(frozen=True)
class SideRun:
    raw: np.ndarray  # outputs in the model's native dtype (int8 for INT8 artifacts)
    scores: np.ndarray  # float32, dequantized
    report: dict  # the runner's JSON
    seconds: float  # wall time of the whole process


def timeout_for(n_images: int, runs: int) -> float:
    """Generous: ~0.65 s per 150x150 INT8 Xception image under emulation; FP32 and 299x299 are slower."""
    return 300.0 + 60.0 * (n_images + runs)


def run_side(cmd: list[str], env: dict, model: Path, inputs: Path, outputs: Path, threads: int, warmup: int,
             runs: int, label: str, timeout: float) -> SideRun:
    args = ["--model", str(model), "--runtime", RUNTIME, "--threads", str(threads), "--warmup", str(warmup),
            "--runs", str(runs), "--inputs", str(inputs), "--outputs", str(outputs)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as err:
        raise StageError(f"{label} runner: expected it to finish within {timeout:.0f} s. Received: timeout") from err
    seconds = time.perf_counter() - t0
    report = _last_json(proc.stdout)
    if proc.returncode != 0 or not report.get("ok"):
        detail = (report.get("error") or {}).get("message") or _tail(proc.stderr)
        raise StageError(f"{label} runner failed (exit {proc.returncode}): {detail}")
    with np.load(outputs, allow_pickle=False) as z:
        raw, scores = z["raw"], z["scores"]
    raw = raw.reshape(len(raw), -1)
    return SideRun(raw, scores.reshape(len(scores), -1).astype(np.float32), report, seconds)


def verify(model: Path, images: np.ndarray, labels: np.ndarray | None = None, threads: int = 2,
           userland: Userland | None = None, cpu: str = DEFAULT_CPU, runs: int | None = None,
           tol: arm64_compare.Tolerance = arm64_compare.Tolerance(), log=None) -> dict:
    """Run `model` on `images` as arm64 (emulated) and on the host; return the comparison record."""
    model = Path(model)
    if model.suffix != ".tflite" or not model.is_file():
        raise InputError(expected_received("artifact", "an existing .tflite file", repr(str(model))))
    images = np.ascontiguousarray(images, dtype=np.float32)
    if images.ndim != 4 or len(images) == 0:
        raise InputError(expected_received("images", "a non-empty N x H x W x C array", images.shape))
    userland = userland or arm64_userland.ensure_userland(log=log)
    runs = min(len(images), EMULATED_RUNS) if runs is None else runs
    timeout = timeout_for(len(images), runs)
    log = log or arm64_userland._stderr_log
    with tempfile.TemporaryDirectory(prefix="edgepipe-arm64-") as tmp:
        work = Path(tmp)
        inputs = work / "inputs.npy"
        np.save(inputs, images)
        view = userland.view(work, cpu)
        log(f"arm64 (emulated {cpu}): {model.name} on {len(images)} images + {runs} timed runs "
            "(seconds per image under emulation) ...")
        arm = run_side(userland.command(view, cpu, RUNNER), userland.env(work), model, inputs,
                       work / "arm64.npz", threads, 0, runs, "arm64 (emulated)", timeout)
        log(f"host ({platform.machine()}): the same images through the same runner ...")
        host = run_side([sys.executable, "-B", str(RUNNER)], _host_env(), model, inputs, work / "host.npz",
                        threads, 0, runs, "host", timeout)
    if arm.report.get("machine") != "aarch64":
        raise StageError(expected_received("emulated runner's machine", "aarch64", arm.report.get("machine")))
    agreement = arm64_compare.compare(arm.raw, host.raw, arm.scores, host.scores, labels, tol)
    return {
        "model": str(model), "images": len(images), "threads": threads,
        "status": "passed" if agreement["within_tolerance"] else "failed",
        "agreement": agreement,
        "arm64": _side_record(arm, {"emulator": qemu_version(), "cpu": cpu, "userland": userland.key}),
        "host": _side_record(host, {"cpu": _host_cpu()}),
        "emulated_latency": {**_latency(arm.report), "note": EMULATED_NOTE},
        "host_latency": _latency(host.report),
    }


def _side_record(side: SideRun, extra: dict) -> dict:
    r = side.report
    return {"machine": r.get("machine"), "python": r.get("python"), "numpy": r.get("numpy"),
            "runtime": r.get("runtime"), "input": r.get("input"), "process_seconds": round(side.seconds, 2), **extra}


def _latency(report: dict) -> dict:
    lat = report.get("latency") or {}
    return {k: lat[k] for k in ("p50_ms", "p90_ms", "mean_ms", "load_ms", "first_ms", "runs", "warmup") if k in lat}


def _host_env() -> dict:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the runner is self-contained: only the host Python's own packages
    return env


def qemu_version() -> str | None:
    exe = shutil.which(QEMU)
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    first = out.strip().splitlines()[0] if out.strip() else ""
    return first.removeprefix("qemu-aarch64 version ").strip() or None


def _host_cpu() -> str:
    from edgepipe.core.versions import cpu_model

    return cpu_model()


def _last_json(stdout: str) -> dict:
    from edgepipe.boards.device_runner import parse_output

    return parse_output(stdout) or {}


def _tail(text: str, n: int = 4) -> str:
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    return " | ".join(lines[-n:]) or "no output"


def pipeline_row(ctx, artifact_name: str, precision: str, build, n: int, rows: list[dict]) -> dict:
    """The run report's row "<artifact> (arm64, emulated)": a cached stage keyed by artifact, data and userland."""
    from edgepipe.core.cache import cache_root
    from edgepipe.core.errors import EdgepipeError
    from edgepipe.core.hashing import sha256_file
    from edgepipe.core.versions import cpu_model, tool_versions

    row = {"artifact": f"{artifact_name} (arm64, emulated)", "target": "arm64-emulated", "precision": precision,
           "reasons": []}
    ctx.console.print(f"[bold]{row['artifact']}[/]")
    base = next((r for r in rows if r.get("artifact") == artifact_name), None)
    if base is None or base.get("status") == "error":
        return {**row, "status": "skipped", "reasons": [f"{artifact_name} was not built"]}
    problem = arm64_userland.host_problems(need_build=arm64_userland.cached_userland(cache_root()) is None)
    if problem is not None:
        return {**row, "status": "skipped", "reasons": [str(problem)], "unavailable": problem.status}
    try:
        art = build()  # a cache hit: the artifact row above built it
        valid = ctx.validation
        k = min(n, len(valid))
        key = {"artifact": art.sha256, "images": k, "data": valid.sha256, "threads": ctx.cfg.threads,
               "cpu": DEFAULT_CPU, "userland": arm64_userland.userland_params(), "runner": sha256_file(RUNNER),
               "host_cpu": cpu_model(), **tool_versions("ai-edge-litert", "numpy")}
        res = ctx.stage(f"arm64-emulated-{precision}", key,
                        lambda out: verify(art.path, valid.images[:k], valid.labels[:k], threads=ctx.cfg.threads))
        rec = res.meta
    except arm64_userland.Unavailable as err:
        return {**row, "status": "skipped", "reasons": [str(err)], "unavailable": err.status}
    except EdgepipeError as err:
        return {**row, "status": "error", "reasons": [str(err)]}
    except Exception as err:  # a toolchain failure: a row, not an abort
        return {**row, "status": "error", "reasons": [f"{type(err).__name__}: {err}"]}
    lat = rec["emulated_latency"]
    note = arm64_compare.summary(rec["agreement"])
    if "p50_ms" in lat:
        note += f"; emulated p50 {lat['p50_ms']:.0f} ms (not a device figure)"
    return {**row, "status": rec["status"], "reasons": rec["agreement"]["reasons"], "note": note,
            "size_mb": art.size_bytes / 1e6, "sha256": art.sha256, "format": art.format,
            "arm64": {k: rec[k] for k in ("images", "threads", "agreement", "arm64", "host")},
            "emulated_latency": lat, "host_latency": rec["host_latency"]}
