"""Content-addressed stages: hit, miss, atomic publication; and the output-dir lock."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from edgepipe.core.cache import MARKER, StageCache
from edgepipe.core.errors import InputError, OutputLockedError
from edgepipe.engine.outdir import locked_output
from tests.fixtures.leftovers import dead_temp_dir
from tests.fixtures.locks import lock_held_by_child


def test_hit_miss_and_parameter_change(tmp_path):
    cache = StageCache(tmp_path)
    calls = []

    def fn(out):
        calls.append(out)
        (out / "x.txt").write_text("hello")
        return {"n": 1}

    a = cache.run("s", {"p": 1}, fn)
    b = cache.run("s", {"p": 1}, fn)
    c = cache.run("s", {"p": 2}, fn)
    assert (a.cached, b.cached, c.cached) == (False, True, False)
    assert len(calls) == 2 and a.path == b.path != c.path
    assert (b.path / "x.txt").read_text() == "hello" and b.meta == {"n": 1}


def test_a_onednn_isa_cap_is_part_of_every_key_and_only_then(tmp_path, monkeypatch):
    """Kernels capped below the CPU's ISA may compute other numbers: a capped run finds no uncapped stage."""
    from edgepipe.core.hashing import stable_hash

    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    cache = StageCache(tmp_path)
    plain = cache.run("s", {"p": 1}, lambda out: None)
    assert plain.key == stable_hash({"stage": "s", "inputs": {"p": 1}})[:20]  # without a cap: the keys of before
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert cache.lookup("s", {"p": 1}) is None
    capped = cache.run("s", {"p": 1}, lambda out: None)
    assert not capped.cached and capped.key != plain.key
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2 ")
    assert cache.lookup("s", {"p": 1}).key == capped.key  # the same cap however it is spelled
    # a cache of the run's inputs (the built example model) keeps one entry under any cap
    assert StageCache(tmp_path, cap_in_keys=False).lookup("s", {"p": 1}).key == plain.key


def test_a_failing_stage_leaves_nothing_that_looks_complete(tmp_path):
    cache = StageCache(tmp_path)

    def boom(out):
        (out / "half.bin").write_bytes(b"\0" * 10)
        raise RuntimeError("converter crashed")

    with pytest.raises(RuntimeError):
        cache.run("s", {"p": 1}, boom)
    assert [p.name for p in tmp_path.iterdir()] == [".locks"]  # only the (empty) per-stage lock files
    assert cache.lookup("s", {"p": 1}) is None


def test_a_directory_without_marker_is_not_a_hit_and_is_replaced(tmp_path):
    cache = StageCache(tmp_path)
    key = cache.key_for("s", {"p": 1})
    stale = tmp_path / f"s-{key}"
    stale.mkdir()
    (stale / "junk").write_text("from a killed run")
    res = cache.run("s", {"p": 1}, lambda out: (out / "ok").write_text("1") and None)
    assert not res.cached and (res.path / MARKER).exists() and not (res.path / "junk").exists()


def _damage(entry, how: str, other):
    import json
    import os
    import shutil

    marker = entry / MARKER
    if how == "other stage's folder":  # another stage's complete entry copied over this one
        shutil.rmtree(entry)
        shutil.copytree(other, entry)
    elif how == "meta file outside":
        record = json.loads(marker.read_text())
        record["meta"]["file"] = "../elsewhere/model.tflite"
        marker.write_text(json.dumps(record))
    elif how == "a FIFO":
        marker.unlink()
        os.mkfifo(marker)
    elif how == "a link to a user folder":
        shutil.rmtree(entry)
        entry.symlink_to(other)
    elif how == "a file":
        shutil.rmtree(entry)
        entry.write_text("x")
    elif how == "another model over the file":  # e.g. through the artifact, a hard link to this file
        (entry / "model.tflite").write_text("another model")
    elif how == "same size, other content":
        model = entry / "model.tflite"
        model.write_text("MINE")
        os.utime(model, ns=(model.stat().st_atime_ns, model.stat().st_mtime_ns + 10**9))
    elif how == "the file removed":
        (entry / "model.tflite").unlink()
    elif how == "the file a link":  # to a file of the same content: still not what the stage wrote
        (other / "same.tflite").write_text("mine")
        (entry / "model.tflite").unlink()
        (entry / "model.tflite").symlink_to(other / "same.tflite")
    elif how == "no file record":  # a marker an older edgepipe wrote: nothing to check the files against
        record = json.loads(marker.read_text())
        del record["files"]
        marker.write_text(json.dumps(record))
    elif how in ("the entry a FIFO", "the entry a socket"):  # rmtree opened the FIFO and waited forever
        shutil.rmtree(entry)
        if how == "the entry a FIFO":
            os.mkfifo(entry)
        else:
            import socket

            sock = socket.socket(socket.AF_UNIX)
            sock.bind(str(entry))
            sock.close()
    elif how in ("a cost of text", "a cost a number"):  # served, then the profile failed after publishing
        record = json.loads(marker.read_text())
        record["cost"] = {"wall_seconds": "x"} if how == "a cost of text" else 5
        marker.write_text(json.dumps(record))
    elif how == "a NUL in the file record":
        record = json.loads(marker.read_text())
        record["files"] = {"model\u0000.tflite": record["files"]["model.tflite"]}
        marker.write_text(json.dumps(record))
    elif how == "the meta's file not recorded":  # nothing would check the file the stage's result names
        record = json.loads(marker.read_text())
        record["files"] = {}
        marker.write_text(json.dumps(record))
        (entry / "model.tflite").write_text("EVIL")
    elif how == "a file record pointing outside":
        record = json.loads(marker.read_text())
        record["files"] = {"../../user/keep.txt": [4, 0, "0" * 64]}
        marker.write_text(json.dumps(record))
    else:
        marker.write_text({"not json": "not json{", "a list": "[]", "meta not an object": '{"meta": "x"}',
                           "empty": "{}", "deeply nested": "[" * 100_000}[how])


@pytest.mark.parametrize("how", ["not json", "a list", "meta not an object", "empty", "deeply nested", "a FIFO",
                                 "other stage's folder", "meta file outside", "a link to a user folder", "a file",
                                 "another model over the file", "same size, other content", "the file removed",
                                 "the file a link", "no file record", "a file record pointing outside",
                                 "the entry a FIFO", "the entry a socket", "a cost of text", "a cost a number",
                                 "a NUL in the file record", "the meta's file not recorded"])
def test_a_damaged_entry_is_computed_again_and_replaced(tmp_path, how):
    """The marker was trusted by name: a damaged one was a traceback on every rerun (JSONDecodeError, KeyError,
    RecursionError), another stage's folder copied over an entry was served as this stage's output, a meta `file`
    could point outside the entry, and an entry that is a link made the recompute fail (rmtree on a link).
    The files were trusted by name too: another model copied over a stage's output (or over the published
    artifact, a hard link to it) was published as the stage's result, exit 0."""
    cache = StageCache(tmp_path / "stages")
    calls = []

    def fn(out):
        calls.append(out)
        (out / "model.tflite").write_text("mine")
        return {"file": "model.tflite"}

    user = tmp_path / "user"
    user.mkdir()
    (user / "keep.txt").write_text("keep")
    other = cache.run("other", {"p": 0}, lambda out: {"file": "x"}).path
    first = cache.run("s", {"p": 1}, fn)
    _damage(first.path, how, user if "user" in how else other)
    again = StageCache(tmp_path / "stages").run("s", {"p": 1}, fn)
    assert not again.cached and len(calls) == 2 and again.path == first.path and again.meta == {"file": "model.tflite"}
    assert not again.path.is_symlink() and (again.path / "model.tflite").read_text() == "mine"
    assert (user / "keep.txt").read_text() == "keep" and (other / MARKER).is_file()
    assert StageCache(tmp_path / "stages").run("s", {"p": 1}, fn).cached  # and found complete afterwards


def test_an_entry_copied_without_its_times_is_hashed_once_and_kept(tmp_path, monkeypatch):
    """A cache copied with `cp -r` (no -p) has new modification times but the same content: still a hit, found by
    hashing; the marker then records the new times, so the next lookup reads no file."""
    import shutil

    from edgepipe.core import cache as cache_mod

    def fn(out):
        (out / "sub").mkdir()
        (out / "sub" / "model.bin").write_bytes(b"weights" * 1000)
        return {"file": "sub/model.bin"}

    StageCache(tmp_path / "a").run("s", {"p": 1}, fn)
    shutil.copytree(tmp_path / "a", tmp_path / "b", copy_function=shutil.copy)  # contents, not times
    hashed = []
    real = cache_mod.sha256_file
    monkeypatch.setattr(cache_mod, "sha256_file", lambda p: hashed.append(Path(p).name) or real(p))
    assert StageCache(tmp_path / "b").run("s", {"p": 1}, lambda out: pytest.fail("recomputed")).cached
    assert hashed == ["model.bin"]
    assert StageCache(tmp_path / "b").run("s", {"p": 1}, lambda out: pytest.fail("recomputed")).cached
    assert hashed == ["model.bin"]  # the second lookup trusted the recorded times


def test_an_entry_without_the_meta_a_caller_requires_is_measured_again(tmp_path):
    """A latency entry whose marker lost its figures was a hit: the latency gate then had nothing to judge and the
    artifact passed unjudged. A caller names the meta keys a hit must hold (`required`)."""
    import json

    cache = StageCache(tmp_path)
    calls = []

    def measure(out):
        calls.append(out)
        return {"p50_ms": 1.0, "p90_ms": 2.0}

    first = cache.run("latency", {"p": 1}, measure, required=("p50_ms", "p90_ms"))
    record = json.loads((first.path / MARKER).read_text())
    (first.path / MARKER).write_text(json.dumps({**record, "meta": {"p50_ms": 1.0}}))
    assert cache.lookup("latency", {"p": 1}) is not None  # a caller that needs nothing more still finds it
    assert cache.lookup("latency", {"p": 1}, required=("p50_ms", "p90_ms")) is None
    again = cache.run("latency", {"p": 1}, measure, required=("p50_ms", "p90_ms"))
    assert not again.cached and len(calls) == 2 and again.meta == {"p50_ms": 1.0, "p90_ms": 2.0}


@pytest.mark.parametrize("how", ["a folder", "a link", "locks a file"])
def test_a_stage_lock_that_is_not_a_regular_file_is_named(tmp_path, how):
    """A folder or a link named like a stage's lock (or a file named `.locks`) was a bare OSError from FileLock."""
    cache = StageCache(tmp_path / "stages")
    lock = cache.root / ".locks" / f"s-{cache.key_for('s', {'p': 1})}.lock"
    (tmp_path / "mine.txt").write_text("keep me")
    if how == "locks a file":
        cache.root.mkdir()
        lock.parent.write_text("not a folder")
        said = "'.locks' a folder edgepipe made (not a link). Received: a regular file"
    else:
        lock.parent.mkdir(parents=True)
        lock.mkdir() if how == "a folder" else lock.symlink_to(tmp_path / "mine.txt")
        said = "a directory" if how == "a folder" else f"a symbolic link (to {str(tmp_path / 'mine.txt')!r})"
        said = f"{lock.name!r} a regular file edgepipe made (not a link). Received: {said}; remove it and rerun"
    with pytest.raises(InputError, match=re.escape(said)):
        cache.run("s", {"p": 1}, lambda out: pytest.fail("ran without its lock"))
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_leftover_temporaries_from_dead_processes_are_swept(tmp_path):
    """Only folders carrying edgepipe's marker, written by a dead process, are swept; a user's folder
    named like a leftover is not touched (found by its marker, never by its name)."""
    dead_temp_dir(tmp_path / "s-abc")
    (tmp_path / ".tmp-s-abc-999999999").mkdir()  # the old naming, but not edgepipe's: no marker
    alive = dead_temp_dir(tmp_path / "s-def", pid=1)  # pid 1 is alive: another run's, left alone
    assert StageCache(tmp_path).sweep_temporaries() == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([".tmp-s-abc-999999999", alive.name])


def test_second_run_on_same_output_fails_naming_the_holder(tmp_path):
    with lock_held_by_child(tmp_path) as (p, _):
        with pytest.raises(OutputLockedError, match=rf'"pid": {p.pid}'):
            with locked_output(tmp_path):
                pass
    t0 = time.time()
    with locked_output(tmp_path):  # released: free again
        pass
    assert time.time() - t0 < 5
