"""`edgepipe board status | list | rollback` against the loopback sshd "board" of tests/test_ship.py.

Two versions of the tiny INT8 bundle are shipped with `edgepipe ship`, then the board is read
(status, list: read-only) and rolled back (to the previous bundle, to a named one), and every
refusal (nothing to roll back to, unknown bundle, a bundle damaged on the board, a held lock,
an unreachable board) is checked to change nothing and to print one JSON object with --json.

Then what a board operator meets when shipping: the pre-flight's refusals before anything is written (no numpy or
runtime, no python, an unwritable or read-only path, no space), a changed host key, a bundle damaged on the board
repaired by shipping again, and one JSON object for every outcome of `ship --json`.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time

import pytest
from typer.testing import CliRunner

from edgepipe.boards.bundle import read_manifest
from edgepipe.boards.lock import BoardLock
from edgepipe.boards.remote import Device
from edgepipe.boards.ship import Board, remote_dir_name
from edgepipe.boards.signing import fingerprint
from edgepipe.cli.app import app
from edgepipe.core.errors import RemoteError
from tests.fixtures.ship_board import current, remote, ship, ship_json, ssh_args, url  # fixtures board, bundles
from tests.fixtures.sshd_board import free_port

pytestmark = pytest.mark.heavy(seconds=35)  # worker-seconds measured: longest first (tests/fixtures/scheduling.py)

runner = CliRunner()


def board_args(board):  # noqa: F811
    return ["--identity", str(board["client_key"]), "--known-hosts", str(board["known_hosts"]),
            "--connect-timeout", "3", "--timeout", "60"]


def cmd(board, root, action, *extra, as_json=True, port=None):  # noqa: F811
    args = ["board", action, url(board, root, port=port), *board_args(board), *extra] + (["--json"] if as_json else [])
    res = runner.invoke(app, args, catch_exceptions=False)
    return res, (json.loads(res.stdout) if as_json else None)


def tree(root):
    """Every path under the board root with its mtime and link target: a read-only command changes none."""
    out = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            out[p] = (os.lstat(p).st_mtime_ns, os.readlink(p) if os.path.islink(p) else None)
    return out


def dirname(bundle):
    return remote_dir_name(bundle, read_manifest(bundle))


@pytest.fixture()
def two(board, bundles, tmp_path):  # noqa: F811
    """A board with v1 then v2 shipped: current = v2, previous = v1."""
    root = tmp_path / "board"
    for v in ("v1", "v2"):
        res, _ = ship(board, bundles, bundles[v], root)
        assert res.exit_code == 0, res.output
    return root


def test_status_and_list_are_read_only_and_name_current_previous_key_and_lock(board, bundles, two):  # noqa: F811
    root, name1, name2 = two, dirname(bundles["v1"]), dirname(bundles["v2"])
    before = tree(root)
    res, st = cmd(board, root, "status")
    assert res.exit_code == 0 and st["ok"] and st["status"] == "ok" and st["exit_code"] == 0, res.output
    man2 = read_manifest(bundles["v2"])
    cur = st["current"]
    assert cur["dir"] == name2 and cur["name"] == "tflite-arm-int8" and cur["version"] == 2
    assert cur["manifest_sha256"] == hashlib.sha256((bundles["v2"] / "manifest.json").read_bytes()).hexdigest()
    assert cur["model_sha256"] == man2["model"]["sha256"] and cur["model_file"] == man2["model"]["file"]
    assert st["previous"]["dir"] == name1 and st["previous"]["version"] == 1
    assert st["trusted_key"] == fingerprint(bundles["run"]["pub"].read_bytes()) and st["lock"] is None
    host = st["board"]  # the board (this host's python) says what it runs; not emulated
    assert host["isa"] == platform.machine() and host["emulated"] is None
    assert host["python"] == platform.python_version()
    assert host["runtimes"]["ai_edge_litert"]["version"] and host["numpy"]["version"]
    res, ls = cmd(board, root, "list")
    assert res.exit_code == 0 and ls["ok"] and ls["exit_code"] == 0
    assert [(b["dir"], b["version"], b["current"]) for b in ls["bundles"]] == [(name2, 2, True), (name1, 1, False)]
    assert all(b["installed"].endswith("Z") for b in ls["bundles"])
    res, _ = cmd(board, root, "status", as_json=False)  # for people
    assert res.exit_code == 0 and f"current:  {name2}" in res.stdout and f"previous: {name1}" in res.stdout
    assert "lock:     free" in res.stdout and st["trusted_key"] in res.stdout
    assert f"runs:     {platform.machine()}, Python {platform.python_version()}, numpy" in res.stdout
    res, _ = cmd(board, root, "list", as_json=False)
    lines = res.stdout.splitlines()
    assert res.exit_code == 0 and lines[2].startswith("*") and name2 in lines[2] and name1 in lines[3]
    assert tree(root) == before  # nothing created, moved or touched
    held = BoardLock(remote(board, root), sys.executable, "ship")
    held.acquire()
    try:
        res, st = cmd(board, root, "status")  # status works on a locked board and names the holder
        assert res.exit_code == 0 and "held by ship" in st["lock"]["holder"] and "token" not in st["lock"]
    finally:
        held.release()


@pytest.mark.parametrize("kind", ["fifo", "file", "dangling link"])
def test_status_never_calls_a_lock_path_that_blocks_ship_free(board, bundles, two, kind):  # noqa: F811
    """A FIFO, a file or a link at R/.lock was shown as "lock: free", while ship and bench could not take the lock.
    And a lock whose owner.json became a FIFO made the heartbeat's grep block until the command timeout."""
    root = two
    if kind == "fifo":
        os.mkfifo(root / ".lock")
    elif kind == "file":
        (root / ".lock").write_text("garbage")
    else:
        (root / ".lock").symlink_to(root / "nowhere")
    res, st = cmd(board, root, "status")
    said = {"fifo": "a FIFO (named pipe)", "file": "a regular file", "dangling link": "a symbolic link"}[kind]
    assert res.exit_code == 0 and st["lock"]["not_a_lock"] == said, res.output
    assert f"taken by {said} that is not a lock edgepipe made" in st["lock"]["holder"]
    res, _ = cmd(board, root, "status", as_json=False)
    assert "lock:     free" not in res.stdout and "not a lock edgepipe made" in " ".join(res.stdout.split())
    (root / ".lock").unlink()
    held = BoardLock(remote(board, root), sys.executable, "ship")
    held.acquire()
    (root / ".lock" / "owner.json").unlink()
    os.mkfifo(root / ".lock" / "owner.json")
    start = time.monotonic()
    with pytest.raises(RemoteError, match="expected to still hold"):
        held.refresh()
    assert time.monotonic() - start < 30  # the command timeout is 60 s: nothing waited on the FIFO


def test_rollback_to_previous_then_back_and_to_a_named_bundle(board, bundles, two):  # noqa: F811
    root, name1, name2 = two, dirname(bundles["v1"]), dirname(bundles["v2"])
    res, out = cmd(board, root, "rollback")
    assert res.exit_code == 0 and out["ok"] and out["status"] == "ok" and out["exit_code"] == 0, res.output
    assert out["bundle"] == name1 and out["previous"] == f"bundles/{name2}" and out["verify"]["signature"] == "valid"
    assert current(root) == f"bundles/{name1}" and json.loads((root / "current" / "manifest.json").read_text())[
        "bundle_version"] == 1
    assert not (root / ".lock").exists() and not (root / ".current.new").exists()
    res, _ = cmd(board, root, "rollback", as_json=False)  # the previous one is now v2: rolling back again undoes it
    assert res.exit_code == 0 and f"current -> bundles/{name2}" in res.stdout and current(root) == f"bundles/{name2}"
    res, out = cmd(board, root, "rollback", "--to", name1)
    assert res.exit_code == 0 and out["bundle"] == name1 and current(root) == f"bundles/{name1}"
    res, out = cmd(board, root, "rollback", "--to", f"bundles/{name2}/")  # as `current` shows it
    assert res.exit_code == 0 and current(root) == f"bundles/{name2}" and not (root / ".lock").exists()


def test_rollback_refusals_change_nothing(board, bundles, tmp_path):  # noqa: F811
    root = tmp_path / "board"
    assert ship(board, bundles, bundles["v1"], root)[0].exit_code == 0
    name1 = dirname(bundles["v1"])
    res, out = cmd(board, root, "rollback")
    assert res.exit_code == 2 and not out["ok"] and out["status"] == "nothing to roll back to" and out["exit_code"] == 2
    assert "Received: 1 bundle(s)" in out["error"] and name1 in out["error"]
    assert current(root) == f"bundles/{name1}" and not (root / ".lock").exists()
    res, out = cmd(board, root, "rollback", "--to", "tflite-arm-int8-v7-000000000000")
    assert res.exit_code == 2 and out["status"] == "unknown bundle" and out["exit_code"] == 2
    assert "expected one of the bundles" in out["error"] and name1 in out["error"]
    assert "Received: 'tflite-arm-int8-v7-000000000000'" in out["error"]
    res, out = cmd(board, root, "rollback", "--to", name1)
    assert res.exit_code == 2 and out["status"] == "already current"
    res, out = cmd(board, root, "rollback", "--to", "../bundles")
    assert res.exit_code == 2 and out["status"] == "bad input" and "bundle directory name" in out["error"]
    res, _ = cmd(board, root, "rollback", as_json=False)  # for people: the message on stderr, same exit code
    assert res.exit_code == 2 and "nothing to roll back to" not in res.stdout and "expected an installed" in res.output
    assert current(root) == f"bundles/{name1}" and not (root / ".lock").exists()
    res, out = cmd(board, tmp_path / "nowhere", "status")
    assert res.exit_code == 3 and out["status"] == "not installed" and not (tmp_path / "nowhere").exists()


def test_a_bundle_damaged_on_the_board_is_refused_and_current_unchanged(board, bundles, two):  # noqa: F811
    root, name1, name2 = two, dirname(bundles["v1"]), dirname(bundles["v2"])
    (root / "bundles" / name1 / "labels.txt").write_text("damaged\n")
    for extra in ([], ["--to", name1]):
        res, out = cmd(board, root, "rollback", *extra)
        assert res.exit_code == 3 and not out["ok"] and out["status"] == "verification failed", res.output
        assert out["exit_code"] == 3 and "labels.txt" in out["error"] and f"bundles/{name1}" in out["error"]
        assert current(root) == f"bundles/{name2}" and not (root / ".lock").exists()
    (root / "bundles" / name1 / "labels.txt").write_bytes((bundles["v1"] / "labels.txt").read_bytes())
    res, out = cmd(board, root, "rollback")  # repaired: the same rollback goes through
    assert res.exit_code == 0 and current(root) == f"bundles/{name1}"


def test_every_outcome_is_one_json_object_with_its_exit_code(board, bundles, two):  # noqa: F811
    root = two
    for action in ("status", "list", "rollback"):
        res, out = cmd(board, root, action, port=free_port())
        assert res.exit_code == 3 and out["status"] == "unreachable" and out["exit_code"] == 3 and not out["ok"]
    res = runner.invoke(app, ["board", "status", "ssh://nohost", "--json"], catch_exceptions=False)
    out = json.loads(res.stdout)
    assert res.exit_code == 2 and out["status"] == "bad input" and out["exit_code"] == 2
    before = current(root)
    held = BoardLock(remote(board, root), sys.executable, "ship")
    held.acquire()
    try:
        res, out = cmd(board, root, "rollback")
        assert res.exit_code == 3 and out["status"] == "locked" and "held by ship" in out["error"]
        assert current(root) == before
    finally:
        held.release()


# ---- what a board operator meets: clear refusals, --json for every outcome, repair (board-ops) ----------
def fake_python(tmp_path, name, body):
    script = tmp_path / name
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return script


def test_preflight_refuses_a_board_without_numpy_or_runtime_before_writing_anything(board, bundles, tmp_path):
    site = tmp_path / "site" / "ai_edge_litert"
    site.mkdir(parents=True)
    (site / "__init__.py").write_text('__version__ = "0.9.0"\n')
    (site / "interpreter.py").write_text("class Interpreter:\n    pass\n")
    old = fake_python(tmp_path, "oldrt.sh", f'PYTHONPATH={tmp_path / "site"} exec {sys.executable} "$@"')
    bare = fake_python(tmp_path, "bare.sh", f'exec {sys.executable} -S "$@"')  # -S: no numpy, no runtime
    root = tmp_path / "board"
    res, out = ship_json(board, bundles, bundles["v1"], root, python=str(old))
    assert res.exit_code == 3 and out["status"] == "runtime" and not out["ok"], out
    assert "ai_edge_litert 0.9.0 (older than 1.0)" in out["error"] and "pip install" in out["error"]
    assert "ai-edge-litert>=1.0 or tflite-runtime>=2.11" in out["error"] and "PEP 668" in out["error"]
    assert not root.exists()  # nothing at all on the board: no trusted.pub, no lock, no runner
    res, out = ship_json(board, bundles, bundles["v1"], root, python=str(bare))
    assert res.exit_code == 3 and out["status"] == "runtime", out
    assert "numpy: ModuleNotFoundError" in out["error"] and "'numpy'" in out["error"] and "?python=" in out["error"]
    assert not root.exists()


def test_missing_python_unwritable_path_and_no_space_are_clear_errors(board, bundles, tmp_path):
    root = tmp_path / "board"
    res, out = ship_json(board, bundles, bundles["v1"], root, python=str(tmp_path / "no" / "python3"))
    assert res.exit_code == 3 and out["status"] == "no python", out
    assert "Received: not found" in out["error"] and "--remote-python" in out["error"] and "?python=" in out["error"]
    assert "Traceback" not in res.output and "lock" not in out["error"] and not root.exists()
    (tmp_path / "afile").write_text("mine")
    res, out = ship_json(board, bundles, bundles["v1"], tmp_path / "afile" / "edge")
    assert res.exit_code == 3 and out["status"] == "remote path not writable", out
    assert f"{tmp_path / 'afile'} is not a directory" in out["error"] and "Traceback" not in out["error"]
    assert (tmp_path / "afile").read_text() == "mine"
    # the lock (taken after the pre-flight) says the same, not a traceback, if the board changes in between
    with pytest.raises(RemoteError) as err:
        BoardLock(remote(board, tmp_path / "afile" / "edge"), sys.executable, "ship").acquire()
    assert err.value.status == "remote path not writable" and "NotADirectoryError" in str(err.value)
    assert "Traceback" not in str(err.value)
    with pytest.raises(RemoteError) as err:
        BoardLock(remote(board, root), str(tmp_path / "no" / "python3"), "ship").acquire()
    assert err.value.status == "no python" and "--remote-python" in str(err.value) and not root.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only directories (the board logs in as this user)")
def test_a_read_only_install_dir_is_refused_before_writing(board, bundles, tmp_path):
    ro = tmp_path / "ro"
    (ro / "edge" / "bundles").mkdir(parents=True)
    (ro / "edge" / "bundles").chmod(0o555)
    try:
        res, out = ship_json(board, bundles, bundles["v1"], ro / "edge")
        assert res.exit_code == 3 and out["status"] == "remote path not writable", out
        assert f"{ro / 'edge' / 'bundles'} is not writable" in out["error"] and "chown" in out["error"]
        assert sorted(p.name for p in (ro / "edge").iterdir()) == ["bundles"]
    finally:
        (ro / "edge" / "bundles").chmod(0o755)


def test_preflight_no_space_names_the_need(board, bundles, tmp_path):
    from edgepipe.boards.preflight import evaluate

    facts = {"python": "3.11.2", "executable": "/usr/bin/python3", "numpy": {"version": "1.26.4"},
             "runtimes": {"tflite_runtime": {"version": "2.14.0"}, "ai_edge_litert": {"error": "ImportError: x"}},
             "user": "pi", "root": "/opt/edge", "base": "/opt", "unwritable": [], "free_bytes": 1 << 20}
    manifest = read_manifest(bundles["v1"])
    problems = evaluate(facts, manifest, 5 << 20, Device.parse("ssh://pi@b/opt/edge"))
    assert [p[0] for p in problems] == ["no space"], problems
    assert "expected at least 5.0 MiB" in problems[0][1] and "Received: 1.0 MiB" in problems[0][1]
    assert evaluate({**facts, "free_bytes": 9 << 20}, manifest, 5 << 20, Device.parse("ssh://b/x")) == []


def test_a_changed_host_key_prints_the_full_fingerprint(board, bundles, tmp_path):
    import subprocess

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    kind, key = (tmp_path / "other.pub").read_text().split()[:2]
    changed = tmp_path / "known_hosts"
    changed.write_text(f"[127.0.0.1]:{board['port']} {kind} {key}\n")
    real = subprocess.run(["ssh-keygen", "-l", "-f", str(board["dir"] / "host_key.pub")], capture_output=True,
                          text=True, check=True).stdout.split()[1]
    assert real.startswith("SHA256:")
    args = ["ship", str(bundles["v1"]), "--to", url(board, tmp_path / "b"), *ssh_args(board, bundles), "--json"]
    args[args.index("--known-hosts") + 1] = str(changed)
    res = runner.invoke(app, args, catch_exceptions=False)
    out = json.loads(res.stdout)
    assert res.exit_code == 3 and out["status"] == "host key changed" and out["exit_code"] == 3, out
    assert f"Received: a different ED25519 key, fingerprint {real}" in out["error"]
    assert f"{changed}:1" in out["error"] and "ssh-keygen -f" in out["error"]
    assert real in " ".join(res.stderr.split())  # and on the terminal, whole
    assert changed.read_text() == f"[127.0.0.1]:{board['port']} {kind} {key}\n"  # nothing accepted


def test_a_bundle_damaged_on_the_board_is_repaired_by_shipping_again(board, bundles, tmp_path):
    root = tmp_path / "board"
    name1 = remote_dir_name(bundles["v1"], read_manifest(bundles["v1"]))
    assert ship(board, bundles, bundles["v1"], root)[0].exit_code == 0
    assert ship(board, bundles, bundles["v2"], root)[0].exit_code == 0
    (root / "bundles" / name1 / "labels.txt").write_text("damaged\n")  # an old bundle, not current
    res, rep = ship(board, bundles, bundles["v1"], root, "--force")
    assert res.exit_code == 0 and rep["status"] == "ok", res.output
    assert "replaced by a verified copy" in rep["repaired"] and current(root) == f"bundles/{name1}"
    assert (root / "bundles" / name1 / "labels.txt").read_bytes() == (bundles["v1"] / "labels.txt").read_bytes()
    # the current bundle damaged: shipping it again repairs it in place; `current` keeps pointing at it
    (root / "current" / "labels.txt").write_text("damaged\n")
    res, rep = ship(board, bundles, bundles["v1"], root, "--force")
    assert res.exit_code == 0 and rep["repaired"] and current(root) == f"bundles/{name1}", res.output
    assert (root / "current" / "labels.txt").read_bytes() == (bundles["v1"] / "labels.txt").read_bytes()
    assert list((root / ".staging").iterdir()) == []
    res, rep = ship(board, bundles, bundles["v1"], root, "--force")  # an intact copy is left alone
    assert res.exit_code == 0 and "repaired" not in rep


def test_ship_json_is_one_object_with_the_exit_code_for_every_outcome(board, bundles, tmp_path, monkeypatch):
    root = tmp_path / "board"
    res, out = ship_json(board, bundles, bundles["v2"], root)
    assert res.exit_code == 0 and out["ok"] and out["status"] == "ok" and out["preflight"]["numpy"]
    res, out = ship_json(board, bundles, bundles["v1"], root)  # downgrade refused
    assert res.exit_code == 2 and out["status"] == "refused" and "newer than" in out["error"]
    res, out = ship_json(board, bundles, bundles["broken"], root)  # smoke test failed, rolled back
    assert res.exit_code == 3 and out["status"] == "rolled back" and out["error"] and out["smoke"] is not None
    res, out = ship_json(board, bundles, bundles["v2"], root, port=free_port())
    assert res.exit_code == 3 and out["status"] == "unreachable"
    args = ["ship", str(bundles["v2"]), "--to", url(board, root), *ssh_args(board, bundles), "--json"]
    args[args.index("--identity") + 1] = str(board["stranger_key"])
    res = runner.invoke(app, args, catch_exceptions=False)
    assert res.exit_code == 3 and json.loads(res.stdout)["status"] == "auth failed"
    held = BoardLock(remote(board, root), sys.executable, "ship")
    held.acquire()
    try:
        res, out = ship_json(board, bundles, bundles["v2"], root, "--force")
        assert res.exit_code == 3 and out["status"] == "locked" and "held by ship" in out["error"]
    finally:
        held.release()
    before = current(root)
    monkeypatch.setattr(Board, "runner", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    res, out = ship_json(board, bundles, bundles["v1"], root, "--force")
    assert res.exit_code == 130 and out["status"] == "interrupted" and not out["ok"]
    assert current(root) == before and not (root / ".lock").exists()  # switched back, lock released
