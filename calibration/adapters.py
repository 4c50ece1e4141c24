"""One data source, several consumers: TFLite representative dataset, nncf.Dataset."""

from __future__ import annotations

import numpy as np


def tflite_representative(images: np.ndarray, progress=None):
    """A callable for `TFLiteConverter.representative_dataset` (batch 1, float32)."""

    def gen():
        for img in images:
            yield [img[None].astype(np.float32)]
            if progress:
                progress(1)

    return gen


def nncf_dataset(images: np.ndarray):
    import nncf

    return nncf.Dataset(list(images), lambda img: img[None].astype(np.float32))
