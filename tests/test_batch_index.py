"""The batch index (calibration/batch_index.py): a rerun whose stages are cached decodes no image, and a
changed file is never a wrong cache hit."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from edgepipe.calibration.dataset import load_subset
from edgepipe.calibration.preprocess import PreprocessSpec
from edgepipe.config.schema import SplitSpec, Subset
from edgepipe.core.errors import InputError
from tests.fixtures import tiny_xception
from tests.fixtures.configs import INPUT
from tests.fixtures.tiny_runs import copy_run

SPEC = PreprocessSpec(INPUT, INPUT)
SPLITS = SplitSpec(seed=0, calibration=30, test_fraction=0.3)


def _load(data, root, split="calibration"):
    return load_subset(Subset(source=str(data), split=split), SPLITS, tiny_xception.CLASSES, SPEC, "calibration data",
                       index=root)


@pytest.fixture()
def data(tiny_assets, tmp_path):
    """A private copy of the tiny data set (the tests touch and rewrite its files)."""
    return shutil.copytree(tiny_assets["data"], tmp_path / "data")


def _counting(monkeypatch):
    calls = []
    real = PreprocessSpec.load

    def load(self, path):
        calls.append(path)
        return real(self, path)

    monkeypatch.setattr(PreprocessSpec, "load", load)
    return calls


def test_a_batch_hashed_before_is_not_decoded_until_its_images_are_used(data, tmp_path, monkeypatch):
    first = _load(data, tmp_path / "stages")
    assert first.loaded and list((tmp_path / "stages" / "batch-index").glob("*.json"))
    calls = _counting(monkeypatch)
    again = _load(data, tmp_path / "stages")
    assert calls == [] and not again.loaded  # the hash and labels came from the index
    assert again.sha256 == first.sha256 and np.array_equal(again.labels, first.labels) and len(again) == len(first)
    assert np.array_equal(again.images, first.images) and len(calls) == len(first)  # decoded on use, hash checked
    other = _load(data, tmp_path / "stages", split="test")  # another subset is its own entry
    assert other.loaded and other.sha256 != first.sha256
    plain = _load(data, None)  # no index: always decoded, same hash
    assert plain.loaded and plain.sha256 == first.sha256


def test_a_calibration_subset_of_a_remembered_batch_is_not_decoded_until_used(data, tmp_path, monkeypatch):
    """`calibration_size`'s subset (dataset.subsample) of a batch the index remembered: the subset's hash is
    remembered too (under the parent's hash and the rows), so a warm rerun decodes no image for it; used, it is
    the same images with its hash checked, and a parent with other content is another subset."""
    from edgepipe.calibration.dataset import subsample

    root = tmp_path / "stages"
    first = subsample(_load(data, root), 10, seed=0, index=root)
    assert first.loaded and len(first) == 10
    calls = _counting(monkeypatch)
    again = subsample(_load(data, root), 10, seed=0, index=root)
    assert calls == [] and not again.loaded  # neither the parent nor the subset decoded
    assert again.sha256 == first.sha256 and np.array_equal(again.labels, first.labels)
    assert np.array_equal(again.images, first.images) and calls  # decoded on use (the parent's files)
    assert subsample(_load(data, root), 12, seed=0, index=root).sha256 != first.sha256  # another size, its own entry
    plain = subsample(_load(data, None), 10, seed=0)  # no index: decoded, the same hash
    assert plain.loaded and plain.sha256 == first.sha256


def test_a_touched_file_is_hashed_again(data, tmp_path, monkeypatch):
    first = _load(data, tmp_path / "stages")
    st = os.stat(first.paths[0])
    os.utime(first.paths[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    calls = _counting(monkeypatch)
    again = _load(data, tmp_path / "stages")
    assert again.loaded and len(calls) == len(first) and again.sha256 == first.sha256  # same pixels, rehashed


def test_a_file_rewritten_with_the_same_size_and_time_is_an_error_not_a_wrong_hit(data, tmp_path):
    first = _load(data, tmp_path / "stages")
    victim, donor, size = _rewrite_keeping_size_and_time(first.paths)
    assert os.path.getsize(victim) == size and np.array_equal(SPEC.load(victim), SPEC.load(donor))
    again = _load(data, tmp_path / "stages")
    assert not again.loaded and again.sha256 == first.sha256  # the index cannot see the change ...
    with pytest.raises(InputError, match="rewritten keeping its size and modification time"):
        again.images  # noqa: B018  ... but using the images finds it


def test_a_warm_rerun_decodes_no_image(tiny_full_run, tmp_path, monkeypatch):
    """Every stage cached and the files unchanged: the run needs the batches' hashes only."""
    from edgepipe.config.schema import parse_config
    from edgepipe.engine.orchestrate import run_pipeline

    run = copy_run(tiny_full_run, tmp_path)  # the session's cold run wrote the index into its stages
    cfg = parse_config(run["cfg"])

    def boom(self, path):
        raise AssertionError(f"decoded {path}")

    monkeypatch.setattr(PreprocessSpec, "load", boom)
    report = run_pipeline(cfg, run["cfg"]["model"]["path"])
    assert all(s["cached"] for s in report["stages"]), [s["name"] for s in report["stages"] if not s["cached"]]
    assert [a["status"] for a in report["artifacts"]] == [a["status"] for a in run["report"]["artifacts"]]
    # diagnostics fail soft (a row keeps its status and says why in per_layer_error): check them too, since the
    # per-layer stage once decoded the validation images before finding itself cached
    for now, cold in zip(report["artifacts"], run["report"]["artifacts"], strict=True):
        assert now.get("per_layer_error") is None, now.get("per_layer_error")
        assert now.get("per_layer") == cold.get("per_layer")


def _unblock_fifos(paths):
    """Open each FIFO for writing without blocking and close it: a reader stuck in open() sees end-of-file."""
    for p in paths:
        try:
            os.close(os.open(p, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:  # no reader waiting (ENXIO), or no longer a FIFO
            pass


def test_a_fifo_in_the_index_is_a_miss_not_a_hang(data, tmp_path):
    """A FIFO where an index entry should be (stages/batch-index/<key>.json) once made the run block forever in
    lookup's read; it is a miss now: the images are hashed again and the entry is written anew."""
    import threading

    root = tmp_path / "stages"
    first = _load(data, root)
    entries = sorted((root / "batch-index").glob("*.json"))
    assert entries
    for p in entries:
        p.unlink()
        os.mkfifo(p)
    result = {}

    def work():
        try:
            result["batch"] = _load(data, root)
        except BaseException as err:  # noqa: BLE001  reported by the main thread
            result["error"] = err

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(timeout=30)
    if t.is_alive():
        _unblock_fifos(entries)  # let the stuck thread go before failing
        t.join(timeout=5)
        pytest.fail("batch_index.lookup blocked on a FIFO entry")
    assert "error" not in result, result.get("error")
    again = result["batch"]
    assert again.loaded and again.sha256 == first.sha256  # a miss: decoded and hashed again
    assert all(p.is_file() for p in entries)  # remember() replaced the FIFO with a regular entry


def test_an_entry_that_is_not_a_small_regular_json_file_is_a_miss(data, tmp_path):
    """lookup reads entries through safeio: a directory, an oversized file (even one that is valid JSON), garbage
    and wrong types are all "not indexed", never an error."""
    from edgepipe.calibration import batch_index

    root = tmp_path / "stages"
    first = _load(data, root)
    (entry,) = [p for p in (root / "batch-index").glob("*.json")]
    key = entry.stem
    good = entry.read_text()
    assert batch_index.lookup(root, key, len(first)) == first.sha256
    entry.write_text(good + " " * (2 << 20))  # valid JSON, but 2 MiB: far larger than any entry
    assert batch_index.lookup(root, key, len(first)) is None
    for garbage in ("{", "\xff\xfe", "[]", '{"format": 1, "count": "x", "sha256": 5}', "null"):
        entry.write_text(garbage)
        assert batch_index.lookup(root, key, len(first)) is None, garbage
    entry.unlink()
    entry.mkdir()
    assert batch_index.lookup(root, key, len(first)) is None


def _rewrite_keeping_size_and_time(paths):
    by_size = sorted(paths, key=os.path.getsize)
    victim, donor = by_size[-1], by_size[0]
    old, new = open(victim, "rb").read(), open(donor, "rb").read()
    st = os.stat(victim)
    with open(victim, "wb") as f:  # another image, padded after its PNG end to the old size
        f.write(new + b"\0" * (len(old) - len(new)))
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    return victim, donor, len(old)


def test_a_rerun_after_a_rewritten_file_is_found_hashes_the_files_again(data, tmp_path):
    """The mismatch error says "rerun to hash the files again": the stale entry is forgotten when the mismatch
    is found, so the rerun does hash them again (and remembers the new hash) instead of failing forever."""
    root = tmp_path / "stages"
    first = _load(data, root)
    _rewrite_keeping_size_and_time(first.paths)
    again = _load(data, root)
    assert not again.loaded and again.sha256 == first.sha256
    with pytest.raises(InputError, match="rerun to hash the files again"):
        again.images  # noqa: B018
    rerun = _load(data, root)
    assert rerun.loaded and rerun.sha256 != first.sha256  # hashed again: the new content's hash
    third = _load(data, root)
    assert not third.loaded and third.sha256 == rerun.sha256  # the new hash is remembered ...
    assert np.array_equal(third.images, rerun.images)  # ... and checks out when used


def test_a_stale_entry_that_cannot_be_forgotten_is_named_in_the_error(data, tmp_path, monkeypatch):
    from edgepipe.calibration import batch_index

    root = tmp_path / "stages"
    first = _load(data, root)
    (entry,) = list((root / "batch-index").glob("*.json"))
    _rewrite_keeping_size_and_time(first.paths)
    again = _load(data, root)

    def refuse(root, key):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(batch_index, "forget", refuse)
    with pytest.raises(InputError) as err:
        again.images  # noqa: B018
    assert f"delete {str(entry)!r}" in str(err.value) and "Permission denied" in str(err.value)
