"""Load an artifact and run its first inference in a child process, before the parent touches it.

A model file can crash a runtime (a segfault or abort in a kernel), hang it, or make it
allocate without bound. The parent never finds out the hard way: a child process (a fresh
interpreter: `python -m pipeline.run.probe`) limits its own address space (RLIMIT_AS) and core
dumps, builds the artifact's runner exactly as the validators do (the target's
`make_runner(artifact, threads, **runner_params)`), and runs one inference on a zero image.
The parent waits with a timeout, kills the child's whole process group if it is exceeded,
and turns every failure (signal, exit code, timeout, memory limit) into an `ArtifactProbeError`
naming the artifact and what happened. Only then does the parent load the artifact itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.errors import EdgepipeError, StageError, expected_received

DEFAULT_TIMEOUT_S = 120.0
DEFAULT_MEMORY_MB = 8192  # address space, not RSS (elpv-xception IR and TFLite probe fine under 1024)


class ArtifactProbeError(StageError):
    """The artifact crashed, hung or failed in its child-process load + first inference."""


@dataclass(frozen=True)
class ProbeLimits:
    timeout_s: float = DEFAULT_TIMEOUT_S  # wall clock, enforced by the parent
    memory_mb: int = DEFAULT_MEMORY_MB  # RLIMIT_AS in the child
    cpu_s: int | None = None  # RLIMIT_CPU in the child (the kernel sends SIGXCPU); default: timeout x threads

    def describe(self) -> str:
        cpu = f", CPU limit {self.cpu_s} s" if self.cpu_s else ""
        return f"timeout {self.timeout_s:g} s, memory limit {self.memory_mb} MiB{cpu}"


def probe(path: Path, fmt: str, *, target: str | None = None, params: dict | None = None, threads: int = 1,
          shape: tuple[int, ...] | None = None, limits: ProbeLimits = ProbeLimits(), what: str = "artifact") -> dict:
    """Load + first inference of `path` in a child. Returns the child's facts; raises ArtifactProbeError."""
    path = Path(path)
    request = {"path": str(path), "format": fmt, "target": target, "params": params or {}, "threads": threads,
               "shape": list(shape) if shape is not None else None, "memory_mb": limits.memory_mb,
               "cpu_s": limits.cpu_s or int(limits.timeout_s * max(1, threads)) + 10}
    label = f"{what} {str(path)!r}"
    expected = f"load and first inference to succeed in a child process ({limits.describe()})"
    with tempfile.TemporaryDirectory(prefix="edgepipe-probe-") as tmp:
        req, res = Path(tmp) / "request.json", Path(tmp) / "result.json"
        req.write_text(json.dumps(request))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parents[2]), *filter(None, [os.environ.get("PYTHONPATH")])]),
            "TF_CPP_MIN_LOG_LEVEL": "2"}
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.run.probe", str(req), str(res)], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)  # its own process group: a timeout kills all of it
        try:
            _, err = proc.communicate(timeout=limits.timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise ArtifactProbeError(expected_received(
                label, expected, f"no answer after {limits.timeout_s:g} s (hung; the child was killed)")) from None
        except BaseException:  # Ctrl-C / SIGTERM in the parent: never leave the child behind
            _kill_group(proc)
            raise
        seconds = time.perf_counter() - t0
        result = json.loads(res.read_text()) if res.is_file() else None
    tail = _tail(err)
    if proc.returncode < 0:
        sig = signal.Signals(-proc.returncode).name
        raise ArtifactProbeError(expected_received(label, expected, f"the child was killed by {sig}{tail}"))
    if result is None or not result.get("ok"):
        why = result["error"] if result else f"exit code {proc.returncode} without a result{tail}"
        raise ArtifactProbeError(expected_received(label, expected, why))
    return {**result["facts"], "probe_seconds": round(seconds, 3)}


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _tail(err: bytes | None) -> str:
    lines = [ln for ln in (err or b"").decode(errors="replace").splitlines() if ln.strip()]
    return f" (stderr: {' | '.join(lines[-3:])[-400:]})" if lines else ""


def probed_stage(ctx, art, job, key: dict) -> dict:
    """The run's pre-flight of one built artifact: structural check, then the child probe. Cached on success."""
    from pipeline import formats
    from pipeline.core.errors import InputError
    from pipeline.formats.inspect import check_model_file

    limits = ProbeLimits(ctx.cfg.probe.timeout_s, ctx.cfg.probe.memory_mb)
    known = formats.find(art.format) or formats.for_suffix(art.path)
    fmt = known.name if known else None  # None: no structural check known

    def fn(out: Path) -> dict:
        try:
            if fmt is not None:
                check_model_file(art.path, fmt, what=f"{art.name} artifact")
        except InputError as err:  # a built artifact that is malformed: this row's error, not bad user input
            raise ArtifactProbeError(str(err)) from err
        return probe(art.path, art.format, target=job.target, params=job.runner_params, threads=ctx.cfg.threads,
                     shape=ctx.spec.shape, limits=limits, what=f"{art.name} artifact")

    name = f"probe-{art.name.replace('/', '-')}"
    return ctx.stage(name, {**key, "limits": [limits.timeout_s, limits.memory_mb]}, fn).meta


# ---- the child ----------------------------------------------------------------------------
def _limit(memory_mb: int, cpu_s: int) -> None:
    import resource

    limit = int(memory_mb) << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CPU, (int(cpu_s), int(cpu_s) + 5))  # SIGXCPU, then SIGKILL
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash must not write a core dump


def _make_runner(req: dict):
    from pipeline.core.artifacts import Artifact

    path = Path(req["path"])
    if req["target"]:  # exactly the validators' runner: the target's make_runner with the job's options
        import targets

        art = Artifact(path.name, req["target"], req["format"], "", path, (path.name,), "", 0)
        return targets.load_module(req["target"]).make_runner(art, req["threads"], **req["params"])
    from pipeline.formats.runners import RUNNERS, open_runner

    if req["format"] in RUNNERS:  # a file without a target: its format's host runner, fed NHWC as edgepipe does
        return open_runner(req["format"], path, req["threads"], layout="nhwc")
    raise EdgepipeError(expected_received("probe", f"a target, or format {' / '.join(RUNNERS)}", req["format"]))


def _child(req: dict) -> dict:
    import numpy as np

    t0 = time.perf_counter()
    runner = _make_runner(req)
    load_s = time.perf_counter() - t0
    shape = tuple(req["shape"]) if req["shape"] else tuple(runner.shape[1:])
    t0 = time.perf_counter()
    y = np.asarray(runner.predict(np.zeros(shape, np.float32)))
    if not np.all(np.isfinite(y)):
        raise EdgepipeError(expected_received("first inference on a zero image", "finite scores",
                                              f"{np.asarray(y).ravel()[:8].tolist()}"))
    return {"load_s": round(load_s, 3), "first_s": round(time.perf_counter() - t0, 3),
            "output_shape": list(y.shape), "runtime": getattr(runner, "runtime", None)}


def main(argv: list[str]) -> int:
    req_path, res_path = argv
    req = json.loads(Path(req_path).read_text())
    _limit(req["memory_mb"], req["cpu_s"])
    try:
        out = {"ok": True, "facts": _child(req)}
    except MemoryError:
        out = {"ok": False, "error": f"MemoryError: the memory limit of {req['memory_mb']} MiB was exceeded"}
    except EdgepipeError as err:
        out = {"ok": False, "error": str(err)}
    except Exception as err:  # the runtime's own error (e.g. RuntimeError from allocate_tensors)
        msg = str(err).strip().splitlines()[0][:400] if str(err).strip() else ""
        out = {"ok": False, "error": f"{type(err).__name__}: {msg or '(no message)'} "
                                     f"(memory limit {req['memory_mb']} MiB)"}
    Path(res_path).write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
