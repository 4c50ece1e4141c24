"""Run foreign code in a supervised child process, and make SIGTERM always stop edgepipe.

`run_limited(argv, limits, ...)` starts a fresh interpreter in its own process group. The child
limits itself first thing (`limit_self`, called by every child entry point): RLIMIT_AS (memory),
RLIMIT_CPU (the kernel sends SIGXCPU, then SIGKILL), no core dumps, and it dies with its parent
(PR_SET_PDEATHSIG on Linux), so a killed edgepipe never leaves a model running. The parent kills
the whole group when the child goes `timeout_s` seconds without a line on stdout (a job without
progress lines: `timeout_s` in total), and on any exception of its own (Ctrl-C, SIGTERM). The
child's home, cache and temporary folders (HOME, XDG_CACHE_HOME, TMPDIR) are one private temporary
folder: what a runtime writes there (onnxruntime's device id and session files, OpenVINO's
telemetry ids) goes away with the child instead of into the user's home.

The CPU limit defaults to (threads + 1) x timeout x (progress steps + 1): no step may use more
than the wall timeout on every thread. `Limits.describe()` names all three in messages.

`install_sigterm()` (the CLI's `main`) turns SIGTERM into `Terminated` in the main thread, where
commands clean up like for Ctrl-C. The signal is also remembered (`TERMINATED`, pipeline/core/signals.py): a
`Terminated` swallowed in a finalizer is raised again before the next stage (`stop_if_terminated`), and the CLI
exits 143 all the same. Python runs signal handlers only between bytecodes, so a main thread stuck in native
code would never see it: a watcher thread, woken through `signal.set_wakeup_fd` even then, kills every
supervised child group and exits the process with 143 if the main thread has not finished `GRACE_S` seconds
after the signal.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from edgepipe.core.signals import raise_terminated

DEFAULT_TIMEOUT_S = 120.0
DEFAULT_MEMORY_MB = 8192  # address space, not RSS
GRACE_S = 30.0  # after SIGTERM, how long the main thread has to clean up before the process exits anyway
LIMITS_ENV = "EDGEPIPE_CHILD_LIMITS"


@dataclass(frozen=True)
class Limits:
    timeout_s: float = DEFAULT_TIMEOUT_S  # wall clock without progress, enforced by the parent
    memory_mb: int = DEFAULT_MEMORY_MB  # RLIMIT_AS in the child
    cpu_s: int | None = None  # RLIMIT_CPU in the child; default: see cpu_for

    def describe(self) -> str:
        cpu = f", CPU limit {self.cpu_s} s" if self.cpu_s else ""
        return f"timeout {self.timeout_s:g} s, memory limit {self.memory_mb} MiB{cpu}"

    def cpu_for(self, threads: int, steps: int = 0) -> int:
        if self.cpu_s:
            return int(self.cpu_s)
        return int(self.timeout_s * (max(1, threads) + (1 if steps else 0)) * (steps + 1)) + 10


@dataclass
class Outcome:
    returncode: int
    stderr: str
    seconds: float
    timed_out: bool


_LIVE: dict[int, subprocess.Popen] = {}
_LIVE_LOCK = threading.Lock()


def child_env(limits: Limits, cpu_s: int, scratch: Path) -> dict:
    """The environment of a child: edgepipe first on its path, its limits, quiet TensorFlow logs, and a
    private home / cache / temporary folder (runtimes write there; removed with the child), while
    edgepipe's own cache stays where the parent has it."""
    from edgepipe.core.cache import cache_root

    root = str(Path(__file__).resolve().parents[2])
    rest = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + rest if rest else ""), "TF_CPP_MIN_LOG_LEVEL": "2",
            LIMITS_ENV: json.dumps({"memory_mb": int(limits.memory_mb), "cpu_s": int(cpu_s)}),
            "EDGEPIPE_CACHE": str(cache_root()), "XDG_CACHE_HOME": str(scratch), "TMPDIR": str(scratch),
            "HOME": str(scratch)}


def run_limited(module: str, args: list[str], limits: Limits, threads: int = 1, steps: int = 0,
                on_line=None) -> Outcome:
    """`python -m module args...` under `limits`; stdout lines go to `on_line(line)` as they come."""
    cpu_s = limits.cpu_for(threads, steps)
    with tempfile.TemporaryFile() as err, tempfile.TemporaryDirectory(prefix="edgepipe-child-") as scratch:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", module, *map(str, args)],
                                env=child_env(limits, cpu_s, Path(scratch)),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, text=True,
                                errors="replace", start_new_session=True)  # its own group: one kill stops it all
        with _LIVE_LOCK:
            _LIVE[proc.pid] = proc
        timed_out = threading.Event()
        last = [time.monotonic()]

        def watchdog() -> None:
            while proc.poll() is None:
                if time.monotonic() - last[0] > limits.timeout_s:
                    timed_out.set()
                    kill_group(proc)
                    return
                time.sleep(min(0.2, limits.timeout_s / 10))

        dog = threading.Thread(target=watchdog, daemon=True)
        dog.start()
        try:
            for line in proc.stdout:
                last[0] = time.monotonic()
                if on_line is not None:
                    on_line(line.rstrip("\n"))
            proc.wait()
        except BaseException:  # Ctrl-C / SIGTERM / an error in on_line: never leave the child behind
            kill_group(proc)
            raise
        finally:
            with _LIVE_LOCK:
                _LIVE.pop(proc.pid, None)
            proc.stdout.close()
        dog.join(1)
        err.seek(0)
        tail = err.read()[-4000:].decode(errors="replace")
    return Outcome(proc.returncode, tail, time.perf_counter() - t0, timed_out.is_set())


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass


def kill_all() -> None:
    with _LIVE_LOCK:
        procs = list(_LIVE.values())
    for p in procs:
        kill_group(p)


def stderr_tail(text: str, n: int = 3) -> str:
    lines = [ln for ln in (text or "").splitlines() if ln.strip()]
    return f" (stderr: {' | '.join(lines[-n:])[-400:]})" if lines else ""


# ---- in the child ---------------------------------------------------------------------------
def limit_self(memory_mb: int | None = None, cpu_s: int | None = None) -> None:
    """First thing in a child: its limits (from the arguments, else from the environment)."""
    import resource

    env = json.loads(os.environ.get(LIMITS_ENV) or "{}")
    memory_mb = memory_mb or env.get("memory_mb")
    cpu_s = cpu_s or env.get("cpu_s")
    if memory_mb:
        limit = int(memory_mb) << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if cpu_s:
        resource.setrlimit(resource.RLIMIT_CPU, (int(cpu_s), int(cpu_s) + 5))  # SIGXCPU, then SIGKILL
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash must not write a core dump
    _die_with_parent()


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent died before the call
            os._exit(1)
    except (OSError, AttributeError):
        pass


# ---- SIGTERM ----------------------------------------------------------------------------------
def install_sigterm(grace_s: float = GRACE_S) -> None:
    """SIGTERM -> Terminated in the main thread; the process exits 143 at the latest `grace_s` later."""
    signal.signal(signal.SIGTERM, raise_terminated)
    try:
        r, w = os.pipe()
        os.set_blocking(w, False)
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    except (ValueError, OSError):  # not the main thread, or no pipes: the handler alone
        return

    def watch() -> None:
        while True:
            try:
                data = os.read(r, 512)
            except OSError:
                return
            if signal.SIGTERM in data:
                time.sleep(grace_s)
                kill_all()
                os._exit(143)

    threading.Thread(target=watch, name="edgepipe-sigterm", daemon=True).start()
