"""Load an artifact and run its first inference in a child process, before the parent touches it;
and run a foreign model entirely in such a child (`run_foreign`: `edgepipe validate`).

A model file can crash a runtime (a segfault or abort in a kernel), hang it, or make it
allocate without bound. The parent never finds out the hard way: a child process (a fresh
interpreter: `python -m edgepipe.engine.probe`, supervised by `edgepipe.core.children`) limits its
own address space (RLIMIT_AS), CPU time and core dumps, builds the artifact's runner exactly as
the validators do (the target's `make_runner(artifact, threads, **runner_params)`; a foreign file:
`open_runner`), and runs one inference on a zero image; a foreign model's images are then scored on
its runtime's throughput path (`validators.accuracy.predict_all`: the batch-1 scores, sooner;
tests/test_throughput.py). The parent kills the child's whole
process group when it stops making progress for the timeout, and turns every failure (signal,
exit code, timeout, memory limit) into an `ArtifactProbeError` naming the artifact and what
happened. Only then does the parent load the artifact itself; a foreign model never is.
"""

from __future__ import annotations

import json
import signal
import sys
import tempfile
import time
from pathlib import Path

from edgepipe.core.children import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_S, Limits, limit_self, run_limited, stderr_tail
from edgepipe.core.errors import EdgepipeError, InputError, StageError, expected_received, runtime_reason

ProbeLimits = Limits  # the pipeline's limits (config `probe`) are the supervised child's limits
__all__ = ["DEFAULT_MEMORY_MB", "DEFAULT_TIMEOUT_S", "ArtifactProbeError", "ProbeLimits", "probe", "run_foreign"]


class ArtifactProbeError(StageError):
    """The artifact crashed, hung or failed in its child-process load + first inference."""


def probe(path: Path, fmt: str, *, target: str | None = None, params: dict | None = None, threads: int = 1,
          shape: tuple[int, ...] | None = None, limits: Limits = Limits(), what: str = "artifact") -> dict:
    """Load + first inference of `path` in a child. Returns the child's facts; raises ArtifactProbeError."""
    request = {"path": str(Path(path)), "format": fmt, "target": target, "params": params or {}, "threads": threads,
               "shape": list(shape) if shape is not None else None}
    return _in_child(request, limits, threads, what, "load and first inference to succeed")


def run_foreign(path: Path, fmt: str, threads: int, limits: Limits, images=None, progress=None,
                what: str = "artifact") -> dict:
    """A model edgepipe did not build, only ever run in a limited child: load + first inference, its
    input (H, W, C), layout and precision; with `images` (N, H, W, C) also its scores ("scores")."""
    import numpy as np

    request = {"path": str(Path(path)), "format": fmt, "target": None, "params": {}, "threads": threads,
               "shape": None, "foreign": True}
    with tempfile.TemporaryDirectory(prefix="edgepipe-run-") as tmp:
        n = 0
        if images is not None:
            n = len(images)
            request.update(images=str(Path(tmp) / "images.npy"), scores=str(Path(tmp) / "scores.npy"))
            np.save(request["images"], np.ascontiguousarray(images, dtype=np.float32))
        facts = _in_child(request, limits, threads, what, f"a loadable {fmt} model that runs", n, progress)
        if images is not None:
            facts["scores"] = np.load(request["scores"])
    return facts


def _in_child(request: dict, limits: Limits, threads: int, what: str, doing: str, steps: int = 0,
              progress=None) -> dict:
    label = f"{what} {request['path']!r}"
    cpu = limits.cpu_for(threads, steps)
    expected = f"{doing} in a child process ({Limits(limits.timeout_s, limits.memory_mb, cpu).describe()})"
    request.update(memory_mb=limits.memory_mb, cpu_s=cpu)

    def on_line(line: str) -> None:
        if progress is not None and line.startswith("progress "):
            progress(int(line.split()[1]))

    with tempfile.TemporaryDirectory(prefix="edgepipe-probe-") as tmp:
        req, res = Path(tmp) / "request.json", Path(tmp) / "result.json"
        req.write_text(json.dumps(request))
        out = run_limited("edgepipe.engine.probe", [req, res], limits, threads, steps, on_line)
        result = json.loads(res.read_text()) if res.is_file() else None
    tail = stderr_tail(out.stderr)
    if out.timed_out:
        raise ArtifactProbeError(expected_received(
            label, expected, f"no answer after {limits.timeout_s:g} s (hung; the child was killed)"))
    if out.returncode < 0:
        sig = signal.Signals(-out.returncode).name
        raise ArtifactProbeError(expected_received(label, expected, f"the child was killed by {sig}{tail}"))
    if result is None or not result.get("ok"):
        why = result["error"] if result else f"exit code {out.returncode} without a result{tail}"
        raise ArtifactProbeError(expected_received(label, expected, why))
    return {**result["facts"], "probe_seconds": round(out.seconds, 3)}


def probed_stage(ctx, art, job, key: dict) -> dict:
    """The run's pre-flight of one built artifact: structural check, then the child probe. Cached on success."""
    from edgepipe import formats
    from edgepipe.formats.inspect import check_model_file

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
def _make_runner(req: dict):
    from edgepipe.core.artifacts import Artifact

    path = Path(req["path"])
    if req.get("foreign"):  # a file edgepipe did not build: the standalone commands' runner (layout "auto")
        from edgepipe.formats.runners import open_runner

        return open_runner(req["format"], path, req["threads"])
    if req["target"]:  # exactly the validators' runner: the target's make_runner with the job's options
        from edgepipe import targets

        art = Artifact(path.name, req["target"], req["format"], "", path, (path.name,), "", 0)
        return targets.load_module(req["target"]).make_runner(art, req["threads"], **req["params"])
    from edgepipe.formats.runners import RUNNERS, open_runner

    if req["format"] in RUNNERS:  # a file without a target: its format's host runner, fed NHWC as edgepipe does
        return open_runner(req["format"], path, req["threads"], layout="nhwc")
    raise EdgepipeError(expected_received("probe", f"a target, or format {' / '.join(RUNNERS)}", req["format"]))


def _finite(y, what: str):
    import numpy as np

    y = np.asarray(y)
    if not np.all(np.isfinite(y)):
        raise EdgepipeError(expected_received(what, "finite scores", f"{y.ravel()[:8].tolist()}"))
    return y


def _child(req: dict) -> dict:
    import numpy as np

    t0 = time.perf_counter()
    runner = _make_runner(req)
    load_s = time.perf_counter() - t0
    facts: dict = {}
    if req.get("foreign"):
        from edgepipe import formats
        from edgepipe.formats.runners import image_input_shape

        shape = image_input_shape(runner)
        facts.update(input_hwc=list(shape), layout=getattr(runner, "layout", "nhwc"),
                     precision=formats.get(req["format"]).detect_precision(Path(req["path"]), runner))
    else:
        shape = tuple(req["shape"]) if req["shape"] else tuple(runner.shape[1:])
    t0 = time.perf_counter()
    y = _finite(runner.predict(np.zeros(shape, np.float32)), "first inference on a zero image")
    facts.update(load_s=round(load_s, 3), first_s=round(time.perf_counter() - t0, 3), output_shape=list(y.shape),
                 runtime=getattr(runner, "runtime", None))
    if req.get("images"):
        from edgepipe.validators.accuracy import predict_all

        images = np.load(req["images"], allow_pickle=False)

        def tick(n: int) -> None:  # the throughput paths call this under their own lock
            sys.stdout.write(f"progress {n}\n")
            sys.stdout.flush()

        # the runtime's throughput path, as the pipeline's accuracy passes: the batch-1 scores, sooner
        scores = np.asarray(predict_all(runner, images, tick), dtype=np.float32).reshape(len(images), y.size)
        np.save(req["scores"], scores)
    return facts


def main(argv: list[str]) -> int:
    req_path, res_path = argv
    req = json.loads(Path(req_path).read_text())
    limit_self(req["memory_mb"], req["cpu_s"])
    try:
        out = {"ok": True, "facts": _child(req)}
    except MemoryError:
        out = {"ok": False, "error": f"MemoryError: the memory limit of {req['memory_mb']} MiB was exceeded"}
    except EdgepipeError as err:
        out = {"ok": False, "error": str(err)}
    except Exception as err:  # the runtime's own error (e.g. RuntimeError from allocate_tensors)
        msg = runtime_reason(err)
        out = {"ok": False, "error": f"{type(err).__name__}: {msg or '(no message)'} "
                                     f"(memory limit {req['memory_mb']} MiB)"}
    Path(res_path).write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
