"""The throughput path of the host runners: scores of many images, the same numbers as one `predict` each.

An accuracy pass is many independent single-image inferences; each runner's `predict_many(images,
progress)` runs them the way its runtime is fastest at in bulk, never changing what one image
gives: OpenVINO asynchronous requests on a THROUGHPUT compile (`openvino_ir.py`), Keras batched
predict (`keras.py`), and for LiteRT and ONNX Runtime one single-threaded interpreter or session
per core (`per_core` here). Each image is still a batch of 1 through the same model and the same
kernels, so its scores are those of the batch-1 path (`tests/test_throughput.py` proves it on the
tiny fixture for every format). Latency is not measured here: it stays batch 1, as deployed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def one_by_one(runner, images: np.ndarray, progress: Callable[[int], None] | None = None) -> np.ndarray:
    """The batch-1 path: `runner.predict` on each image in turn."""
    out = []
    for img in images:
        out.append(runner.predict(img))
        if progress:
            progress(1)
    return np.stack(out) if out else np.zeros((0, 0), np.float32)


def per_core(make_worker: Callable[[], object], workers: int, images: np.ndarray,
             progress: Callable[[int], None] | None = None) -> np.ndarray:
    """`workers` runners from `make_worker()` (each single-threaded), each in its own thread, taking
    the next image until none is left; results in image order. The runtimes release the GIL while
    they infer, so the workers run side by side."""
    n = len(images)
    if n == 0:
        return np.zeros((0, 0), np.float32)
    pool = [make_worker() for _ in range(max(1, min(workers, n)))]
    first = pool[0].predict(images[0])
    out = np.empty((n, *first.shape), np.float32)
    out[0] = first
    lock, todo = threading.Lock(), iter(range(1, n))
    if progress:
        progress(1)

    def work(runner) -> None:
        while True:
            with lock:
                i = next(todo, None)
            if i is None:
                return
            out[i] = runner.predict(images[i])
            if progress:
                with lock:
                    progress(1)

    with ThreadPoolExecutor(len(pool), thread_name_prefix="edgepipe-infer") as ex:
        for f in [ex.submit(work, r) for r in pool]:
            f.result()  # the first worker's error, if any
    return out
