"""Data: deterministic stratified splits, the preprocessing contract, and data checks."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from edgepipe.calibration import checks
from edgepipe.calibration.preprocess import PreprocessSpec
from edgepipe.calibration.sources import _elpv, open_source
from edgepipe.calibration.splits import stratified_split
from edgepipe.core.errors import InputError


def test_split_is_deterministic_disjoint_and_stratified():
    labels = np.repeat([0, 1, 2, 3], [500, 100, 40, 260])
    a = stratified_split(labels, seed=7, n_calibration=90, test_fraction=0.3)
    b = stratified_split(labels, seed=7, n_calibration=90, test_fraction=0.3)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    allidx = np.concatenate(list(a.values()))
    assert len(allidx) == len(labels) == len(np.unique(allidx))
    assert len(a["calibration"]) == 90
    test_counts = np.bincount(labels[a["test"]], minlength=4)
    np.testing.assert_array_equal(test_counts, [150, 30, 12, 78])
    c = stratified_split(labels, seed=8, n_calibration=90, test_fraction=0.3)
    assert not np.array_equal(a["test"], c["test"])


def test_elpv_split_sizes_match_the_example_contract():
    labels = np.array([r.label for r in _elpv()])
    assert len(labels) == 2624 and set(labels.tolist()) == {0, 1, 2, 3}
    s = stratified_split(labels, seed=0, n_calibration=300, test_fraction=0.3)
    assert len(s["calibration"]) == 300
    assert len(s["test"]) >= 600


def test_xception_preprocessing_maps_to_minus_one_one(tmp_path):
    img = np.zeros((10, 20, 3), np.uint8)
    img[:, 10:] = 255
    Image.fromarray(img).save(tmp_path / "a.png")
    spec = PreprocessSpec(8, 16, 3, "xception", "nearest")
    x = spec.load(tmp_path / "a.png")
    assert x.shape == (8, 16, 3) and x.dtype == np.float32
    assert x.min() == -1.0 and x.max() == 1.0


def test_grayscale_is_replicated_to_rgb(tmp_path):
    Image.fromarray(np.full((5, 5), 51, np.uint8)).save(tmp_path / "g.png")
    x = PreprocessSpec(5, 5, 3, "unit", "nearest", "grayscale_to_rgb").load(tmp_path / "g.png")
    assert x.shape == (5, 5, 3)
    np.testing.assert_allclose(x, 0.2, atol=1e-6)


def test_nan_and_inf_are_rejected():
    x = np.zeros((4, 8, 8, 3), np.float32)
    x[2, 0, 0, 0] = np.nan
    x[3, 1, 1, 1] = np.inf
    with pytest.raises(InputError, match="expected finite pixel values. Received NaN/inf in 2 of 4"):
        checks.check_finite(x, "calibration data")


def test_0_255_data_for_a_minus_one_one_model_is_rejected():
    x = np.random.default_rng(0).uniform(0, 255, (3, 8, 8, 3)).astype(np.float32)
    with pytest.raises(InputError, match=r"expected values in \[-1, 1\] for preprocessing 'xception'"):
        checks.check_range(x, "xception", "validation data")
    checks.check_range(x / 127.5 - 1, "xception", "validation data")  # fine


def test_wrong_layout_is_rejected_not_reshaped():
    with pytest.raises(InputError, match=r"expected images of shape \(N, 8, 8, 3\) \(NHWC\). Received: \(2, 3, 8, 8\)"):
        checks.check_shape(np.zeros((2, 3, 8, 8), np.float32), (8, 8, 3), "calibration data")


def test_empty_calibration_is_an_error_and_small_is_a_warning(caplog):
    caplog.set_level(logging.WARNING, logger="edgepipe")
    with pytest.raises(InputError, match="expected at least 1 image. Received: 0"):
        checks.check_count(0, 100, "calibration data")
    checks.check_count(5, 100, "calibration data")
    assert "fewer than the configured minimum of 100" in caplog.text


def test_folder_source_rejects_unknown_class_dirs(tmp_path):
    (tmp_path / "cat").mkdir()
    (tmp_path / "dgo").mkdir()
    with pytest.raises(InputError, match=r"Received unknown folders: \['dgo'\]"):
        open_source(str(tmp_path), ["cat", "dog"])


def test_csv_source(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "x.png")
    (tmp_path / "l.csv").write_text("path,label\nx.png,dog\nx.png,\n")
    recs = open_source(str(tmp_path / "l.csv"), ["cat", "dog"])
    assert [r.label for r in recs] == [1, -1] and recs[0].path == tmp_path / "x.png"
    (tmp_path / "bad.csv").write_text("file,class\nx.png,dog\n")
    with pytest.raises(InputError, match="expected columns 'path' and 'label'"):
        open_source(str(tmp_path / "bad.csv"), ["cat", "dog"])


def test_unknown_source_kind():
    with pytest.raises(InputError, match="Received: 'example:imagenet'"):
        open_source("example:imagenet", ["a", "b"])


def test_decoding_on_threads_gives_the_same_images_and_the_same_first_error(tmp_path):
    from edgepipe.calibration.dataset import read_images

    rng = np.random.default_rng(0)
    paths = []
    for i in range(9):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (13 + i, 17, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    spec = PreprocessSpec(11, 11, 3, "xception", "bilinear", "rgb")
    seen = []
    one = read_images(tuple(paths), spec, "d")
    two = read_images(tuple(paths), spec, "d", seen.append, workers=3)
    assert two.shape == (9, 11, 11, 3) and np.array_equal(one, two) and seen == [1] * 9
    for bad in (3, 6):  # two damaged files: each way names the first one in order
        (tmp_path / f"{bad}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    messages = []
    for workers in (1, 3):
        with pytest.raises(InputError, match="3.png") as err:
            read_images(tuple(paths), spec, "d", workers=workers)
        messages.append(str(err.value))
    assert messages[0] == messages[1]
