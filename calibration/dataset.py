"""Materialise a configured subset (source + split + size) into preprocessed arrays."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from edgepipe.calibration import batch_index, checks
from edgepipe.calibration.preprocess import PreprocessSpec
from edgepipe.calibration.sources import open_source
from edgepipe.calibration.splits import stratified_split
from edgepipe.core.errors import InputError, expected_received
from edgepipe.core.hashing import sha256_arrays


class Batch:
    """Preprocessed images (NHWC float32), their labels (int64, -1 = unlabeled), the content hash of both,
    where they came from, and the image files (for end-to-end decode + preprocess timing).

    `images=None` with a `loader`: the images are decoded on first use (`batch_index`: a batch whose hash
    is remembered), then hashed again; a different hash is an InputError. `entry` (a stage-cache root and a
    batch_index key): the index entry that remembered the hash; it is forgotten on such a mismatch, so that a
    rerun hashes the files again instead of failing the same way."""

    __slots__ = ("_images", "labels", "sha256", "source", "split", "paths", "_loader", "_what", "_entry")

    def __init__(self, images: np.ndarray | None, labels: np.ndarray, sha256: str, source: str, split: str,
                 paths: tuple[str, ...] = (), loader: Callable[[], np.ndarray] | None = None, what: str = "images",
                 entry: tuple[Path, str] | None = None):
        if images is None and loader is None:
            raise ValueError("Batch: expected images or a loader. Received: neither")
        self._images, self.labels, self.sha256 = images, labels, sha256
        self.source, self.split, self.paths = source, split, paths
        self._loader, self._what, self._entry = loader, what, entry

    @property
    def images(self) -> np.ndarray:
        if self._images is None:
            images = self._loader()
            got = sha256_arrays(images, self.labels)
            if got != self.sha256:
                raise InputError(expected_received(
                    self._what, f"the image files whose content hash was remembered for their sizes and "
                    f"modification times ({self.sha256[:12]})",
                    f"content hash {got[:12]}: a file was rewritten keeping its size and modification time; "
                    + self._forget_entry()))
            self._images = images
        return self._images

    def _forget_entry(self) -> str:
        """Forget the stale index entry; the advice that is then true."""
        if self._entry is None:  # not remembered by an index entry of its own (cannot happen with a loader)
            return "rerun to hash the files again"
        root, key = self._entry
        path = batch_index.entry_path(root, key)
        try:
            batch_index.forget(root, key)
        except OSError as err:
            return f"delete {str(path)!r} (it could not be deleted: {err.strerror or err}) and rerun"
        return f"the remembered hash was forgotten ({str(path)!r}): rerun to hash the files again"

    @property
    def loaded(self) -> bool:
        return self._images is not None

    def __len__(self) -> int:
        return len(self.labels)


def load_subset(subset, splits, labels: list[str], spec: PreprocessSpec, what: str, progress=None,
                index: Path | None = None, workers: int = 1) -> Batch:
    """The configured subset as a Batch. `index` (a stage-cache root): when these exact files were hashed
    before (batch_index), the batch comes back with the remembered hash and decodes its images only on use.
    `workers`: threads decoding files (read_images)."""
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
    paths = tuple(str(records[i].path) for i in idx)
    batch_labels = all_labels[idx]
    key = None
    if index is not None:
        key = batch_index.fingerprint(list(paths), batch_labels.tolist(), spec.as_dict(),
                                      {"source": subset.source, "split": subset.split})
        sha = batch_index.lookup(index, key, len(paths)) if key else None
        if sha is not None:
            return Batch(None, batch_labels, sha, subset.source, subset.split, paths,
                         loader=partial(read_images, paths, spec, what, workers=workers), what=what,
                         entry=(index, key))
    images = read_images(paths, spec, what, progress, workers)
    batch = Batch(images, batch_labels, sha256_arrays(images, batch_labels), subset.source, subset.split, paths)
    if key:
        batch_index.remember(index, key, len(paths), batch.sha256)
    return batch


def read_images(paths: tuple[str, ...], spec: PreprocessSpec, what: str, progress=None, workers: int = 1) -> np.ndarray:
    """Decode and preprocess every file, then the data checks (checks.validate). With `workers` > 1, that many
    threads decode (Pillow's decode and resize release the GIL: 1,500 elpv images in 2.1-3.8 s on 2 threads
    against 6.5-8.0 s on one, the same arrays). The result and the error are the same either way: completions are
    taken in file order, so a bad file is reported as the first bad one in order, as one thread would."""
    images = _allocate(len(paths), spec.shape, what)

    def load(j: int) -> None:  # each image straight into its row: no decoded image waits in a queue
        try:
            images[j] = spec.load(paths[j])
        except (OSError, ValueError) as err:
            raise InputError(f"{what}: expected a readable image file. Received: {paths[j]!r} ({err})") from err

    def follow(done) -> None:
        for _ in done:  # in file order: the first failure in that order raises here
            if progress:
                progress(1)

    if workers > 1 and len(paths) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(workers, len(paths)), thread_name_prefix="decode") as pool:
            try:
                follow(pool.map(load, range(len(paths))))
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    else:
        follow(map(load, range(len(paths))))
    checks.validate(images, spec.shape, spec.mode, what)
    return images


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


def subsample(batch: Batch, n: int, seed: int, index: Path | None = None) -> Batch:
    """A deterministic subset of `n` images (same seed, same images), with its own content hash. `index` (a
    stage-cache root): the subset's hash is remembered under the parent's hash and the chosen rows
    (batch_index.subset_key), so the subset of a batch whose images were not decoded is not decoded either until
    a stage uses it (then its hash is checked, as a remembered batch's is)."""
    if n >= len(batch):
        return batch
    idx = np.sort(np.random.default_rng(seed + 2).choice(len(batch), n, replace=False))
    labels = batch.labels[idx]
    paths = tuple(batch.paths[i] for i in idx) if batch.paths else batch.paths
    split = f"{batch.split}[{n} of {len(batch)}]"
    key = batch_index.subset_key(batch.sha256, idx.tolist()) if index is not None else None
    sha = batch_index.lookup(index, key, n) if key else None
    if sha is not None:
        return Batch(None, labels, sha, batch.source, split, paths, loader=lambda: batch.images[idx],
                     what=f"{batch.split} subset of {n} images", entry=(index, key))
    images = batch.images[idx]
    sub = Batch(images, labels, sha256_arrays(images, labels), batch.source, split, paths)
    if key:
        batch_index.remember(index, key, n, sub.sha256)
    return sub
