"""One data source, three consumers: TFLite representative dataset, nncf.Dataset, ONNX Runtime reader."""

from __future__ import annotations

import numpy as np

from edgepipe.calibration.checks import check_batch


def tflite_representative(images: np.ndarray, progress=None):
    """A callable for `TFLiteConverter.representative_dataset` (batch 1, float32)."""
    check_batch(images, "TFLite representative dataset")

    def gen():
        for img in images:
            yield [img[None].astype(np.float32)]
            if progress:
                progress(1)

    return gen


def nncf_dataset(images: np.ndarray):
    import nncf

    check_batch(images, "NNCF calibration dataset")
    return nncf.Dataset(list(images), lambda img: img[None].astype(np.float32))


def onnx_calibration_reader(model_path, images: np.ndarray):
    """An `onnxruntime.quantization.CalibrationDataReader` over the same images (batch 1, NHWC float32).

    Supports `set_range` and `len` so quantize_static can calibrate in strides (CalibStridedMinMax).
    """
    import onnx
    from onnxruntime.quantization import CalibrationDataReader

    check_batch(images, "ONNX Runtime calibration reader")
    graph = onnx.load(str(model_path), load_external_data=False).graph
    inits = {i.name for i in graph.initializer}
    input_name = next(i.name for i in graph.input if i.name not in inits)

    class _Reader(CalibrationDataReader):
        def __init__(self):
            self.start, self.end = 0, len(images)
            self.pos = self.start

        def __len__(self):
            return len(images)

        def set_range(self, start_index: int, end_index: int):
            self.start, self.end = start_index, min(end_index, len(images))
            self.pos = self.start

        def get_next(self):
            if self.pos >= self.end:
                return None
            img = images[self.pos]
            self.pos += 1
            return {input_name: img[None].astype(np.float32)}

        def rewind(self):
            self.pos = self.start

    return _Reader()
