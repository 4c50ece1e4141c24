"""Accuracy passes at throughput give the batch-1 scores.

Every format's throughput path (`predict_many`, which `predict_all` takes) against the same runner's
`predict` image by image, on the tiny fixture's 54 validation images, with the runner's threads as
a run uses them (2): what the cached `accuracy-*` stages hold, so their cache keys stay valid.
Tolerance proved: int8 TFLite bit-exact; every other format max |diff| <= 1e-6. (Measured: 0 for the
per-core LiteRT and ONNX Runtime paths and OpenVINO's THROUGHPUT path, here and on the elpv example's
artifacts; Keras' batched predict differs from eager batch-1 calls in the last bits, 2.4e-7 on elpv.)
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edgepipe.formats import onnx as onnx_fmt
from edgepipe.formats import tflite as tflite_fmt
from edgepipe.formats import throughput
from edgepipe.formats.throughput import one_by_one, per_core
from edgepipe.validators.accuracy import predict_all

ARTIFACTS = ["tflite-arm/fp32", "tflite-arm/int8", "openvino-cpu/fp32", "openvino-cpu/int8", "onnx-cpu/fp32",
             "onnx-cpu/int8"]


def _check(fast: np.ndarray, slow: np.ndarray, exact: bool) -> None:
    assert fast.shape == slow.shape and fast.dtype == slow.dtype == np.float32
    if exact:
        np.testing.assert_array_equal(fast, slow)
    else:
        assert float(np.abs(fast - slow).max()) <= 1e-6


def _spy_per_core(monkeypatch, module) -> list:
    calls = []

    def spy(make_worker, workers, images, progress=None):
        calls.append(workers)
        return per_core(make_worker, workers, images, progress)

    monkeypatch.setattr(module, "per_core", spy)
    return calls


def _spy_compile(runner) -> list:
    hints, compile_ = [], runner.compile

    def spy(hint, streams=None):
        hints.append(hint)
        return compile_(hint, streams)

    runner.compile = spy
    return hints


@pytest.mark.parametrize("name", ARTIFACTS)
def test_throughput_path_gives_the_batch_1_scores(tiny_built, name, monkeypatch):
    images = tiny_built.ctx.validation.images
    runner = tiny_built.runner(name, threads=2)
    fmt = name.split("/")[0]
    spied = _spy_compile(runner) if fmt == "openvino-cpu" else \
        _spy_per_core(monkeypatch, tflite_fmt if fmt == "tflite-arm" else onnx_fmt)
    seen = []
    fast = predict_all(runner, images, seen.append)
    slow = one_by_one(runner, images)
    assert slow.shape == (len(images), 3) and sum(seen) == len(images)
    _check(fast, slow, exact=name == "tflite-arm/int8")
    # it took the throughput path: a THROUGHPUT compile with several streams, or one worker per thread
    assert spied == (["THROUGHPUT"] if fmt == "openvino-cpu" else [2])
    if fmt == "openvino-cpu":
        assert runner.info["loaded_from"] == "blob"


def test_openvino_throughput_path_from_the_ir_gives_the_batch_1_scores(tiny_built):
    """Without a blob (the NPU row's CPU stand-in, `edgepipe validate` on a foreign IR): compiled from the IR."""
    from edgepipe.formats.runners import OpenVINORunner

    runner = OpenVINORunner(tiny_built.artifact("openvino-cpu/int8").path, 2)
    hints = _spy_compile(runner)
    images = tiny_built.ctx.validation.images
    _check(predict_all(runner, images), one_by_one(runner, images), exact=False)
    assert hints == ["THROUGHPUT"] and runner.info["loaded_from"] == "ir"


def test_keras_batched_predict_gives_the_batch_1_scores(tiny_built):
    from edgepipe.formats.runners import KerasRunner

    runner = KerasRunner(tiny_built.ctx.keras_model())
    images = tiny_built.ctx.validation.images
    seen = []
    fast = predict_all(runner, images, seen.append)
    assert seen == [16, 16, 16, 6]  # batches of 16, progress per batch
    np.testing.assert_array_equal(fast, runner.predict_batch(images))  # the one batched call, as cached before
    _check(fast, one_by_one(runner, images), exact=False)


def test_savedmodel_with_a_free_batch_is_scored_in_batches(tiny_built, tmp_path):
    import tensorflow as tf

    from edgepipe.formats.runners import SavedModelRunner
    from edgepipe.stages.savedmodel import load_serving

    shape = tiny_built.ctx.spec.shape
    tiny_built.ctx.keras_model().export(str(tmp_path / "sm"), format="tf_saved_model", verbose=False,
                                        input_signature=[tf.TensorSpec((None, *shape), tf.float32, name="input")])
    runner = SavedModelRunner(load_serving(tmp_path / "sm", shape, 3))
    assert runner.batched
    images = tiny_built.ctx.validation.images
    seen = []
    _check(predict_all(runner, images, seen.append), one_by_one(runner, images), exact=False)
    assert seen == [16, 16, 16, 6]


class _Slow:
    """A fake runner: each image's score is a function of the image only; it sleeps, so workers interleave."""

    def __init__(self, fail_on: float | None = None):
        self.fail_on, self.threads = fail_on, set()

    def predict(self, image):
        self.threads.add(threading.get_ident())
        time.sleep(0.002)
        if self.fail_on is not None and image[0] == self.fail_on:
            raise RuntimeError(f"bad image {image[0]}")
        return np.array([image[0], 2 * image[0]], np.float32)


def test_per_core_keeps_image_order_counts_progress_and_raises_a_workers_error():
    images = np.arange(40, dtype=np.float32)[:, None]
    made = []

    def make():
        made.append(_Slow())
        return made[-1]

    seen = []
    out = per_core(make, 3, images, seen.append)
    np.testing.assert_array_equal(out, np.stack([images[:, 0], 2 * images[:, 0]], axis=1))
    assert len(made) == 3 and sum(seen) == 40 and sum(bool(r.threads) for r in made) >= 2
    with pytest.raises(RuntimeError, match="bad image 17"):
        per_core(lambda: _Slow(fail_on=17.0), 2, images)
    assert per_core(make, 4, images[:1]).shape == (1, 2) and len(made) == 4  # never more workers than images
    assert throughput.one_by_one(_Slow(), images[:3]).shape == (3, 2)


FOREIGN = {"tflite-arm/int8": "tflite", "openvino-cpu/int8": "openvino-ir", "onnx-cpu/int8": "onnx"}


@pytest.mark.parametrize("name", list(FOREIGN))
def test_a_foreign_model_is_scored_in_its_child_with_the_batch_1_scores(tiny_built, name):
    """`edgepipe validate` scores a model it did not build in a limited child (`run_foreign`), on the
    runtime's throughput path there too: the same scores as the same runner image by image, in this process."""
    from edgepipe.core.children import Limits
    from edgepipe.engine.probe import run_foreign
    from edgepipe.formats.runners import open_runner

    fmt, path = FOREIGN[name], tiny_built.artifact(name).path
    images = tiny_built.ctx.validation.images
    seen = []
    facts = run_foreign(path, fmt, 2, Limits(60.0, 8192), images, seen.append)
    assert sum(seen) == len(images) and facts["layout"] == "nhwc"
    _check(facts["scores"], one_by_one(open_runner(fmt, path, 2), images), exact=fmt == "tflite")
