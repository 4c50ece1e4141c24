"""Heavy checks on the real elpv-xception example (`tox -e slow`)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_elpv_model_reuses_the_imagenet_backbone_unchanged_and_learns():
    import keras

    from edgepipe.calibration.dataset import load_subset
    from edgepipe.calibration.preprocess import PreprocessSpec
    from edgepipe.config.schema import example_config_path, load_config
    from edgepipe.examples.kitchenware import kitchenware_model_path
    from edgepipe.examples.models import resolve_model

    cfg = load_config(example_config_path("elpv-xception"))
    model = keras.saving.load_model(resolve_model(cfg), compile=False, safe_mode=True)
    donor = keras.saving.load_model(kitchenware_model_path(), compile=False, safe_mode=True)
    ours = model.get_layer("xception").get_weights()
    theirs = donor.get_layer("xception").get_weights()
    assert len(ours) == len(theirs) == 234
    assert all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))
    assert model.input_shape == (None, 299, 299, 3) and model.output_shape == (None, 4)

    spec = PreprocessSpec.from_input(cfg.input)
    test = load_subset(cfg.data.validation, cfg.data.splits, cfg.data.labels, spec, "test")
    assert len(test) >= 600
    top1 = float((model.predict(test.images, batch_size=16, verbose=0).argmax(1) == test.labels).mean())
    majority = float(np.bincount(test.labels).max() / len(test))
    assert top1 > majority + 0.1, (top1, majority)
