"""TFLite's calibration split over processes: the same INT8 model, sooner.

TFLiteConverter calibrates by running the float model through its calibration interpreter one image at a
time, on about one core (the calibration wrapper takes no thread count): on the elpv example that is ~90 s
of the ~105 s conversion of 300 images. What it records per tensor is the running minimum and maximum
(tensorflow/lite/tools/optimize/calibration/calibration_logger.h, `MinMax::Update`), and the minimum of
per-part minima is the minimum of the whole. So `parallel_calibration` splits the images into contiguous
parts, calibrates the first part in this process and each other part in a child process
(`python -m edgepipe.quantize.quantizers.tflite_parallel`), on the same float model bytes, and merges the
recorded ranges (`merge_ranges`) before the converter quantizes. The result is byte-identical to the
one-process conversion (tests/test_tflite_parallel.py checks it on the tiny model; measured on elpv:
identical 22,150,440-byte models, 105.3 s -> 76.7 s on 2 cores, benchmarks/README.md).

It is installed around one `converter.convert()` call by replacing `Calibrator.calibrate` for the calling
thread only (any other thread's conversion calibrates as before); the 16x8 path calibrates through
`calibrate_and_quantize` and is not split.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

from edgepipe.calibration.adapters import tflite_representative

MIN_IMAGES_PER_PART = 16  # below this a child's start (importing TensorFlow, ~5 s) costs more than it saves


def parts(n_images: int, processes: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) ranges: at most `processes`, none smaller than MIN_IMAGES_PER_PART
    (a single range when splitting would not pay)."""
    k = max(1, min(processes, n_images // MIN_IMAGES_PER_PART))
    bounds = np.linspace(0, n_images, k + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def merge_ranges(models: list[bytes]) -> bytes:
    """The first calibrated model with every recorded min (max) replaced by the minimum (maximum) over all
    models. They must be the same model calibrated on different images: same tensors, same names."""
    from tensorflow.lite.tools import flatbuffer_utils

    objs = [flatbuffer_utils.read_model_from_bytearray(bytearray(m)) for m in models]
    first = objs[0]
    for other in objs[1:]:
        if len(other.subgraphs) != len(first.subgraphs):
            raise ValueError("calibrated models differ in their subgraphs: not the same float model")
        for sa, sb in zip(first.subgraphs, other.subgraphs, strict=True):
            if [t.name for t in sa.tensors] != [t.name for t in sb.tensors]:
                raise ValueError("calibrated models differ in their tensors: not the same float model")
            for ta, tb in zip(sa.tensors, sb.tensors, strict=True):
                qa, qb = ta.quantization, tb.quantization
                has_a = qa is not None and qa.min is not None
                has_b = qb is not None and qb.min is not None
                if has_a != has_b:
                    raise ValueError(f"tensor {ta.name!r} has a calibrated range in one part only")
                if has_a:
                    qa.min = np.minimum(np.asarray(qa.min), np.asarray(qb.min)).tolist()
                    qa.max = np.maximum(np.asarray(qa.max), np.asarray(qb.max)).tolist()
    return bytes(flatbuffer_utils.convert_object_to_bytearray(first))


@contextlib.contextmanager
def parallel_calibration(images: np.ndarray, processes: int, progress=None):
    """Within the block, a TFLiteConverter calibration started by this thread is split over `processes`
    (see the module docstring); yields the number of parts used (1 = nothing changed)."""
    spans = parts(len(images), processes)
    if len(spans) < 2:
        yield 1
        return
    from tensorflow.lite.python.optimize import calibrator

    owner, original = threading.get_ident(), calibrator.Calibrator.calibrate

    def calibrate(self, dataset_gen):
        if threading.get_ident() != owner:
            return original(self, dataset_gen)
        return _split(self, original, images, spans, progress)

    calibrator.Calibrator.calibrate = calibrate
    try:
        yield len(spans)
    finally:
        calibrator.Calibrator.calibrate = original


def _split(calib, original, images: np.ndarray, spans: list[tuple[int, int]], progress) -> bytes:
    with tempfile.TemporaryDirectory(prefix="edgepipe-calib-") as tmp:
        model = Path(tmp) / "float.tflite"
        model.write_bytes(calib._model_content)  # the float model (with intermediates) the converter calibrates
        children = []
        try:
            for i, (a, b) in enumerate(spans[1:], start=1):
                np.save(Path(tmp) / f"part{i}.npy", images[a:b])
                children.append(subprocess.Popen(
                    [sys.executable, "-m", __name__, str(model), str(Path(tmp) / f"part{i}.npy"),
                     str(Path(tmp) / f"part{i}.out")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
            a, b = spans[0]
            results = [original(calib, tflite_representative(images[a:b], progress))]
            for i, child in enumerate(children, start=1):
                _, err = child.communicate()
                if child.returncode != 0:
                    tail = err.decode(errors="replace").strip().splitlines()[-5:]
                    raise RuntimeError(f"TFLite calibration of images {spans[i][0]}..{spans[i][1]} in a child "
                                       f"process failed (exit {child.returncode}): " + " | ".join(tail))
                if progress:
                    progress(spans[i][1] - spans[i][0])
                results.append((Path(tmp) / f"part{i}.out").read_bytes())
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
                    child.wait()
        return merge_ranges(results)


def _child(model: str, images: str, out: str) -> None:
    from tensorflow.lite.python.optimize import calibrator

    cal = calibrator.Calibrator(Path(model).read_bytes())
    Path(out).write_bytes(cal.calibrate(tflite_representative(np.load(images))))


if __name__ == "__main__":
    _child(*sys.argv[1:4])
