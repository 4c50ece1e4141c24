"""Unsafe or unreadable models are refused before anything is converted."""

from __future__ import annotations

import re

import pytest

from edgepipe.core.errors import InputError
from edgepipe.stages.keras_model import load_keras


@pytest.fixture(scope="module")
def lambda_model(tmp_path_factory):
    import keras

    inp = keras.Input((8,))
    out = keras.layers.Lambda(lambda x: x * 2.0, name="double")(inp)
    path = tmp_path_factory.mktemp("lam") / "lambda.keras"
    keras.Model(inp, out).save(path)
    return path


def test_lambda_model_refused_without_trust(lambda_model):
    with pytest.raises(InputError, match=r"expected a model loadable with safe_mode=True.*--trust-model"):
        load_keras(lambda_model)


def test_lambda_model_loads_when_trusted(lambda_model):
    import numpy as np

    model = load_keras(lambda_model, trust=True)
    np.testing.assert_allclose(np.asarray(model(np.ones((1, 8), np.float32))), 2.0)


def test_legacy_h5_refused_without_trust(tmp_path):
    h5 = tmp_path / "old.h5"
    h5.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    with pytest.raises(InputError, match=r"legacy HDF5 \(.h5\) model.*--trust-model"):
        load_keras(h5)


@pytest.mark.parametrize("content, looks_like", [
    (b"", "an empty file (0 bytes)"),
    (b"\x00\x01\x02random bytes", "15 bytes of unknown content starting"),
])
def test_not_a_keras_archive_says_what_it_looks_like(tmp_path, content, looks_like):
    p = tmp_path / "model.keras"
    p.write_bytes(content)
    with pytest.raises(InputError, match=re.escape(f"expected a .keras zip archive. Received: {looks_like}")):
        load_keras(p)


def test_wrong_extension_is_named(tmp_path):
    p = tmp_path / "model.onnx"
    p.write_bytes(b"\x08\x07")
    with pytest.raises(InputError, match=r"model\.onnx'.*expected a \.keras file"):
        load_keras(p)
