"""`edgetpu_compiler`: run it (timeout, return code, log kept) and parse what it reports.

The compiler prints a summary per output model on stdout and writes an operation log
(`<name>_edgetpu.log`) with one row per (operator, status). Both formats are parsed into the same
shape as the pre-flight report (`edgepipe.targets.edgetpu.preflight`): ops placed on the Edge TPU or the CPU
and why, plus on-chip / off-chip parameter memory. Formats as the compiler prints them (Edge TPU
Compiler 14-16, e.g. google-coral/edgetpu issues #393, #659, #512, #714):

    Edge TPU Compiler version 16.0.384591198
    Started a compilation timeout timer of 180 seconds.

    Model compiled successfully in 2644 ms.

    Input model: model.tflite
    Input size: 4.22MiB
    Output model: out/model_edgetpu.tflite
    Output size: 4.71MiB
    On-chip memory used for caching model parameters: 3.21MiB
    On-chip memory remaining for caching model parameters: 3.78MiB
    Off-chip memory used for streaming uncached model parameters: 0.00B
    Number of Edge TPU subgraphs: 1
    Total number of operations: 165
    Operation log: out/model_edgetpu.log
    ...
    Operator                       Count      Status

    CONV_2D                        70         Mapped to Edge TPU
    DEQUANTIZE                     1          Operation is working on an unsupported data type

With `--num_segments N` the compiler writes `<name>_segment_<i>_of_<N>_edgetpu.tflite`, one summary
block per segment. Failures print "Compilation failed..." / "Internal compiler error. Aborting!"
and exit non-zero.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgepipe.core.errors import StageError

COMPILER = "edgetpu_compiler"
INSTALL_HINT = (
    "install edgetpu_compiler (x86-64 Debian/Ubuntu): curl https://packages.cloud.google.com/apt/doc/apt-key.gpg "
    "| sudo apt-key add -; echo 'deb https://packages.cloud.google.com/apt coral-edgetpu-stable main' | sudo tee "
    "/etc/apt/sources.list.d/coral-edgetpu.list; sudo apt-get update; sudo apt-get install edgetpu-compiler "
    "(or compile with Coral's Colab notebook), then rerun"
)
NOT_INSTALLED = f"not compiled: {COMPILER} not installed"
MAPPED = "Mapped to Edge TPU"

_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "KB": 1000, "MB": 1000**2, "GB": 1000**3}
_SIZE = re.compile(r"^\s*([\d.]+)\s*([KMG]?i?B)\s*$")
_OP_ROW = re.compile(r"^([A-Z][A-Z0-9_]*(?:\([^)]*\))?)\s+(\d+)\s+(\S.*?)\s*$")
_FAILURE = re.compile(r"(Compilation failed.*|Internal compiler error.*|Invalid model.*|ERROR: .*|"
                      r"Model could not be parsed.*)")
_SUMMARY_KEYS = {
    "Input model": "input_model", "Input size": "input_bytes", "Output model": "output_model",
    "Output size": "output_bytes", "On-chip memory used for caching model parameters": "on_chip_bytes",
    "On-chip memory remaining for caching model parameters": "on_chip_remaining_bytes",
    "On-chip memory available for caching model parameters": "on_chip_available_bytes",
    "Off-chip memory used for streaming uncached model parameters": "off_chip_bytes",
    "Number of Edge TPU subgraphs": "edgetpu_subgraphs", "Total number of operations": "total_ops",
    "Operation log": "operation_log",
    "Number of operations that will run on Edge TPU": "ops_on_edgetpu",
    "Number of operations that will run on CPU": "ops_on_cpu",
}


def parse_size(text: str) -> int:
    """'3.21MiB' -> bytes (the compiler prints B, KiB, MiB)."""
    m = _SIZE.match(text)
    if not m or m.group(2) not in _UNITS:
        raise ValueError(f"compiler size: expected a number with a unit like 3.21MiB. Received: {text!r}")
    return round(float(m.group(1)) * _UNITS[m.group(2)])


def parse_summary(stdout: str) -> dict:
    """Compiler stdout -> {"version", "seconds", "models": [per output model], "ops": [...], "failure"}."""
    out: dict = {"version": None, "compile_ms": None, "models": [], "ops": parse_operation_table(stdout),
                 "failure": None}
    current = None
    for raw in stdout.splitlines():
        line = raw.strip()
        if line.startswith("Edge TPU Compiler version"):
            out["version"] = line.rsplit(" ", 1)[-1]
            continue
        m = re.match(r"Models? compiled successfully in (\d+) ms", line)
        if m:
            out["compile_ms"] = int(m.group(1))
            continue
        fail = _FAILURE.match(line)
        if fail:  # the compiler's own reason ("Compilation failed: ...") beats generic "ERROR:" lines
            if out["failure"] is None or (out["failure"].startswith("ERROR") and not line.startswith("ERROR")
                                          and line != "Compilation failed!"):
                out["failure"] = fail.group(1)
            continue
        key, sep, value = line.partition(":")
        field_name = _SUMMARY_KEYS.get(key.strip()) if sep else None
        if field_name is None:
            continue
        if field_name == "input_model":
            current = {}
            out["models"].append(current)
        if current is None:
            continue
        value = value.strip()
        if field_name.endswith("_bytes"):
            current[field_name] = parse_size(value)
        elif field_name in {"edgetpu_subgraphs", "total_ops", "ops_on_edgetpu", "ops_on_cpu"}:
            current[field_name] = int(value)
        else:
            current[field_name] = value
    return out


def parse_operation_table(text: str) -> list[dict]:
    """Rows after the 'Operator  Count  Status' header -> [{"op", "count", "status", "placement"}]."""
    rows, in_table = [], False
    for raw in text.splitlines():
        line = raw.strip()
        if re.match(r"^Operator\s+Count\s+Status$", line):
            in_table = True
            continue
        if not in_table or not line:
            continue
        m = _OP_ROW.match(line)
        if not m:
            in_table = False  # the table ended (a new block or a message)
            continue
        status = m.group(3)
        rows.append({"op": m.group(1), "count": int(m.group(2)), "status": status,
                     "placement": "edgetpu" if status == MAPPED else "cpu"})
    return rows


@dataclass(frozen=True)
class CompileResult:
    """Parsed like the pre-flight: ops and placement, parameter memory per output model."""

    returncode: int
    seconds: float
    command: tuple[str, ...]
    version: str | None
    outputs: tuple[str, ...]  # compiled model file names in out_dir
    log_file: str  # the compiler's stdout+stderr, kept
    operation_logs: tuple[str, ...]
    models: tuple[dict, ...]  # one summary per output model (segment)
    ops: tuple[dict, ...]  # operation table rows (summed over segments)
    on_chip_bytes: int = 0
    off_chip_bytes: int = 0
    ops_on_edgetpu: int = 0
    ops_on_cpu: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict:
        return asdict(self)


def find_compiler() -> str | None:
    return shutil.which(COMPILER)


def compiler_version(exe: str, timeout_s: float = 30) -> str:
    """`edgetpu_compiler --version` -> '16.0.384591198' (the stage key includes it)."""
    try:
        proc = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise StageError(f"{COMPILER} --version: expected a version line. Received: {err}") from err
    m = re.search(r"version\s+(\S+)", proc.stdout + proc.stderr)
    if proc.returncode != 0 or not m:
        raise StageError(f"{COMPILER} --version: expected 'Edge TPU Compiler version X'. Received: rc "
                         f"{proc.returncode}, output {(proc.stdout + proc.stderr).strip()[:200]!r}")
    return m.group(1)


def compile_model(model: Path, out_dir: Path, num_segments: int = 1, timeout_s: float = 600,
                  exe: str | None = None) -> CompileResult:
    """Run the compiler on `model` into `out_dir`. Fails (StageError) on timeout, a non-zero return code,
    or missing outputs, naming the log; never returns a result it did not verify."""
    exe = exe or find_compiler()
    if exe is None:
        raise StageError(f"{NOT_INSTALLED}; {INSTALL_HINT}")
    model, out_dir = Path(model), Path(out_dir)
    cmd = [exe, "--show_operations", "--out_dir", str(out_dir)]
    if num_segments > 1:
        cmd += ["--num_segments", str(num_segments)]
    cmd.append(str(model))
    log = out_dir / "edgetpu_compiler.log"
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as err:
        log.write_text(_as_text(err.stdout) + _as_text(err.stderr))
        raise StageError(f"{COMPILER}: expected it to finish within {timeout_s:g} s. Received: a timeout "
                         f"(killed); partial log: {log}") from err
    seconds = time.perf_counter() - t0
    log.write_text(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}\n[return code {proc.returncode}]\n")
    summary = parse_summary(proc.stdout + "\n" + proc.stderr)
    if proc.returncode != 0:
        why = summary["failure"] or (proc.stdout + proc.stderr).strip()[-300:]
        raise StageError(f"{COMPILER}: expected return code 0. Received: {proc.returncode} ({why}); log: {log}")
    outputs = _expected_outputs(model, out_dir, num_segments)
    missing = [p.name for p in outputs if not p.is_file()]
    if missing:
        raise StageError(f"{COMPILER}: expected output {missing} in {out_dir}. Received: return code 0 without "
                         f"them; log: {log}")
    op_logs = sorted(p.name for p in out_dir.glob(f"{model.stem}*_edgetpu.log"))
    ops = summary["ops"] or [row for name in op_logs for row in parse_operation_table((out_dir / name).read_text())]
    models = summary["models"]
    notes = []
    if not models:
        notes.append("compiler printed no per-model summary: memory figures unknown")
    return CompileResult(
        returncode=proc.returncode, seconds=seconds, command=tuple(cmd), version=summary["version"],
        outputs=tuple(p.name for p in outputs), log_file=log.name, operation_logs=tuple(op_logs),
        models=tuple(models), ops=tuple(ops),
        on_chip_bytes=sum(m.get("on_chip_bytes", 0) for m in models),
        off_chip_bytes=sum(m.get("off_chip_bytes", 0) for m in models),
        ops_on_edgetpu=sum(r["count"] for r in ops if r["placement"] == "edgetpu"),
        ops_on_cpu=sum(r["count"] for r in ops if r["placement"] == "cpu"),
        notes=tuple(notes),
    )


def _expected_outputs(model: Path, out_dir: Path, num_segments: int) -> list[Path]:
    if num_segments > 1:
        return [out_dir / f"{model.stem}_segment_{i}_of_{num_segments}_edgetpu.tflite" for i in range(num_segments)]
    return [out_dir / f"{model.stem}_edgetpu.tflite"]


def _as_text(b) -> str:
    if b is None:
        return ""
    return b.decode(errors="replace") if isinstance(b, bytes) else b
