"""The elpv example's build (pipeline/examples/elpv.py): the train split's backbone features are a stage of their
own, computed once, so a change to the head's recipe retrains the head on them instead of recomputing them.
The real build (kitchenware backbone, 1,538 elpv images, ~3 min) runs in the main job and the slow tier; here a
tiny Keras backbone stands in for it."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from edgepipe.calibration.preprocess import PreprocessSpec
from edgepipe.config.schema import SplitSpec
from edgepipe.core.cache import StageCache
from edgepipe.examples import elpv


def test_the_features_are_a_stage_of_their_own_and_the_head_recipe_is_not_in_its_key(tmp_path, monkeypatch):
    import keras

    images = np.random.default_rng(0).uniform(-1, 1, (5, 8, 8, 3)).astype(np.float32)
    decoded = []

    class Train(SimpleNamespace):
        def __len__(self):
            return len(self.images)

    def fake_subset(subset, *args, **kwargs):  # the train split, without decoding 1,538 elpv images
        decoded.append(subset.split)
        return Train(images=images, labels=np.array([0, 1, 2, 3, 0]))

    monkeypatch.setattr(elpv, "load_subset", fake_subset)
    backbone = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3)])
    calls = []
    real_predict = backbone.predict_on_batch

    def predict(x):
        calls.append(len(x))
        return real_predict(x)

    cache = StageCache(tmp_path / "examples", cap_in_keys=False)
    spec, splits = PreprocessSpec(8, 8), SplitSpec(seed=0, calibration=30, test_fraction=0.3)
    params = {**elpv.RECIPE, "spec": spec.as_dict(), "splits": splits.model_dump(), "tensorflow": "x"}
    feats, labels = elpv._features(cache, elpv.features_inputs(params), backbone, spec, splits, 1)
    want = np.asarray(keras.layers.GlobalAveragePooling2D()(backbone(images)))
    np.testing.assert_allclose(feats, want, rtol=1e-6)
    assert labels.tolist() == [0, 1, 2, 3, 0] and decoded == ["train"]

    # another head recipe: the same features stage, found cached (nothing decoded, the backbone not run)
    monkeypatch.setattr(backbone, "predict_on_batch", predict)
    other_head = {**params, "epochs": 5, "l2": 0.0, "lr": 0.1, "head": "softmax"}
    again, _ = elpv._features(cache, elpv.features_inputs(other_head), backbone, spec, splits, 1)
    np.testing.assert_array_equal(again, feats)
    assert decoded == ["train"] and calls == []
    # what the features depend on is in the key: another batch size or preprocessing computes them again
    assert elpv.features_inputs({**params, "feature_batch": 8}) != elpv.features_inputs(params)
    assert elpv.features_inputs({**params, "spec": {}}) != elpv.features_inputs(params)
    assert set(elpv.HEAD_ONLY) <= set(elpv.RECIPE) and not set(elpv.HEAD_ONLY) & set(elpv.features_inputs(params))
