"""edgetpu_compiler: the log parser on the compiler's own output format, and the wrapper's contract.

The compiler is not installable on this CI host (Coral's apt repository is not reachable), so:
- the parser is tested on text in the format Edge TPU Compiler 15/16 prints, as shown in the
  compiler's issue tracker (google-coral/edgetpu #393: stdout summary + operation log; #659 and #512:
  version 16 with "Started a compilation timeout timer"; #714 and #512: failures);
- the wrapper is tested with fake `edgetpu_compiler` scripts on PATH that follow the documented CLI
  (`--out_dir`, `--num_segments`, `--show_operations`; outputs `<name>_edgetpu.tflite`, segments
  `<name>_segment_<i>_of_<N>_edgetpu.tflite`; coral.ai/docs/edgetpu/compiler). That checks *our* side:
  timeout, return code, log kept, outputs verified, parsing — not Google's compiler.
"""

from __future__ import annotations

import stat
import sys
import textwrap

import pytest

from edgepipe.core.errors import StageError
from edgepipe.targets.edgetpu import compiler as etc

# Edge TPU Compiler 15 stdout, as in google-coral/edgetpu#393 (sizes and counts from that report).
STDOUT_V15 = """\
Edge TPU Compiler version 15.0.340273435

Model compiled successfully in 2644 ms.

Input model: model.tflite
Input size: 4.22MiB
Output model: ./EdgeTPU/model_edgetpu.tflite
Output size: 4.71MiB
On-chip memory used for caching model parameters: 3.21MiB
On-chip memory remaining for caching model parameters: 3.78MiB
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: 1
Total number of operations: 165
Operation log: ./EdgeTPU/model_edgetpu.log

Model successfully compiled but not all operations are supported by the Edge TPU. A percentage of the model will \
instead run on the CPU, which is slower. If possible, consider updating your model to use only operations supported \
by the Edge TPU. For details, visit g.co/coral/model-reqs.
Number of operations that will run on Edge TPU: 117
Number of operations that will run on CPU: 48
See the operation log file for individual operation details.
"""

# An operation log (<name>_edgetpu.log) in that report's format, with statuses worded as the compiler prints
# them (#393, #225, maxbbraun/thermal-face#2); the counts are chosen to agree with the summary above.
OPERATION_LOG = """\
Edge TPU Compiler version 15.0.340273435
Input: model.tflite
Output: ./EdgeTPU/model_edgetpu.tflite

Operator                       Count      Status

CONV_2D                        70         Mapped to Edge TPU
DEPTHWISE_CONV_2D              33         Mapped to Edge TPU
ADD                            10         Mapped to Edge TPU
QUANTIZE                       4          Mapped to Edge TPU
RESHAPE                        12         Tensor has unsupported rank (up to 3 innermost dimensions mapped)
CONCATENATION                  2          More than one subgraph is not supported
LOGISTIC                       1          Operation is otherwise supported, but not mapped due to some unspecified limitation
DEQUANTIZE                     1          Operation is working on an unsupported data type
CUSTOM                         1          Operation is working on an unsupported data type
PACK                           31         More than one subgraph is not supported
"""  # noqa: E501

# Version 16 adds the timeout timer line (google-coral/edgetpu#659, #512); with -s the table is on stdout too.
# Layout as printed by version 16; the values are illustrative.
STDOUT_V16_ALL_MAPPED = """\
Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 3129 ms.

Input model: xception_int8.tflite
Input size: 21.19MiB
Output model: xception_int8_edgetpu.tflite
Output size: 21.35MiB
On-chip memory used for caching model parameters: 6.45MiB
On-chip memory remaining for caching model parameters: 1.25KiB
Off-chip memory used for streaming uncached model parameters: 13.52MiB
Number of Edge TPU subgraphs: 1
Total number of operations: 104
Operation log: xception_int8_edgetpu.log

Operator                       Count      Status

CONV_2D                        12         Mapped to Edge TPU
DEPTHWISE_CONV_2D              34         Mapped to Edge TPU
Compilation child process completed within timeout period.
Compilation succeeded!
"""

# Failures (google-coral/edgetpu#512 and #714).
STDOUT_FAILED = """\
Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.
ERROR: Restored original execution plan after delegate application failure.
Compilation failed: Compilation failed due to large activation tensors in model.
Compilation child process completed within timeout period.
Compilation failed!
"""


def test_parse_size():
    assert etc.parse_size("0.00B") == 0
    assert etc.parse_size("1.25KiB") == 1280
    assert etc.parse_size("3.21MiB") == round(3.21 * 1024**2)
    with pytest.raises(ValueError, match="Received: '3.21 parsecs'"):
        etc.parse_size("3.21 parsecs")


def test_parse_summary_v15():
    s = etc.parse_summary(STDOUT_V15)
    assert s["version"] == "15.0.340273435" and s["compile_ms"] == 2644 and s["failure"] is None
    (m,) = s["models"]
    assert m["input_model"] == "model.tflite" and m["output_model"] == "./EdgeTPU/model_edgetpu.tflite"
    assert m["on_chip_bytes"] == round(3.21 * 1024**2) and m["off_chip_bytes"] == 0
    assert m["on_chip_remaining_bytes"] == round(3.78 * 1024**2)
    assert m["edgetpu_subgraphs"] == 1 and m["total_ops"] == 165
    assert m["ops_on_edgetpu"] == 117 and m["ops_on_cpu"] == 48
    assert s["ops"] == []  # without -s the table is only in the operation log


def test_parse_operation_log_maps_each_status_to_a_placement():
    rows = etc.parse_operation_table(OPERATION_LOG)
    assert [r["op"] for r in rows] == ["CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "QUANTIZE", "RESHAPE",
                                        "CONCATENATION", "LOGISTIC", "DEQUANTIZE", "CUSTOM", "PACK"]
    placed = {r["op"]: r["placement"] for r in rows}
    assert placed["CONV_2D"] == "edgetpu" and placed["RESHAPE"] == "cpu" and placed["DEQUANTIZE"] == "cpu"
    assert sum(r["count"] for r in rows if r["placement"] == "edgetpu") == 117
    assert sum(r["count"] for r in rows if r["placement"] == "cpu") == 48  # agrees with the stdout summary
    why = {r["op"]: r["status"] for r in rows}
    assert why["RESHAPE"] == "Tensor has unsupported rank (up to 3 innermost dimensions mapped)"
    assert why["LOGISTIC"].startswith("Operation is otherwise supported, but not mapped")


def test_parse_summary_v16_with_table_and_failure():
    s = etc.parse_summary(STDOUT_V16_ALL_MAPPED)
    assert s["version"] == "16.0.384591198" and s["failure"] is None
    assert s["models"][0]["off_chip_bytes"] == round(13.52 * 1024**2)
    assert [(r["op"], r["count"], r["placement"]) for r in s["ops"]] == [("CONV_2D", 12, "edgetpu"),
                                                                      ("DEPTHWISE_CONV_2D", 34, "edgetpu")]
    f = etc.parse_summary(STDOUT_FAILED)
    assert f["models"] == []
    assert f["failure"] == "Compilation failed: Compilation failed due to large activation tensors in model."


def _fake(tmp_path, body: str):
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    exe = bindir / "edgetpu_compiler"
    exe.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return str(exe)


SEGMENTING = r"""
import os, shutil, sys
args = sys.argv[1:]
out = args[args.index("--out_dir") + 1]; model = args[-1]
stem = os.path.splitext(os.path.basename(model))[0]
n = int(args[args.index("--num_segments") + 1]) if "--num_segments" in args else 1
names = [f"{stem}_segment_{i}_of_{n}_edgetpu" for i in range(n)] if n > 1 else [f"{stem}_edgetpu"]
print("Edge TPU Compiler version 16.0.384591198\nStarted a compilation timeout timer of 180 seconds.\n")
print("Model compiled successfully in 10 ms.\n")
for name in names:
    shutil.copy(model, os.path.join(out, name + ".tflite"))
    open(os.path.join(out, name + ".log"), "w").write("Operator                       Count      Status\n\n"
                                                      "CONV_2D                        2          Mapped to Edge TPU\n")
    print(f"Input model: {model}\nInput size: 1.00KiB\nOutput model: {name}.tflite\nOutput size: 2.00KiB\n"
          "On-chip memory used for caching model parameters: 1.00MiB\n"
          "On-chip memory remaining for caching model parameters: 6.00MiB\n"
          "Off-chip memory used for streaming uncached model parameters: 512.00KiB\n"
          f"Number of Edge TPU subgraphs: 1\nTotal number of operations: 2\nOperation log: {name}.log\n")
"""


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 64)
    out = tmp_path / "out"
    out.mkdir()
    return path, out


def test_wrapper_compiles_and_parses(tmp_path, model):
    src, out = model
    res = etc.compile_model(src, out, exe=_fake(tmp_path, SEGMENTING))
    assert res.returncode == 0 and res.outputs == ("m_edgetpu.tflite",) and (out / "m_edgetpu.tflite").is_file()
    assert res.version == "16.0.384591198" and res.on_chip_bytes == 1024**2 and res.off_chip_bytes == 512 * 1024
    assert res.ops_on_edgetpu == 2 and res.ops_on_cpu == 0 and res.operation_logs == ("m_edgetpu.log",)
    log = (out / res.log_file).read_text()
    assert "--show_operations" in log and "[return code 0]" in log and "Model compiled successfully" in log


def test_wrapper_segments(tmp_path, model):
    src, out = model
    res = etc.compile_model(src, out, num_segments=3, exe=_fake(tmp_path, SEGMENTING))
    assert res.outputs == tuple(f"m_segment_{i}_of_3_edgetpu.tflite" for i in range(3))
    assert "--num_segments" in res.command and len(res.models) == 3
    assert res.on_chip_bytes == 3 * 1024**2 and res.ops_on_edgetpu == 6


def test_wrapper_nonzero_return_code_is_an_error_with_the_reason(tmp_path, model):
    src, out = model
    exe = _fake(tmp_path, f"import sys\nprint({STDOUT_FAILED!r})\nsys.exit(1)\n")
    with pytest.raises(StageError, match=r"expected return code 0\. Received: 1 \(Compilation failed: Compilation"):
        etc.compile_model(src, out, exe=exe)
    assert "[return code 1]" in (out / "edgetpu_compiler.log").read_text()


def test_wrapper_timeout(tmp_path, model):
    src, out = model
    exe = _fake(tmp_path, "import time\nprint('Edge TPU Compiler version 16.0.384591198', flush=True)\n"
                          "time.sleep(30)\n")
    with pytest.raises(StageError, match=r"within 1 s\. Received: a timeout"):
        etc.compile_model(src, out, timeout_s=1, exe=exe)
    assert (out / "edgetpu_compiler.log").is_file()


def test_wrapper_rc0_without_output_is_not_a_success(tmp_path, model):
    src, out = model
    exe = _fake(tmp_path, "print('Edge TPU Compiler version 16.0.384591198')\n")
    with pytest.raises(StageError, match=r"expected output \['m_edgetpu.tflite'\]"):
        etc.compile_model(src, out, exe=exe)


def test_missing_compiler_names_the_install(tmp_path, model, monkeypatch):
    src, out = model
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert etc.find_compiler() is None
    with pytest.raises(StageError, match="not compiled: edgetpu_compiler not installed; install edgetpu_compiler"):
        etc.compile_model(src, out)


def test_compiler_version(tmp_path):
    assert etc.compiler_version(_fake(tmp_path, "print('Edge TPU Compiler version 16.0.384591198')\n")) \
        == "16.0.384591198"
    with pytest.raises(StageError, match="expected 'Edge TPU Compiler version X'"):
        etc.compiler_version(_fake(tmp_path, "import sys\nsys.exit(3)\n"))
