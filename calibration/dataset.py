"""Materialise a configured subset (source + split + size) into preprocessed arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgepipe.calibration import checks
from edgepipe.calibration.preprocess import PreprocessSpec
from edgepipe.calibration.sources import open_source
from edgepipe.calibration.splits import stratified_split
from edgepipe.core.errors import InputError, expected_received
from edgepipe.core.hashing import sha256_arrays


@dataclass(frozen=True)
class Batch:
    images: np.ndarray  # NHWC float32, preprocessed
    labels: np.ndarray  # int64, -1 = unlabeled
    sha256: str
    source: str
    split: str
    paths: tuple[str, ...] = ()  # the image files, for end-to-end (decode + preprocess) timing

    def __len__(self) -> int:
        return len(self.images)


def load_subset(subset, splits, labels: list[str], spec: PreprocessSpec, what: str, progress=None) -> Batch:
    records = open_source(subset.source, labels)
    all_labels = np.array([r.label for r in records], dtype=np.int64)
    if subset.split == "all":
        idx = np.arange(len(records))
    else:
        idx = stratified_split(all_labels, splits.seed, splits.calibration, splits.test_fraction)[subset.split]
    if subset.size is not None and len(idx) > subset.size:
        rng = np.random.default_rng(splits.seed + 1)
        idx = np.sort(rng.choice(idx, subset.size, replace=False))
    if len(idx) == 0:
        raise InputError(
            f"{what}: expected images in split {subset.split!r} of {subset.source!r}. Received: 0 images"
        )
    images = _allocate(len(idx), spec.shape, what)
    for j, i in enumerate(idx):
        try:
            images[j] = spec.load(records[i].path)
        except (OSError, ValueError) as err:
            raise InputError(
                f"{what}: expected a readable image file. Received: {str(records[i].path)!r} ({err})"
            ) from err
        if progress:
            progress(1)
    batch_labels = all_labels[idx]
    checks.validate(images, spec.shape, spec.mode, what)
    return Batch(images, batch_labels, sha256_arrays(images, batch_labels), subset.source, subset.split,
                 tuple(str(records[i].path) for i in idx))


def _allocate(n: int, shape: tuple[int, int, int], what: str) -> np.ndarray:
    """The batch array, or an InputError when it cannot fit in memory (never a MemoryError traceback)."""
    import psutil

    need = n * int(np.prod(shape)) * 4
    avail = psutil.virtual_memory().available
    try:
        if need > 0.8 * avail:
            raise MemoryError
        return np.empty((n, *shape), dtype=np.float32)
    except MemoryError:
        expected = f"{n} preprocessed images of {shape[0]}x{shape[1]}x{shape[2]} float32 ({need / 2**30:.1f} GiB) " \
                   "to fit in memory"
        raise InputError(expected_received(what, expected, f"{avail / 2**30:.1f} GiB available; lower input.size or "
                                                           "the subset's size")) from None


def subsample(batch: Batch, n: int, seed: int) -> Batch:
    """A deterministic subset of `n` images (same seed, same images), with its own content hash."""
    if n >= len(batch):
        return batch
    idx = np.sort(np.random.default_rng(seed + 2).choice(len(batch), n, replace=False))
    images, labels = batch.images[idx], batch.labels[idx]
    paths = tuple(batch.paths[i] for i in idx) if batch.paths else batch.paths
    return Batch(images, labels, sha256_arrays(images, labels), batch.source, f"{batch.split}[{n} of {len(batch)}]",
                 paths)
