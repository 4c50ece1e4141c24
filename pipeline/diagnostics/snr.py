"""The SNR of one measured tensor summed over several images, shared by the local-error diagnoses
(local_tflite.py, local_openvino.py)."""

from __future__ import annotations

import numpy as np


class SNRSums:
    """Signal and error energy of one tensor over several images; `db()` is 10·log10(signal / error): 999 when
    the error is zero, -999 when the signal is, None once a pair of values had different shapes."""

    def __init__(self):
        self.sig = self.err = 0.0
        self.shape_mismatch = False

    def add(self, ref: np.ndarray, val: np.ndarray) -> None:
        if ref.shape != val.shape:
            self.shape_mismatch = True
            return
        a, b = ref.astype(np.float64), val.astype(np.float64)
        self.sig += float((a ** 2).sum())
        self.err += float(((a - b) ** 2).sum())

    def db(self) -> float | None:
        if self.shape_mismatch:
            return None
        if self.err == 0:
            return 999.0
        return float(10 * np.log10(self.sig / self.err)) if self.sig > 0 else -999.0
