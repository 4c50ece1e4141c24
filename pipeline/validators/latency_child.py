"""Latency measured in a fresh child process: `python -m edgepipe.validators.latency_child REQ.json`.

The child imports only the artifact's runtime, so its peak RSS (VmHWM) is that of a
process holding the runtime, the model and the few input images it cycles over. It prints
`progress N` lines while it works and one final `result {json}` line on stdout.

`measure_in_child` is the parent side: it writes the request, streams progress into a bar,
and turns a missing runtime into DeviceUnavailableError (exit 3: could not be validated here).
The child is supervised like every model run (`edgepipe.core.children`): memory and CPU limits,
its own process group, killed when it makes no progress for the timeout or when edgepipe stops.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edgepipe.core.children import Limits, limit_self, run_limited
from edgepipe.core.errors import DeviceUnavailableError, StageError

RUNTIME_MISSING = 3
DEFAULT_LIMITS = Limits(timeout_s=600.0)  # no progress for 10 minutes: hung


def _peak_rss_mb() -> tuple[float, str]:
    """This process's peak RSS. VmHWM belongs to the address space created by exec, whereas
    getrusage's ru_maxrss is preserved across execve on Linux and would report the (large)
    parent that forked us."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1e3, "VmHWM"  # kB
    except OSError:
        pass
    import resource

    scale = 1e6 if sys.platform == "darwin" else 1e3  # bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale, "ru_maxrss"


def _child(req_path: str) -> int:
    import psutil

    from edgepipe.validators import machine_load
    from edgepipe.validators.latency import time_end_to_end, time_runner

    limit_self()  # the limits the parent put in the environment
    req = json.loads(Path(req_path).read_text())

    def tick(n=1):
        sys.stdout.write(f"progress {n}\n")
        sys.stdout.flush()

    try:
        from edgepipe.formats.runners import runtime_module

        runtime_module(req["format"])  # import the runtime before the baseline
    except ImportError as err:
        sys.stdout.write("result " + json.dumps({"error": f"runtime not installed: {err}"}) + "\n")
        return RUNTIME_MISSING
    images = np.load(req["images"])
    proc = psutil.Process(os.getpid())
    rss_base = proc.memory_info().rss / 1e6
    t0 = time.perf_counter()
    runner = _open(req)
    load_ms = (time.perf_counter() - t0) * 1e3
    rss_loaded = proc.memory_info().rss / 1e6
    before = machine_load.snapshot()
    res = {"load_ms": load_ms, **time_runner(runner, images, req["warmup"], req["runs"], tick)}
    if req.get("paths"):
        from edgepipe.calibration.preprocess import PreprocessSpec

        spec = PreprocessSpec(**req["spec"])
        res["end_to_end"] = time_end_to_end(runner, spec, req["paths"], req["e2e_runs"], tick)
    res["load"] = machine_load.record(before, machine_load.snapshot())
    peak, method = _peak_rss_mb()
    res.update({
        "rss_scope": "child process", "rss_baseline_mb": rss_base, "rss_after_load_mb": rss_loaded,
        "peak_rss_mb": peak, "peak_rss_source": method, "rss_model_mb": peak - rss_base,
        "threads": req["threads"], "runtime": getattr(runner, "runtime", None),
        **getattr(runner, "info", {}),  # the runner's own facts (e.g. threads it really used) win
    })
    sys.stdout.write("result " + json.dumps(res) + "\n")
    sys.stdout.flush()
    if req.get("count_macs"):  # a foreign file's work per image, read here, under the child's limits, after
        from edgepipe.validators.roofline import count_macs  # the timing is out (a reader crash loses only this)

        macs, why_not = count_macs(req["path"])
        sys.stdout.write("macs " + json.dumps({"macs_per_image": macs} if macs else {"macs_note": why_not}) + "\n")
    return 0


def _open(req: dict):
    """The pipeline's artifacts: exactly the validators' runner (the target's make_runner with the
    job's options, so e.g. an OpenVINO CPU blob is imported as deployed); foreign files: open_runner."""
    if req.get("artifact") and req.get("target"):
        from edgepipe import targets
        from edgepipe.core.artifacts import Artifact

        art = Artifact.from_json(req["artifact"])
        return targets.load_module(req["target"]).make_runner(art, req["threads"], **req.get("options", {}))
    from edgepipe.formats.runners import open_runner

    return open_runner(req["format"], req["path"], req["threads"], **req.get("options", {}))


def measure_in_child(fmt: str, path: str | Path, threads: int, images: np.ndarray, warmup: int, runs: int,
                     options: dict | None = None, spec=None, paths: list[str] | None = None,
                     e2e_runs: int | None = None, progress=None, timeout: float | None = None,
                     artifact: dict | None = None, target: str | None = None, limits: Limits | None = None,
                     count_macs: bool = False) -> dict:
    """Run the measurement in a supervised child; `progress(n)` is called as timed runs complete.
    `limits` (default DEFAULT_LIMITS; `timeout` overrides its time without progress). `count_macs`: the child
    also counts the file's MACs per image (`macs_per_image`, or `macs_note` saying why not)."""
    limits = limits or DEFAULT_LIMITS
    if timeout is not None:
        limits = Limits(timeout, limits.memory_mb, limits.cpu_s)
    n_used = max(1, min(len(images), max(runs, warmup + 1)))
    with tempfile.TemporaryDirectory(prefix="edgepipe-lat-") as tmp:
        np.save(Path(tmp) / "images.npy", np.ascontiguousarray(images[:n_used]))
        req = {"format": fmt, "path": str(path), "threads": int(threads), "warmup": int(warmup),
               "runs": int(runs), "options": options or {}, "images": str(Path(tmp) / "images.npy"),
               "artifact": artifact, "target": target, "count_macs": count_macs}
        if spec is not None and paths:
            req.update(spec=spec.as_dict(), paths=[str(p) for p in paths], e2e_runs=int(e2e_runs or runs))
        (Path(tmp) / "req.json").write_text(json.dumps(req))
        found: dict = {}

        def on_line(line: str) -> None:
            if line.startswith("progress ") and progress:
                progress(int(line.split()[1]))
            elif line.startswith("result "):
                found["result"] = json.loads(line[len("result "):])
            elif line.startswith("macs "):
                found["macs"] = json.loads(line[len("macs "):])

        steps = runs + (req.get("e2e_runs") or 0) + warmup
        out = run_limited("edgepipe.validators.latency_child", [Path(tmp) / "req.json"], limits, threads, steps,
                          on_line)
    result, rc = found.get("result"), out.returncode
    if count_macs and result is not None and "error" not in result:  # timed; the count came after it
        if "macs" in found:
            result.update(found["macs"])
        else:
            why = "it ran out of time" if out.timed_out else f"exit {rc}"
            result["macs_note"] = f"MACs not counted: the child stopped while reading the file ({why})"
        return result
    if rc == RUNTIME_MISSING:
        raise DeviceUnavailableError(f"{Path(path).name}: cannot be measured on this host: "
                                     f"{(result or {}).get('error', 'runtime missing')}")
    if out.timed_out:
        raise StageError(f"latency measurement of {Path(path).name}: expected progress within {limits.timeout_s:g} s "
                         f"({limits.describe()}). Received: none (hung; the child was killed)")
    if rc != 0 or result is None:
        raise StageError(f"latency measurement of {Path(path).name} failed (child exit {rc}): "
                         f"{out.stderr[-1500:].strip()}")
    return result


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1]))
