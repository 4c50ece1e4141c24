"""SavedModel -> ONNX FP32 (tf2onnx, NHWC input kept). QDQ INT8 is the onnxruntime quantizer's
(pipeline/quantize/quantizers/onnxruntime.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from edgepipe.core.errors import StageError


def convert_onnx(saved_model: Path, out: Path, opset: int = 17, timeout: int = 1800) -> Path:
    """tf2onnx in a subprocess (it builds a TF graph; keeping that out of our process is cheaper)."""
    dest = Path(out) / "model_fp32.onnx"
    cmd = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(saved_model), "--output", str(dest),
           "--opset", str(opset), "--signature_def", "serving_default"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0 or not dest.is_file():
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise StageError(f"tf2onnx: expected an ONNX model from {str(saved_model)!r}. Received exit code "
                         f"{proc.returncode}: {tail}")
    import onnx

    onnx.checker.check_model(str(dest))
    return dest
