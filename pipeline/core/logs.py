"""Log levels, and toolkit noise kept off the terminal unless asked for (`edgepipe -v`).

Verbosity: -1 quiet (errors and results), 0 default, 1 verbose (toolkits' own logs too), 2 debug. It
lives in the environment (`EDGEPIPE_VERBOSITY`), so the child processes a run starts (probe, latency,
executors) follow it.

Toolkits print in three ways, each handled here:
- Python loggers (tensorflow, absl, nncf, ...): set to ERROR unless verbose (`set_verbosity`);
  NNCF's handler, which writes to stdout, is pointed at stderr (`tame_logger`).
- Python prints to stdout (NNCF's progress bars): `toolkit_stdout()` around the call sends them to
  stderr when verbose and nowhere otherwise, so stdout stays for machine-readable output (`--json`).
- C++ lines written straight to file descriptor 2 (absl's "WARNING: All log messages before
  absl::InitializeLog()...", TensorFlow's "I0000 ... cudart_stub.cc" lines, LiteRT's "INFO: Created
  TensorFlow Lite XNNPACK delegate for CPU.", the TFLite converter's "fully_quantize: ..."): neither
  TF_CPP_MIN_LOG_LEVEL nor absl's Python verbosity reaches all of them, so `StderrFilter` puts a pipe
  on fd 2 and forwards every line that is not such noise to the real stderr; Python's own `sys.stderr`
  (progress, tables, errors) bypasses the pipe and keeps its terminal.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import threading

ENV = "EDGEPIPE_VERBOSITY"
QUIET, DEFAULT, VERBOSE, DEBUG = -1, 0, 1, 2
TOOLKIT_LOGGERS = ("tensorflow", "absl", "keras", "nncf", "openvino", "onnxruntime", "tf2onnx", "ray", "h5py",
                   "PIL", "jax", "py.warnings")
# whole lines the toolkits' C++ code writes to fd 2 (bytes: they are matched before decoding)
NOISE = re.compile(
    rb"^(?:WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|[IWE]\d{4} [\d:.]+\s+\d+ [\w./-]+:\d+\] "  # absl / glog lines (fatal F lines pass)
    rb"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IW] [\w/.-]+:\d+\] "  # TensorFlow's older C++ log format
    rb"|INFO: (?:Created|Initialized|Replacing) TensorFlow Lite"  # LiteRT delegates (XNNPACK)
    rb"|fully_quantize: \d+, inference_type: "  # the TFLite converter's quantizer
    rb"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \[[IW]:onnxruntime:"  # ONNX Runtime's own log
    rb")")


def verbosity() -> int:
    try:
        return max(QUIET, min(DEBUG, int(os.environ.get(ENV, "0"))))
    except ValueError:
        return DEFAULT


def toolkit_level() -> int:
    """The level of the toolkits' Python loggers: their INFO only when verbose."""
    return {VERBOSE: logging.INFO, DEBUG: logging.DEBUG}.get(verbosity(), logging.ERROR)


def set_verbosity(level: int) -> None:
    """Log levels for this process and the children it starts."""
    level = max(QUIET, min(DEBUG, level))
    os.environ[ENV] = str(level)
    if level < VERBOSE:  # TensorFlow's C++ INFO and WARNING lines (ERROR too when quiet)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3" if level == QUIET else "2")
    logging.getLogger().setLevel({QUIET: logging.ERROR, DEFAULT: logging.WARNING, VERBOSE: logging.INFO,
                                  DEBUG: logging.DEBUG}[level])
    logging.captureWarnings(True)  # toolkits' Python warnings become log records of "py.warnings"
    for name in TOOLKIT_LOGGERS:
        tame_logger(name)


def tame_logger(name: str) -> None:
    """A toolkit's logger at `toolkit_level()`, its handlers writing to stderr (never stdout). Call it again
    after importing a toolkit that sets up its own logger (NNCF does, on stdout at INFO)."""
    logger = logging.getLogger(name)
    logger.setLevel(toolkit_level())
    for handler in logger.handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stdout, sys.__stdout__):
            handler.setStream(sys.stderr)
        handler.setLevel(toolkit_level())


@contextlib.contextmanager
def toolkit_stdout():
    """Around a toolkit call that prints to stdout (progress bars): to stderr when verbose, else nowhere."""
    with contextlib.redirect_stdout(sys.stderr if verbosity() >= VERBOSE else io.StringIO()):
        yield


def is_noise(line: bytes) -> bool:
    return NOISE.match(line) is not None


class StderrFilter:
    """fd 2 through a pipe whose reader drops toolkit noise lines and forwards the rest; `sys.stderr`
    (and logging handlers on it) moves to a stream on the original fd, so Python's output keeps its
    terminal (colours, progress bars) and never waits on the pipe. `close()` puts fd 2 back."""

    def __init__(self) -> None:
        sys.stderr.flush()
        self.saved = os.dup(2)
        read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        self.old_stderr = sys.stderr
        self.stream = io.TextIOWrapper(io.FileIO(self.saved, "w", closefd=False), write_through=True,
                                       encoding=getattr(sys.stderr, "encoding", None) or "utf-8",
                                       errors="backslashreplace", line_buffering=True)
        sys.stderr = self.stream
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is self.old_stderr:
                handler.setStream(self.stream)
        self.thread = threading.Thread(target=self._pump, args=(read,), name="edgepipe-stderr-filter", daemon=True)
        self.thread.start()

    def _pump(self, read: int) -> None:
        with open(read, "rb", buffering=0) as pipe:
            pending = b""
            while chunk := pipe.read(65536):
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                kept = [ln + b"\n" for ln in lines if not is_noise(ln)]
                if kept:
                    os.write(self.saved, b"".join(kept))
            if pending and not is_noise(pending):
                os.write(self.saved, pending)

    def close(self, timeout: float = 2.0) -> None:
        """fd 2 back to the terminal; what children still hold of the pipe drains until `timeout`."""
        with contextlib.suppress(OSError, ValueError):
            self.stream.flush()
        os.dup2(self.saved, 2)
        self.thread.join(timeout)


def filter_toolkit_noise() -> StderrFilter | None:
    """Install a `StderrFilter` for this process unless verbose, or unless stderr is not the process's own
    (a test runner captured it); closed at exit."""
    if verbosity() >= VERBOSE or sys.stderr is not sys.__stderr__:
        return None
    try:
        filt = StderrFilter()
    except OSError:  # no fd 2 (a daemon), or no pipes left: noise is better than no run
        return None
    import atexit

    atexit.register(filt.close)
    return filt


@contextlib.contextmanager
def keep_root_logger():
    """Undo what a toolkit does to the root logger inside the block: OpenVINO's model conversion (ovc's
    `init_logger`) sets the root level to ERROR for the rest of the process, which silenced edgepipe's own
    warnings (a small calibration set, missing classes) for every later target of the run."""
    root = logging.getLogger()
    level, handlers, filters = root.level, list(root.handlers), list(root.filters)
    try:
        yield
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers
        root.filters[:] = filters
