"""Ship and bench against a real OpenSSH server on loopback (the "board").

The board's python is this test's python (numpy + ai_edge_litert). Covers issue 6 (ship,
verify, switch, smoke, rollback, bench into the report) and issue 7 rows 13 (tampered bundle
refused on the board), 15 (unreachable, auth failure, unknown host key, hung command),
16 (old or missing runtime on the board) and 17 (downgrade).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time

import pytest
from typer.testing import CliRunner

from edgepipe.boards import ship as ship_mod
from edgepipe.boards.bundle import read_manifest, seal
from edgepipe.boards.lock import BoardLock
from edgepipe.boards.remote import Device, Remote, SSHOptions
from edgepipe.boards.ship import Board, remote_dir_name
from edgepipe.boards.signing import keygen
from edgepipe.cli.app import app
from edgepipe.core.errors import RemoteError
from tests.fixtures.ship_board import current, opts, remote, ship, ssh_args, url  # fixtures board, bundles: plugin
from tests.fixtures.sshd_board import free_port

pytestmark = pytest.mark.heavy(seconds=34)  # worker-seconds measured: longest first (tests/fixtures/scheduling.py)

runner = CliRunner()


def test_ship_verifies_switches_and_smoke_tests(board, bundles, tmp_path):
    root = tmp_path / "board"
    res, rep = ship(board, bundles, bundles["v1"], root)
    assert res.exit_code == 0, res.output
    name1 = remote_dir_name(bundles["v1"], read_manifest(bundles["v1"]))
    assert rep["status"] == "ok" and current(root) == f"bundles/{name1}"
    assert rep["verify"]["files"] == "ok" and rep["verify"]["signature"] == "valid"  # checked on the board
    assert rep["smoke"]["ok"] and rep["smoke"]["eval"]["n_images"] == 6
    assert rep["smoke"]["eval"]["agreement_with_host"] >= 0.75
    assert (root / "runner" / "device_runner.py").is_file()
    assert (root / "trusted.pub").read_bytes() == bundles["run"]["pub"].read_bytes()
    assert json.loads((root / "current" / "manifest.json").read_text())["bundle_version"] == 1
    res, rep = ship(board, bundles, bundles["v2"], root)
    assert res.exit_code == 0 and rep["previous"] == f"bundles/{name1}" and rep["previous_version"] == 1
    assert json.loads((root / "current" / "manifest.json").read_text())["bundle_version"] == 2
    assert list((root / ".staging").iterdir()) == []


def test_downgrade_refused_unless_forced(board, bundles, tmp_path):
    root = tmp_path / "board"
    assert ship(board, bundles, bundles["v2"], root)[0].exit_code == 0
    before = current(root)
    res, _ = ship(board, bundles, bundles["v1"], root)
    assert res.exit_code == 2 and "newer than the board's current tflite-arm-int8 v2" in res.output
    assert "Received: v1" in res.output and current(root) == before
    res, _ = ship(board, bundles, bundles["v2"], root)  # a reinstall of the same version is refused too
    assert res.exit_code == 2 and current(root) == before
    res, rep = ship(board, bundles, bundles["v1"], root, "--force")
    assert res.exit_code == 0 and json.loads((root / "current" / "manifest.json").read_text())["bundle_version"] == 1


def test_broken_bundle_rolls_back(board, bundles, tmp_path):
    root = tmp_path / "board"
    assert ship(board, bundles, bundles["v2"], root)[0].exit_code == 0
    good = current(root)
    res, rep = ship(board, bundles, bundles["broken"], root)
    assert res.exit_code == 3, res.output
    assert rep["status"] == "rolled back" and rep["rolled_back_to"] == good
    assert "model_int8.tflite" in rep["reason"] and rep["switched"]
    assert current(root) == good and (root / "current" / "manifest.json").is_file()
    assert not (root / "bundles" / remote_dir_name(bundles["broken"], read_manifest(bundles["broken"]))).exists()
    assert not (root / ".lock").exists() and list((root / ".staging").iterdir()) == []  # released after a failure
    res, rep = ship(board, bundles, bundles["v1"], root, "--force")  # and the next ship gets the board
    assert res.exit_code == 0 and rep["status"] == "ok" and rep["previous"] == good


def test_tampered_bundle_refused_on_host_and_board(board, bundles, tmp_path):
    bad = tmp_path / "tflite-arm-int8-v9"
    shutil.copytree(bundles["v2"], bad)
    (bad / "labels.txt").write_text("x\ny\nz\n")
    root = tmp_path / "board"
    res, _ = ship(board, bundles, bad, root)  # the host refuses before contacting the board
    assert res.exit_code == 2 and "labels.txt" in res.output and not root.exists()
    # bypass the host check: the board's runner refuses it too, and nothing is installed
    dev = Device.parse(url(board, root))
    b = Board(dev, opts(board), bundles["run"]["pub"])
    name = remote_dir_name(bad, read_manifest(bad))
    with pytest.raises(RemoteError) as err:
        b.install(bad, name, b.probe(name))
    assert err.value.status == "verification failed" and "labels.txt" in str(err.value)
    assert list((root / "bundles").iterdir()) == [] and list((root / ".staging").iterdir()) == []
    assert current(root) is None
    # consistent hashes but signed by a key the board does not trust: the board's signature check refuses it
    forged = tmp_path / "tflite-arm-int8-v10"
    shutil.copytree(bundles["v2"], forged)
    (forged / "labels.txt").write_text("x\ny\nz\n")
    seal(forged, {**read_manifest(forged), "bundle_version": 10}, keygen(tmp_path / "mallory")[0])
    name = remote_dir_name(forged, read_manifest(forged))
    with pytest.raises(RemoteError) as err:
        b.install(forged, name, b.probe(name))
    assert err.value.status == "verification failed" and "signature that does not match" in str(err.value)
    assert list((root / "bundles").iterdir()) == [] and current(root) is None


def test_bench_on_boards_concurrently_with_per_board_status(board, bundles, tmp_path):
    """One good board, one closed port, one hung python: each has its own status, in bounded time."""
    hang = tmp_path / "hang.sh"
    hang.write_text("#!/bin/sh\nsleep 120\n")
    hang.chmod(0o755)
    report = tmp_path / "report.json"
    shutil.copyfile(bundles["run"]["out"] / "report.json", report)
    devices = [url(board, tmp_path / "b1"), url(board, tmp_path / "b2", port=free_port()),
               url(board, tmp_path / "b3", python=str(hang))]
    t0 = time.monotonic()
    res = runner.invoke(app, ["bench", str(bundles["v2"]), *sum((["--device", d] for d in devices), []),
                              "--runs", "5", "--warmup", "1", "--report", str(report),
                              *ssh_args(board, bundles, timeout=8)], catch_exceptions=False)
    elapsed = time.monotonic() - t0
    assert res.exit_code == 3, res.output
    out = json.loads(res.stdout[: res.stdout.rindex("}") + 1])
    status = {d["device"]: d for d in out["devices"]}
    good, closed, hung = (status[Device.parse(u).label] for u in devices)
    assert good["status"] == "ok" and good["latency"]["runs"] == 5 and good["latency"]["p50_ms"] > 0
    assert good["runtime"]["name"] == "ai_edge_litert" and good["sample_top1"] is not None
    assert good["signature"] == "valid"
    assert closed["status"] == "unreachable" and closed["seconds"] < 10
    assert hung["status"] == "timeout" and hung["seconds"] < 30  # the 8 s command timeout, not sleep 120
    assert elapsed < 45
    merged = json.loads(report.read_text())
    rows = [r for r in merged["devices"] if r["artifact"] == "tflite-arm-int8"]
    assert {r["status"] for r in rows} == {"ok", "unreachable", "timeout"}
    host_row = next(r for r in merged["artifacts"] if r["artifact"] == "tflite-arm/int8")
    assert rows[0]["host"]["p50_ms"] == host_row["latency"]["p50_ms"]  # side by side with the host's numbers
    assert merged["artifacts"] == json.loads((bundles["run"]["out"] / "report.json").read_text())["artifacts"]


def test_unreachable_auth_and_unknown_host_key(board, tmp_path):
    dev = Device.parse(url(board, tmp_path / "b"))
    ok = SSHOptions(board["client_key"], board["known_hosts"], connect_timeout=3, retries=1)
    assert Remote(dev, ok).run("echo hi").stdout.strip() == "hi"
    t0 = time.monotonic()
    with pytest.raises(RemoteError) as err:
        Remote(Device.parse(url(board, tmp_path / "b", port=free_port())), ok).run("true")
    assert err.value.status == "unreachable" and "Connection refused" in str(err.value)
    assert "after 2 attempts" in str(err.value) and time.monotonic() - t0 < 10
    with pytest.raises(RemoteError) as err:
        Remote(dev, SSHOptions(board["stranger_key"], board["known_hosts"], 3, retries=1)).run("true")
    assert err.value.status == "auth failed" and "attempts" not in str(err.value)  # not retried
    with pytest.raises(RemoteError) as err:
        Remote(dev, SSHOptions(board["client_key"], board["empty_known_hosts"], 3)).run("true")
    assert err.value.status == "unknown host key"
    assert board["empty_known_hosts"].read_text() == ""  # nothing was accepted
    t0 = time.monotonic()
    with pytest.raises(RemoteError) as err:
        Remote(dev, ok).run("sleep 60", timeout=2)
    assert err.value.status == "timeout" and time.monotonic() - t0 < 10


def test_old_or_missing_runtime_on_the_board(board, bundles, tmp_path):
    fake = tmp_path / "site" / "ai_edge_litert"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('__version__ = "0.9.0"\n')
    (fake / "interpreter.py").write_text("class Interpreter:\n    pass\n")
    old = tmp_path / "oldpy.sh"
    old.write_text(f'#!/bin/sh\nPYTHONPATH={tmp_path / "site"} exec {sys.executable} "$@"\n')
    bare = tmp_path / "nonumpy.sh"
    bare.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')  # -S: no site-packages, so no numpy
    old.chmod(0o755)
    bare.chmod(0o755)
    root = tmp_path / "board"
    res, _ = ship(board, bundles, bundles["v1"], root, python=str(old))  # refused by the pre-flight, before upload
    assert res.exit_code == 3 and not root.exists()
    assert "ai_edge_litert 0.9.0 (older than 1.0)" in " ".join(res.output.split())
    res = runner.invoke(app, ["bench", str(bundles["v1"]), "--device", url(board, root, python=str(bare)),
                              "--runs", "2", *ssh_args(board, bundles)], catch_exceptions=False)
    dev = json.loads(res.stdout[: res.stdout.rindex("}") + 1])["devices"][0]
    assert res.exit_code == 3 and dev["status"] == "runtime" and "numpy" in dev["error"]


def test_bad_url_is_input_error_and_closed_port_is_exit_3(board, bundles, tmp_path):
    res = runner.invoke(app, ["ship", str(bundles["v1"]), "--to", "http://x/y"])
    assert res.exit_code == 2 and "expected ssh://" in res.output
    t0 = time.monotonic()
    res, _ = ship(board, bundles, bundles["v1"], tmp_path / "b", port=free_port())
    assert res.exit_code == 3 and "unreachable" in res.output and time.monotonic() - t0 < 15


def board_state(root):
    return current(root), sorted(p.name for p in (root / "bundles").iterdir()), \
        sorted(p.name for p in (root / ".staging").iterdir())


def test_second_ship_fails_fast_naming_the_holder_and_a_stale_lock_is_broken(board, bundles, tmp_path):
    root = tmp_path / "board"
    assert ship(board, bundles, bundles["v1"], root)[0].exit_code == 0
    before = board_state(root)
    held = BoardLock(remote(board, root), sys.executable, "ship")
    held.acquire()  # another ship, from this host, is running
    owner = json.loads((root / ".lock" / "owner.json").read_text())
    assert owner["pid"] == os.getpid() and owner["purpose"] == "ship" and owner["token"] == held.token
    # the heartbeat: one remote step that starts no Python on the board
    cmds, run = [], held.remote.run
    held.remote.run = lambda cmd, *a, **k: (cmds.append(cmd), run(cmd, *a, **k))[1]
    old = time.time() - 50
    os.utime(root / ".lock" / "owner.json", (old, old))
    held.refresh()
    assert time.time() - (root / ".lock" / "owner.json").stat().st_mtime < 10
    assert len(cmds) == 1 and sys.executable not in cmds[0] and "grep" in cmds[0], cmds
    t0 = time.monotonic()
    res, _ = ship(board, bundles, bundles["v2"], root)
    assert res.exit_code == 3, res.output
    text = " ".join(res.output.split())
    assert f"held by ship from {owner['host']} (pid {os.getpid()}" in text and "--lock-timeout 900 s" in text
    assert time.monotonic() - t0 < 10 and board_state(root) == before  # nothing uploaded, switched or pruned
    assert json.loads((root / ".lock" / "owner.json").read_text())["token"] == held.token  # still the holder's
    # the holder stops refreshing its lock: after --lock-timeout it is stale, broken and taken
    old = time.time() - 120
    os.utime(root / ".lock" / "owner.json", (old, old))
    res, _ = ship(board, bundles, bundles["v2"], root, "--lock-timeout", "100")
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout[: res.stdout.rindex("}") + 1])
    assert rep["lock_broken"]["token"] == held.token and rep["lock_broken"]["age_s"] >= 120
    assert json.loads((root / "current" / "manifest.json").read_text())["bundle_version"] == 2
    assert not (root / ".lock").exists()
    with pytest.raises(RemoteError) as err:  # the old holder has lost it and must not remove someone else's lock
        held.refresh()
    assert err.value.status == "locked"
    res, _ = ship(board, bundles, bundles["v2"], root, "--lock-timeout", "30")  # must exceed --timeout (60)
    assert res.exit_code == 2 and "--lock-timeout: expected more than --timeout (60 s" in " ".join(res.output.split())


def test_leftover_staging_is_swept_and_own_staging_removed_on_failure(board, bundles, tmp_path, monkeypatch):
    root = tmp_path / "board"
    assert ship(board, bundles, bundles["v1"], root)[0].exit_code == 0
    dead = root / ".staging" / "0123456789ab"  # a ship killed mid-upload
    shutil.copytree(bundles["v2"], dead / bundles["v2"].name)
    res, rep = ship(board, bundles, bundles["v2"], root)
    assert res.exit_code == 0 and rep["swept_staging"] == ["0123456789ab"]
    assert list((root / ".staging").iterdir()) == []
    # interrupted (Ctrl-C) right after the upload: our staging dir is removed and the lock released
    real_upload = Remote.upload

    def upload_then_interrupt(self, sources, remote_dir, timeout=None, **kw):
        real_upload(self, sources, remote_dir, timeout, **kw)
        assert any((root / ".staging").iterdir())  # the upload really landed in staging
        raise KeyboardInterrupt

    monkeypatch.setattr(Remote, "upload", upload_then_interrupt)
    before = board_state(root)
    with pytest.raises(KeyboardInterrupt):
        ship_mod.ship(bundles["v1"], url(board, root), opts(board), bundles["run"]["pub"], force=True)
    assert board_state(root) == before and not (root / ".lock").exists()
    monkeypatch.setattr(Remote, "upload", real_upload)
    # interrupted during the smoke test: the lock is released too
    monkeypatch.setattr(Board, "runner", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        ship_mod.ship(bundles["v1"], url(board, root), opts(board), bundles["run"]["pub"], force=True)
    assert not (root / ".lock").exists() and list((root / ".staging").iterdir()) == []


def test_old_bundles_are_pruned_keeping_n_plus_current_and_previous(board, bundles, tmp_path):
    run = bundles["run"]
    made = {1: bundles["v1"], 2: bundles["v2"]}
    for v in (4, 5):
        made[v] = tmp_path / f"tflite-arm-int8-v{v}"
        shutil.copytree(bundles["v2"], made[v])
        seal(made[v], {**read_manifest(made[v]), "bundle_version": v}, run["key"])
    name = {v: remote_dir_name(b, read_manifest(b)) for v, b in made.items()}
    root = tmp_path / "board"
    for v, pruned in ((1, []), (2, []), (4, [name[1]])):
        res, rep = ship(board, bundles, made[v], root, "--keep", "2")
        assert res.exit_code == 0 and rep["pruned"] == pruned, res.output
    assert board_state(root)[:2] == (f"bundles/{name[4]}", sorted([name[2], name[4]]))
    # make the current bundle (the next ship's rollback target) the oldest: --keep 1 still keeps it
    old = time.time() - 3600
    os.utime(root / "bundles" / name[4], (old, old))
    res, rep = ship(board, bundles, made[5], root, "--keep", "1")
    assert res.exit_code == 0 and rep["pruned"] == [name[2]] and rep["previous"] == f"bundles/{name[4]}"
    assert board_state(root)[:2] == (f"bundles/{name[5]}", sorted([name[4], name[5]]))


def test_keygen_prints_the_fingerprint(tmp_path):
    from edgepipe.boards.signing import fingerprint

    res = runner.invoke(app, ["keygen", "--out", str(tmp_path / "k"), "--json"])
    out = json.loads(res.stdout)
    fp = fingerprint((tmp_path / "k" / "edgepipe.pub").read_bytes())
    assert res.exit_code == 0 and out["fingerprint"] == fp and fp.startswith("SHA256:") and len(fp) == 50
    res = runner.invoke(app, ["keygen", "--out", str(tmp_path / "k2")])
    assert res.exit_code == 0 and "fingerprint: SHA256:" in res.stdout
