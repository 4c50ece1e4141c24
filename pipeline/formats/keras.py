"""Keras (.keras): sniffing (a zip archive), the structural check of the archive, and the FP32 reference runner.

The check reads every member (CRC errors and truncation show there) and wants `config.json`;
it never deserializes the model (that is `pipeline/stages/keras_model.py`, with safe_mode).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from pipeline.core.errors import InputError, expected_received
from pipeline.formats.runner_input import check_input


def looks_like(head: bytes) -> bool:
    return head.startswith(b"PK")


def check(path: Path, label: str) -> None:
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            bad = z.testzip()  # reads every member: CRC errors and truncation show here
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        raise InputError(expected_received(label, "a complete .keras zip archive",
                                           f"a damaged zip archive ({err})")) from err
    if bad is not None:
        raise InputError(expected_received(label, "a .keras archive with intact members",
                                           f"a CRC error in {bad!r}"))
    if "config.json" not in names:
        raise InputError(expected_received(label, "a .keras archive with config.json",
                                           f"a zip archive with {sorted(names)[:5]}"))


class KerasRunner:
    """The FP32 reference."""

    def __init__(self, model):
        self.runtime = "keras"
        self.model = model
        self.shape = (1, *(int(d) for d in model.inputs[0].shape[1:]))

    def predict(self, image: np.ndarray) -> np.ndarray:
        return np.asarray(self.model(check_input(image, self.shape, "Keras"), training=False))[0].astype(np.float32)

    def predict_batch(self, images: np.ndarray) -> np.ndarray:
        if len(images):
            check_input(images[0], self.shape, "Keras")
        return np.asarray(self.model.predict(images, batch_size=16, verbose=0), dtype=np.float32)
