"""Shipping a board operator trusts (issue 19, item 4), against the loopback sshd board of
tests/fixtures/ship_board.py: one model per install path unless --replace, pruning by version,
upload progress and a size-scaled upload timeout, bundles without host-only files, key rotation
signed by the trusted key, --json for keygen/bundle/verify, bench --report refreshing report.html,
and the post-switch hook.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from edgepipe.boards.bundle import build_bundle, read_manifest, seal
from edgepipe.boards.remote import Device, SSHOptions
from edgepipe.boards.ship import Board, remote_dir_name
from edgepipe.boards.signing import fingerprint, keygen
from edgepipe.cli.app import app
from tests.fixtures.ship_board import current, opts, remote, ship, ssh_args, url  # fixtures board, bundles: plugin

pytestmark = pytest.mark.heavy(seconds=24)  # worker-seconds measured: longest first (tests/fixtures/scheduling.py)

runner = CliRunner()


def resealed(src, dst, key, **changes):
    """A copy of bundle `src` with manifest fields changed, signed with `key`."""
    shutil.copytree(src, dst)
    seal(dst, {**read_manifest(dst), **changes}, key)
    return dst


def name(bundle):
    return remote_dir_name(bundle, read_manifest(bundle))


def last_json(res):
    return json.loads(res.stdout)  # exactly one object on stdout


# ---- 1. one model per install path ------------------------------------------------------------------------
def test_another_model_is_refused_before_upload_unless_replace(board, bundles, tmp_path):
    key = bundles["run"]["key"]
    assert read_manifest(bundles["v1"])["source_model_key"]  # the bundles carry the model's content key
    other = resealed(bundles["v2"], tmp_path / "tflite-arm-int8-v7", key, bundle_version=7,
                     source_model_sha256="f" * 64, source_model_key="e" * 64)
    retarget = resealed(bundles["v2"], tmp_path / "tflite-arm-int8-v8", key, bundle_version=8, target="tflite-x86")
    root = tmp_path / "board"
    assert ship(board, bundles, bundles["v1"], root)[0].exit_code == 0
    before = current(root), sorted(os.listdir(root / "bundles"))
    for bundle in (other, retarget):
        res, out = ship(board, bundles, bundle, root, "--json")
        assert res.exit_code == 2 and out["status"] == "refused" and out["exit_code"] == 2, res.output
        assert "one model per install path" in out["error"] and "--replace" in out["error"]
        assert "current is tflite-arm-int8 v1" in out["error"]  # names both models
        assert f"Received: tflite-arm-int8 v{read_manifest(bundle)['bundle_version']}" in out["error"]
        assert (current(root), sorted(os.listdir(root / "bundles"))) == before  # nothing uploaded
        assert list((root / ".staging").iterdir()) == [] and not (root / ".lock").exists()
    res, out = ship(board, bundles, other, root, "--replace", "--json")
    assert res.exit_code == 0 and out["status"] == "ok", res.output
    assert out["replaced"]["model"].startswith("tflite-arm-int8 v1") and out["replaced"]["link"] == before[0]
    assert current(root) == f"bundles/{name(other)}"
    newer = resealed(other, tmp_path / "tflite-arm-int8-v9", key, bundle_version=9)  # same model, new version
    res, out = ship(board, bundles, newer, root, "--json")
    assert res.exit_code == 0 and "replaced" not in out, res.output
    # the same model saved again: another file sha256, the same content key: not another model
    resaved = resealed(newer, tmp_path / "tflite-arm-int8-v10", key, bundle_version=10, source_model_sha256="a" * 64)
    res, out = ship(board, bundles, resaved, root, "--json")
    assert res.exit_code == 0 and "replaced" not in out, res.output
    # a bundle made before the key was recorded is compared by the file sha256
    legacy = resealed(newer, tmp_path / "tflite-arm-int8-v11", key, bundle_version=11, source_model_sha256="b" * 64,
                      source_model_key=None)
    res, out = ship(board, bundles, legacy, root, "--json")
    assert res.exit_code == 2 and "one model per install path" in out["error"], res.output


# ---- 2. pruning by version --------------------------------------------------------------------------------
def test_prune_keeps_the_highest_versions_not_the_newest_installs(board, tmp_path):
    bd = tmp_path / "board" / "bundles"
    now = time.time()
    for v in range(1, 6):  # installed newest-first in reverse version order: v1 is the latest install
        d = bd / f"m-v{v}-x"
        d.mkdir(parents=True)
        (d / "manifest.json").write_text(json.dumps({"bundle_version": v}))
        os.utime(d, (now - 100 * v, now - 100 * v))
    (bd / "junk").mkdir()
    (bd / "junk" / "manifest.json").write_text("{not json")
    b = Board(Device.parse(url(board, tmp_path / "board")), opts(board))
    pruned = b.prune(2, ["m-v1-x"])
    assert pruned == ["junk", "m-v2-x", "m-v3-x"]
    assert sorted(os.listdir(bd)) == ["m-v1-x", "m-v4-x", "m-v5-x"]


def test_ship_prunes_by_version_with_bundles_installed_out_of_order(board, bundles, tmp_path):
    v4 = resealed(bundles["v2"], tmp_path / "tflite-arm-int8-v4", bundles["run"]["key"], bundle_version=4)
    root = tmp_path / "board"
    for bundle, extra in ((v4, ()), (bundles["v1"], ("--force",)), (bundles["v2"], ("--force",))):
        res, rep = ship(board, bundles, bundle, root, "--keep", "1", *extra)
        assert res.exit_code == 0, res.output
    # current v2, previous v1 (both protected), and v4 is the highest version: install time would prune it
    assert rep["pruned"] == [] and sorted(os.listdir(root / "bundles")) == sorted(
        [name(v4), name(bundles["v1"]), name(bundles["v2"])])


# ---- 3. upload progress and a timeout that scales with the size ------------------------------------------
def test_upload_progress_goes_to_stderr_and_json_stays_one_object(board, bundles, tmp_path):
    res, out = ship(board, bundles, bundles["v1"], tmp_path / "board", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["status"] == "ok"
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("upload: ")]
    assert lines and lines[-1].endswith("(100%)") and " of " in lines[-1] and "MiB" in lines[-1], res.stderr
    assert "upload:" not in res.stdout


def test_upload_timeout_scales_with_size_and_says_so(board, tmp_path, monkeypatch):
    from edgepipe.boards import remote as remote_mod
    from edgepipe.boards.upload import MIN_RATE, upload_timeout

    assert upload_timeout(45 << 20, SSHOptions(command_timeout=300))[0] == pytest.approx(300 + (45 << 20) / MIN_RATE)
    assert upload_timeout(45 << 20, SSHOptions(command_timeout=300, upload_timeout=40))[0] == 40
    payload = tmp_path / "payload.bin"
    payload.write_bytes(os.urandom(1 << 20))
    root = tmp_path / "board"
    (root / "in").mkdir(parents=True)
    monkeypatch.setattr(remote_mod, "EXTRACT", "sleep 30 || tar -x -f - -C {dir}")  # a link that never finishes
    r = remote(board, root, command_timeout=1)
    t0 = time.monotonic()
    with pytest.raises(remote_mod.RemoteError) as err:
        r.upload([payload], "in")
    assert err.value.status == "timeout" and time.monotonic() - t0 < 15
    assert "upload of 1.0 MiB did not finish within 5 s (--timeout 1 s + 1.0 MiB at an assumed 256 KiB/s)" in str(
        err.value) and "--upload-timeout" in str(err.value)


def test_bench_on_boards_takes_the_upload_timeout_as_ship_does(monkeypatch, tmp_path):
    """`bench --device` installs the bundle on each board first: the same --upload-timeout reaches the upload
    (whose use of it the test above checks)."""
    from edgepipe.boards import device_bench

    seen = {}

    def fake_bench(bundle, urls, ssh_opts, pubkey, *args):
        seen.update(urls=urls, opts=ssh_opts)
        return {"devices": [], "ok": True}

    monkeypatch.setattr(device_bench, "bench_devices", fake_bench)
    res = runner.invoke(app, ["bench", str(tmp_path), "--device", "ssh://u@h/p", "--timeout", "7",
                              "--upload-timeout", "40"])
    assert res.exit_code == 0, res.output
    assert seen["urls"] == ["ssh://u@h/p"] and seen["opts"].upload_timeout == 40 and seen["opts"].command_timeout == 7
    res = runner.invoke(app, ["bench", str(tmp_path), "--device", "ssh://u@h/p"])
    assert res.exit_code == 0 and seen["opts"].upload_timeout is None  # the default: --timeout + the size's share
    res = runner.invoke(app, ["bench", str(tmp_path), "--device", "ssh://u@h/p", "--upload-timeout", "0"])
    assert res.exit_code == 2 and "--upload-timeout" in res.output


# ---- 4. bundles carry only what the board runs ------------------------------------------------------------
def test_host_only_blob_is_left_out_of_the_bundle(bundles, tmp_path):
    run = bundles["run"]
    out = tmp_path / "out"
    art = out / "artifacts" / "tflite-arm-int8"
    shutil.copytree(run["artifact"], art)
    shutil.copyfile(run["out"] / "report.json", out / "report.json")
    record = json.loads((art / "artifact.json").read_text())
    model = record["files"][0]
    stem = model.rsplit(".", 1)[0]
    (art / f"{stem}.blob").write_bytes(os.urandom(1 << 20))  # as the OpenVINO CPU target writes it
    (art / f"{stem}.compile.json").write_text("{}")
    record["files"] += [f"{stem}.blob", f"{stem}.compile.json"]
    (art / "artifact.json").write_text(json.dumps(record))
    b = build_bundle(art, tmp_path / "store", run["key"])
    man = read_manifest(b)
    shipped = {f["path"] for f in man["files"]}
    assert f"{stem}.blob" not in shipped and not (b / f"{stem}.blob").exists()
    assert f"{stem}.compile.json" not in shipped and model in shipped
    assert set(man["left_out"]) == {f"{stem}.blob", f"{stem}.compile.json"} and "host" in man["left_out"][
        f"{stem}.blob"]
    assert man["model"]["files"] == [model]
    assert sum(f["size"] for f in man["files"]) < (1 << 20)  # the tiny model's bundle is smaller than the blob


# ---- 5. key rotation ------------------------------------------------------------------------------------------
def board_args(board):
    return ["--identity", str(board["client_key"]), "--known-hosts", str(board["known_hosts"]),
            "--connect-timeout", "3", "--timeout", "60"]


def trust(board, root, new_pub, key, as_json=True):
    res = runner.invoke(app, ["board", "trust", url(board, root), "--new-pubkey", str(new_pub), "--key", str(key),
                              *board_args(board)] + (["--json"] if as_json else []), catch_exceptions=False)
    return res, (json.loads(res.stdout) if as_json else None)


def test_key_rotation_needs_the_trusted_key_and_then_refuses_the_old_one(board, bundles, tmp_path):
    from edgepipe.boards.signing import sign_bytes
    from edgepipe.boards.trust import STATEMENT, install_statement, statement

    run = bundles["run"]
    root = tmp_path / "board"
    assert ship(board, bundles, bundles["v1"], root)[0].exit_code == 0
    new_key, new_pub = keygen(tmp_path / "new")
    mallory_key, mallory_pub = keygen(tmp_path / "mallory")
    old_fp, new_fp = fingerprint(run["pub"].read_bytes()), fingerprint(new_pub.read_bytes())
    # not holding the trusted key: refused, nothing changed
    res, out = trust(board, root, new_pub, mallory_key)
    assert res.exit_code == 2 and out["status"] == "refused" and old_fp in out["error"], res.output
    assert (root / "trusted.pub").read_bytes() == run["pub"].read_bytes() and not (root / "lock").exists()
    # a statement the host would never send (signed by another key) is refused by the board itself
    text = statement(run["pub"].read_bytes(), mallory_pub.read_bytes())
    files = [tmp_path / STATEMENT, tmp_path / "rotation.sig", tmp_path / "new.pub"]
    files[0].write_bytes(text)
    files[1].write_text(json.dumps(sign_bytes(text, mallory_key)))
    shutil.copyfile(mallory_pub, files[2])
    r = remote(board, root)
    got = install_statement(r, files)
    assert not got["ok"] and "bad signature" in got["error"]
    assert (root / "trusted.pub").read_bytes() == run["pub"].read_bytes()
    # the holder of the trusted key rotates: old and new fingerprints printed, the statement kept
    res = trust(board, root, new_pub, run["key"], as_json=False)[0]
    assert res.exit_code == 0 and f"{old_fp} -> {new_fp}" in res.stdout, res.output
    assert (root / "trusted.pub").read_bytes() == new_pub.read_bytes()
    kept = [p.name for p in (root / "trust").iterdir()]
    assert any(n.startswith("rotation-") and n.endswith(".json") for n in kept) and any(n.startswith("old-")
                                                                                         for n in kept)
    # afterwards: bundles signed with the old key are refused (ship before upload; the runner on the board)
    res, out = ship(board, bundles, bundles["v2"], root, "--json")
    assert res.exit_code == 3 and out["status"] == "untrusted key" and new_fp in out["error"], res.output
    proc = subprocess.run([sys.executable, str(root / "runner" / "device_runner.py"), str(root / "current"),
                           "--verify-only"], capture_output=True, text=True)
    assert proc.returncode == 2 and "signature that does not match" in proc.stdout
    # and bundles signed with the new key ship
    v3 = resealed(bundles["v2"], tmp_path / "tflite-arm-int8-v3", new_key, bundle_version=3)
    res = runner.invoke(app, ["ship", str(v3), "--to", url(board, root), *ssh_args(board, bundles), "--pubkey",
                              str(new_pub), "--json"], catch_exceptions=False)
    assert res.exit_code == 0 and last_json(res)["verify"]["signature"] == "valid", res.output
    # rotating to the key it already trusts is refused
    res, out = trust(board, root, new_pub, new_key)
    assert res.exit_code == 2 and not out["ok"] and "the same key" in out["error"]


# ---- 6. --json for keygen, bundle, verify: every outcome ---------------------------------------------------
def test_keygen_bundle_verify_print_one_json_object_for_every_outcome(bundles, tmp_path):
    run = bundles["run"]
    res = runner.invoke(app, ["keygen", "--out", str(tmp_path / "k"), "--json"])
    assert res.exit_code == 0 and last_json(res)["ok"] and last_json(res)["exit_code"] == 0
    res = runner.invoke(app, ["keygen", "--out", str(tmp_path / "k"), "--json"])  # exists: refused
    out = last_json(res)
    assert res.exit_code == 2 and out == {**out, "ok": False, "exit_code": 2} and "--force" in out["error"]
    res = runner.invoke(app, ["verify", str(bundles["v1"]), "--pubkey", str(run["pub"]), "--json"])
    out = last_json(res)
    assert res.exit_code == 0 and out["ok"] and out["exit_code"] == 0 and out["bundle_version"] == 1
    bad = tmp_path / "bad"
    shutil.copytree(bundles["v1"], bad)
    (bad / "labels.txt").write_text("tampered\n")
    res = runner.invoke(app, ["verify", str(bad), "--pubkey", str(run["pub"]), "--json"])
    out = last_json(res)
    assert res.exit_code == 2 and not out["ok"] and out["status"] == "refused" and "labels.txt" in out["error"]
    res = runner.invoke(app, ["bundle", str(tmp_path / "nope"), "--out", str(tmp_path / "store"), "--key",
                              str(run["key"]), "--json"])
    out = last_json(res)
    assert res.exit_code == 2 and not out["ok"] and out["exit_code"] == 2 and "artifact" in out["error"]
    res = runner.invoke(app, ["bundle", str(run["artifact"]), "--out", str(tmp_path / "store"), "--key",
                              str(run["key"]), "--json"])
    out = last_json(res)
    assert res.exit_code == 0 and out["ok"] and out["exit_code"] == 0 and os.path.isdir(out["bundle"])


# ---- 7. bench --report refreshes report.html -------------------------------------------------------------
def test_merging_board_rows_rerenders_report_html(bundles, tmp_path):
    from edgepipe.boards.device_bench import merge_into_report

    report = tmp_path / "report.json"
    shutil.copyfile(bundles["run"]["out"] / "report.json", report)
    (tmp_path / "report.html").write_text("stale")
    summary = {"bundle": {"name": "tflite-arm-int8", "bundle_version": 2}, "host": {"machine": "x86_64"},
               "devices": [{"device": "ssh://pi@board-under-test/edge", "status": "ok", "latency": {"p50_ms": 1.5}}]}
    merge_into_report(report, summary)
    html = (tmp_path / "report.html").read_text()
    assert html != "stale" and "board-under-test" in html
    assert json.loads(report.read_text())["devices"][0]["device"] == "ssh://pi@board-under-test/edge"


# ---- 8. post-switch hook -----------------------------------------------------------------------------------
def test_post_switch_hook_runs_after_the_switch_and_its_failure_switches_back(board, bundles, tmp_path):
    root = tmp_path / "board"
    log = "echo \"$(readlink current) $EDGEPIPE_BUNDLE\" >> hook.log"
    res, out = ship(board, bundles, bundles["v1"], root, "--post-switch", log, "--json")
    assert res.exit_code == 0 and out["post_switch"]["exit_code"] == 0, res.output
    first = current(root)
    assert (root / "hook.log").read_text().split() == [first, str(root / first)]
    res, out = ship(board, bundles, bundles["v2"], root, "--post-switch", f"{log}; exit 7", "--json")
    assert res.exit_code == 3 and out["status"] == "rolled back" and "post-switch command failed" in out["reason"]
    assert out["post_switch"]["exit_code"] == 7 and current(root) == first
    lines = (root / "hook.log").read_text().splitlines()
    assert lines[1].split()[0] == f"bundles/{name(bundles['v2'])}"  # it ran with the new bundle current
    assert lines[2].split()[0] == first  # and again after the switch back
    assert not (root / "bundles" / name(bundles["v2"])).exists()


def test_a_board_without_tar_is_refused_before_anything_is_written(board, bundles, tmp_path):
    """Uploads are one tar stream: the pre-flight looks for tar on the board's PATH (here: a board python whose
    PATH holds no tar) and refuses before the install path, the lock or a staging dir exists."""
    wrapper = tmp_path / "python-no-tar"
    wrapper.write_text(f"#!/bin/sh\nPATH={tmp_path / 'empty'} exec {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    root = tmp_path / "board"
    res, out = ship(board, bundles, bundles["v1"], root, "--json", python=str(wrapper))
    assert res.exit_code == 3 and out["status"] == "no tar", res.output
    assert "expected `tar` on the board's PATH" in out["error"] and "install tar" in out["error"]
    assert not root.exists()


# ---- 9. bench --report: a report that is not a run's report.json is refused before any board is contacted --
@pytest.mark.parametrize("text, said", [
    ('{"a": 1}', 'an object with "edgepipe_report"'),
    ('{"edgepipe_report": 1, "devices": "x"}', "devices: expected a list of rows or null. Received: str"),
    ('{"edgepipe_report": 1, "artifacts": [{"artifact": 5}]}', "artifacts[0].artifact: Input should be a valid string"),
    ('{"edgepipe_report": 1, "environment": "x", "artifacts": [{"artifact": "tflite-arm-int8"}]}',
     "environment: expected an object or null. Received: str"),
    ('{"edgepipe_report": 1, "title": "t", "artifacts": [{"artifact": "x", "accuracy": "y"}]}',
     "artifacts[0].accuracy: Input should be a valid dictionary"),
    ('{"edgepipe_report": 1, "model": "x"}', "report.html can be rendered from. Received: AttributeError"),
])
def test_bench_report_of_the_wrong_shape_is_exit_2_before_any_board_and_changes_nothing(monkeypatch, tmp_path,
                                                                                         text, said):
    import contextlib

    from edgepipe.boards import device_bench
    from edgepipe.core.errors import RemoteError

    contacted = []

    class NoBoard:  # a board that is "unreachable": records that it was contacted
        def __init__(self, device, *args):
            contacted.append(device.label)
            raise RemoteError("unreachable", "unreachable")

    @contextlib.contextmanager
    def fake_bundle(path, pubkey):
        yield path, {"name": "tflite-arm-int8", "bundle_version": 1}

    monkeypatch.setattr(device_bench, "Board", NoBoard)
    monkeypatch.setattr(device_bench, "verified_bundle", fake_bundle)
    monkeypatch.setattr(device_bench, "remote_dir_name", lambda *a: "b")
    pub = keygen(tmp_path / "keys")[1]
    report = tmp_path / "run" / "report.json"
    report.parent.mkdir()
    report.write_text(text)
    res = runner.invoke(app, ["bench", str(tmp_path), "--device", "ssh://u@h/p", "--report", str(report),
                              "--pubkey", str(pub)])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception  # no traceback
    assert res.exit_code == 2 and "--report" in res.output and said in " ".join(res.output.split()), res.output
    assert contacted == [] and report.read_text() == text and os.listdir(report.parent) == ["report.json"]


def test_merging_board_rows_into_a_minimal_report_writes_both_files(tmp_path):
    from edgepipe.boards.device_bench import merge_into_report

    report = tmp_path / "report.json"
    report.write_text('{"edgepipe_report": 1, "artifacts": []}')
    summary = {"bundle": {"name": "m", "bundle_version": 1}, "host": {},
               "devices": [{"device": "ssh://pi@board-under-test/edge", "status": "unreachable"}]}
    merge_into_report(report, summary)
    assert json.loads(report.read_text())["devices"][0]["artifact"] == "m"
    assert "board-under-test" in (tmp_path / "report.html").read_text()
    assert sorted(os.listdir(tmp_path)) == ["report.html", "report.json"]  # no temporary folder left
