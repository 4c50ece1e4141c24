"""Bundles, archives and the on-device verifier against hostile input (issue 18): archive bombs refused
while the headers stream by, malformed manifests exit 2 on the board, and `bundle` / `verify` never
show a traceback. The artifact is a hand-made one around tests/data/tiny.tflite (no pipeline run)."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile

import pytest
from typer.testing import CliRunner

from edgepipe.boards.archive import unpack
from edgepipe.boards.signing import keygen
from edgepipe.cli.app import app
from edgepipe.core.errors import BundleError
from tests.fixtures.hostile import ROOT, hand_made_artifact, snapshot
from tests.fixtures.ship_board import board  # noqa: F401  (the loopback sshd board fixture)

RUNNER = ROOT / "pipeline" / "boards" / "device_runner.py"
runner = CliRunner()


def invoke(*args):
    res = runner.invoke(app, [*map(str, args)])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception  # no traceback
    return res


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    return hand_made_artifact(tmp_path_factory.mktemp("art"))


def bundle(art, store, artifact=None):
    return invoke("bundle", artifact or art["dir"], "--out", store, "--key", art["key"], "--samples", art["samples"])


def test_a_hand_made_artifact_bundles_and_verifies(art, tmp_path):
    res = bundle(art, tmp_path / "store")
    assert res.exit_code == 0, res.output
    res = invoke("verify", tmp_path / "store" / "tflite-arm-fp32-v1", "--pubkey", art["pub"])
    assert res.exit_code == 0 and "signature valid" in res.output, res.output


def test_bundle_out_an_existing_file_or_a_store_with_a_foreign_folder_is_exit_2(art, tmp_path):
    (tmp_path / "file").write_text("x")
    res = bundle(art, tmp_path / "file")
    assert res.exit_code == 2 and "a bundle store folder (new or existing). Received: an existing file" in res.output
    store = tmp_path / "store"
    (store / "tflite-arm-fp32-v1").mkdir(parents=True)
    (store / "tflite-arm-fp32-v1" / "mine.txt").write_text("not a bundle")
    before = snapshot(store)
    res = bundle(art, store)
    assert res.exit_code == 2 and "exists and is not a bundle (no manifest.json)" in res.output, res.output
    assert snapshot(store) == before


@pytest.mark.parametrize("record, said", [
    ("", "expected a JSON document"),
    ("[]", "expected a JSON object. Received: list"),
    ('{"files": "model.tflite"}', "wrong or missing"),
])
def test_a_broken_artifact_record_is_exit_2(art, tmp_path, record, said):
    a = tmp_path / "a"
    shutil.copytree(art["dir"], a)
    (a / "artifact.json").write_text(record)
    res = bundle(art, tmp_path / "store", a)
    assert res.exit_code == 2 and said in res.output, res.output


def test_an_unreadable_sample_image_is_exit_2(art, tmp_path):
    samples = tmp_path / "samples"
    shutil.copytree(art["samples"], samples)
    (samples / "red" / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    res = invoke("bundle", art["dir"], "--out", tmp_path / "store", "--key", art["key"], "--samples", samples)
    assert res.exit_code == 2 and "expected a readable image file" in res.output, res.output
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir())


def test_a_compressed_archive_bomb_is_refused_before_anything_is_extracted(art, tmp_path):
    bomb = tmp_path / "bomb.tar.gz"
    with tarfile.open(bomb, "w:gz") as tar:
        info = tarfile.TarInfo("b/zeros.bin")
        info.size = 80 << 20
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    assert bomb.stat().st_size < (1 << 20)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(BundleError, match=r"expected an archive that inflates at most 50x its size"):
        unpack(bomb, dest)
    assert list(dest.iterdir()) == []
    res = invoke("verify", bomb, "--pubkey", art["pub"])
    assert res.exit_code == 2 and "inflates at most 50x" in res.output
    os.mkfifo(tmp_path / "pipe.tar")
    with pytest.raises(BundleError, match=r"Received: a FIFO"):
        unpack(tmp_path / "pipe.tar", dest)
    (tmp_path / "junk.tar.gz").write_bytes(b"\x1f\x8b\x08\x00" + b"\xff" * 100)
    res = invoke("verify", tmp_path / "junk.tar.gz", "--pubkey", art["pub"])
    assert res.exit_code == 2 and "expected a .tar archive" in res.output, res.output


# ---- the on-device verifier: exit 2 for a malformed manifest, never "internal" --------------------------
def device(bundle_dir):
    proc = subprocess.run([sys.executable, str(RUNNER), str(bundle_dir), "--verify-only"], capture_output=True,
                          timeout=60, text=True)
    return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("mutate, said", [
    (lambda m: m.update(files=7), "manifest.json files: expected a list. Received: 'int'"),
    (lambda m: m.update(files=["model.tflite"]), "files[0]: expected an object"),
    (lambda m: m["files"][0].update(size="12"), "files[0].size: expected a non-negative integer"),
    (lambda m: m["files"][0].update(sha256=None), "files[0].sha256: expected 64 hex digits"),
    (lambda m: m.pop("model"), "model: expected an object with string 'file' and 'format'"),
    (lambda m: m.update(sample="sample/images.npy"), "sample: expected null or an object"),
    (lambda m: m.update(requires=["ai_edge_litert"]), "requires: expected an object"),
    (lambda m: m.update(bundle_version="1"), "bundle_version: expected an integer"),
])
def test_device_runner_refuses_mistyped_manifests_with_exit_2(art, tmp_path, mutate, said):
    store = tmp_path / "store"
    assert bundle(art, store).exit_code == 0
    b = store / "tflite-arm-fp32-v1"
    m = json.loads((b / "manifest.json").read_text())
    mutate(m)
    (b / "manifest.json").write_text(json.dumps(m))
    rc, out = device(b)
    assert rc == 2 and out["error"]["kind"] == "verification" and said in out["error"]["message"], out


def test_device_runner_refuses_deep_nesting_and_special_files_with_exit_2(art, tmp_path):
    store = tmp_path / "store"
    assert bundle(art, store).exit_code == 0
    b = store / "tflite-arm-fp32-v1"
    good = (b / "manifest.json").read_text()
    (b / "manifest.json").write_text('{"edgepipe_bundle": 1, "x": ' + "[" * 200_000 + "]" * 200_000 + "}")
    rc, out = device(b)
    assert rc == 2 and out["error"]["kind"] == "verification" and "RecursionError" in out["error"]["message"], out
    (b / "manifest.json").write_text(good)
    os.mkfifo(b / "sample" / "extra.npy")
    rc, out = device(b)
    assert rc == 2 and "special files (FIFO, device or socket): sample/extra.npy" in out["error"]["message"], out


def test_device_runner_by_hand_checks_the_install_roots_trusted_key_by_default(art, tmp_path):
    """R/runner/device_runner.py R/current (or R/bundles/<name>) without --pubkey: R/trusted.pub is used."""
    store = tmp_path / "store"
    assert bundle(art, store).exit_code == 0
    root = tmp_path / "R"
    (root / "runner").mkdir(parents=True)
    shutil.copyfile(RUNNER, root / "runner" / RUNNER.name)
    shutil.copytree(store / "tflite-arm-fp32-v1", root / "bundles" / "b1")
    os.symlink("bundles/b1", root / "current")
    shutil.copyfile(art["pub"], root / "trusted.pub")

    def by_hand(runner_path, target):
        proc = subprocess.run([sys.executable, str(runner_path), str(target), "--verify-only"], capture_output=True,
                              timeout=60, text=True)
        return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1])

    for runner_path, target in ((root / "runner" / RUNNER.name, root / "current"), (RUNNER, root / "bundles" / "b1")):
        rc, out = by_hand(runner_path, target)
        assert rc == 0 and out["verification"]["signature"] == "valid", out
        assert out["verification"]["pubkey"] == str(root / "trusted.pub")
    keygen(tmp_path / "other")  # the board trusts another key: refused, not "ok, signature not checked"
    shutil.copyfile(tmp_path / "other" / "edgepipe.pub", root / "trusted.pub")
    rc, out = by_hand(root / "runner" / RUNNER.name, root / "current")
    assert rc == 2 and "signature that does not match" in out["error"]["message"], out
    (root / "trusted.pub").unlink()  # no trusted key anywhere: says so
    rc, out = by_hand(RUNNER, root / "current")
    assert rc == 0 and out["verification"]["signature"].startswith("not checked: no --pubkey given and no trusted.pub")


# ---- a hostile board: what `board status|list` and ship's probe read there (loopback sshd) --------------
@pytest.fixture()
def hostile_root(art, tmp_path):
    """A board root laid out as `ship` leaves it (bundles/<dir>, current -> it, trusted.pub), built by hand."""
    store = tmp_path / "store"
    assert bundle(art, store).exit_code == 0
    root = tmp_path / "R"
    shutil.copytree(store / "tflite-arm-fp32-v1", root / "bundles" / "b1")
    os.symlink("bundles/b1", root / "current")
    shutil.copyfile(art["pub"], root / "trusted.pub")
    return root


def _board_cmd(board, root, action):  # noqa: F811
    from tests.fixtures.ship_board import url

    args = ["board", action, url(board, root), "--identity", board["client_key"], "--known-hosts",
            board["known_hosts"], "--connect-timeout", "3", "--timeout", "20", "--retries", "0", "--json"]
    return invoke(*args)


def _probe(board, root):  # noqa: F811
    from edgepipe.boards.remote import Device
    from edgepipe.boards.ship import Board
    from tests.fixtures.ship_board import opts, url

    with Board(Device.parse(url(board, root)), opts(board, command_timeout=20)) as b:
        return b.probe("b2")


def test_board_status_list_and_ship_probe_call_a_deeply_nested_or_fifo_manifest_unreadable(board,  # noqa: F811
                                                                                           hostile_root):
    import time

    man = hostile_root / "bundles" / "b1" / "manifest.json"
    man.write_text("[" * 100_000)  # RecursionError in json.loads, on the board and on the host
    for action in ("status", "list"):
        res = _board_cmd(board, hostile_root, action)
        assert res.exit_code == 0 and "Traceback" not in res.output, res.output
        out = json.loads(res.stdout)
        row = out["current"] if action == "status" else out["bundles"][0]
        assert row["dir"] == "b1" and "not a JSON object" in row["unreadable"], out
    assert _probe(board, hostile_root)["current"]["unreadable"] is True
    man.unlink()
    os.mkfifo(man)  # a blocking open() would hang until --timeout
    t0 = time.monotonic()
    res = _board_cmd(board, hostile_root, "status")
    assert res.exit_code == 0, res.output
    assert "FIFO" in json.loads(res.stdout)["current"]["unreadable"]
    assert _probe(board, hostile_root)["current"]["unreadable"] is True
    assert time.monotonic() - t0 < 15


def test_a_lock_whose_owner_record_is_a_fifo_or_not_an_object_does_not_hang_or_crash_the_lock(board,  # noqa: F811
                                                                                              hostile_root):
    """The lock script read `.lock/owner.json` with a blocking open(): a FIFO there hung ship, bench and rollback
    until the command timeout; a JSON list there was a TypeError on the board. Either is an owner it cannot
    read: a lock without a readable owner record, held (not broken) while it is fresh."""
    import time

    from edgepipe.boards.lock import BoardLock
    from edgepipe.boards.remote import Device, Remote
    from edgepipe.core.errors import RemoteError
    from tests.fixtures.ship_board import opts, url

    (hostile_root / ".lock").mkdir()
    os.mkfifo(hostile_root / ".lock" / "owner.json")
    for record in ("fifo", "list"):
        if record == "list":
            (hostile_root / ".lock" / "owner.json").unlink()
            (hostile_root / ".lock" / "owner.json").write_text("[1, 2]")
        t0 = time.monotonic()
        with Remote(Device.parse(url(board, hostile_root)), opts(board, command_timeout=20)) as remote:
            with pytest.raises(RemoteError) as err:
                BoardLock(remote, sys.executable, "ship").acquire()
        assert err.value.status == "locked" and "Traceback" not in str(err.value), str(err.value)
        assert time.monotonic() - t0 < 15
    assert (hostile_root / ".lock").is_dir()  # a fresh lock is never broken
