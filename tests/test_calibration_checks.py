"""Calibration data checks: every quantizer adapter rejects bad arrays; subsets warn on missing classes."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from edgepipe.calibration import checks
from edgepipe.calibration.adapters import nncf_dataset, onnx_calibration_reader, tflite_representative
from edgepipe.calibration.dataset import Batch, subsample
from edgepipe.core.errors import InputError

GOOD = np.random.default_rng(0).uniform(-1, 1, (4, 8, 8, 3)).astype(np.float32)


@pytest.mark.parametrize("adapter", [tflite_representative, nncf_dataset,
                                     lambda x: onnx_calibration_reader("unused.onnx", x)])
def test_every_adapter_rejects_nan_wrong_rank_and_constant_data(adapter):
    bad = GOOD.copy()
    bad[2, 0, 0, 0] = np.nan
    with pytest.raises(InputError, match=r"expected finite pixel values. Received NaN/inf in 1 of 4 images"):
        adapter(bad)
    with pytest.raises(InputError, match=r"expected a 4-D NHWC image array. Received: \(8, 8, 3\)"):
        adapter(GOOD[0])
    with pytest.raises(InputError, match=r"expected images with varying pixel values. Received: 4 images that are "
                                         r"all the constant 0"):
        adapter(np.zeros_like(GOOD))
    with pytest.raises(InputError, match=r"varying pixel values. Received: 4 images that are all the constant -0.6"):
        adapter(np.full_like(GOOD, -0.6))  # float32 std 6e-8, not 0: blank frames of a mid gray


def test_validate_names_shape_range_and_constant_problems():
    checks.validate(GOOD, (8, 8, 3), "xception", "calibration data")
    with pytest.raises(InputError, match=r"expected images of shape \(N, 8, 8, 3\) \(NHWC\). Received: \(4, 3, 8, 8\)"):
        checks.validate(GOOD.transpose(0, 3, 1, 2), (8, 8, 3), "xception", "calibration data")
    raw = (GOOD + 1) * 127.5  # [0, 255] data for a [-1, 1] model
    with pytest.raises(InputError, match=r"expected values in \[-1, 1\] for preprocessing 'xception'. "
                                         r"Received values in \[0"):
        checks.validate(raw, (8, 8, 3), "xception", "calibration data")
    for value in (0.1, -0.6, 0.7):  # std 1.5e-8, 6e-8, 1.2e-7 in float32: an exact comparison catches them
        with pytest.raises(InputError, match=f"all the constant {value:g}"):
            checks.validate(np.full_like(GOOD, value), (8, 8, 3), "xception", "calibration data")
    inf = GOOD.copy()
    inf[0, 1, 1, 1] = np.inf
    with pytest.raises(InputError, match="NaN/inf"):
        checks.validate(inf, (8, 8, 3), "xception", "calibration data")


def test_subset_is_deterministic_hashed_and_warns_on_missing_classes(caplog):
    labels = np.array([0] * 18 + [1] * 2)
    images = np.random.default_rng(1).uniform(-1, 1, (20, 4, 4, 3)).astype(np.float32)
    batch = Batch(images, labels, "full-hash", "src", "calibration")
    a, b = subsample(batch, 5, seed=0), subsample(batch, 5, seed=0)
    assert len(a) == 5 and np.array_equal(a.images, b.images) and a.sha256 == b.sha256 != batch.sha256
    assert subsample(batch, 50, seed=0) is batch
    with caplog.at_level(logging.WARNING, logger="edgepipe"):
        missing = checks.check_classes(np.array([0, 0, 2]), 3, "calibration data (recipe subset of 3 images)")
    assert missing == [1]
    assert "calibration data (recipe subset of 3 images): classes [1] have no images" in caplog.text
