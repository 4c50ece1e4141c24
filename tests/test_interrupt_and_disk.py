"""Rows 10-11 through the real CLI: SIGTERM and kill -9 in the middle of a stage, then a rerun that
resumes from the cache; a full disk (a tiny tmpfs) and a read-only output directory (a read-only bind
mount: the tests run as root, where chmod does not stop writes) abort cleanly, leaving the previous
good report.json and artifacts byte for byte as they were."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgepipe.cli.app import app
from tests.fixtures.configs import write_config
from tests.fixtures.leftovers import dead_temp_dir


def test_sigterm_is_handled_like_ctrl_c(resumed):
    assert resumed["term_rc"] == 143, resumed["term_err"]
    assert "terminated (SIGTERM)" in resumed["term_err"] and "rerun to resume" in resumed["term_err"]
    assert resumed["term_leftovers"] == []  # the unfinished stage's temporary directory was discarded
    assert not resumed["term_report"]
    assert {n.split("-")[0] for n in resumed["term_complete"]} >= {"savedmodel", "tflite"}


SWALLOWED = """
import os, signal, sys
class Eats:  # SIGTERM arrives while a finalizer runs (as in TensorFlow's AtomicFunction.__del__)
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        sum(range(100_000))  # the handler runs here; Python prints "Exception ignored" and drops its exception
"""


@pytest.mark.parametrize("where", ["before the next stage", "when the command returns"])
def test_a_sigterm_a_finalizer_swallowed_still_stops_edgepipe(tmp_path, where):
    """The SIGTERM handler's exception raised inside a finalizer was dropped and the run carried on to exit 0
    (seen twice in about 20 tries). The signal is remembered: the next stage raises it again, and the CLI exits
    143 all the same when the command returned."""
    if where == "before the next stage":
        body = ("from edgepipe.core.children import install_sigterm\nfrom edgepipe.core.signals import Terminated\n"
                "from edgepipe.core.cache import StageCache\ninstall_sigterm()\nEats()\n"
                "print('carried on', flush=True)\ntry:\n"
                f"    StageCache({str(tmp_path)!r}).run('s', {{}}, lambda out: print('stage ran'))\n"
                "except Terminated:\n    sys.exit(143)\n")
    else:
        body = ("from edgepipe.cli import app as cli\n"
                "def command():\n    Eats()\n    print('carried on', flush=True)\n    sys.exit(0)\n"
                "cli.app = command\ncli.main()\n")
    res = subprocess.run([sys.executable, "-c", SWALLOWED + body], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert "Exception ignored" in res.stderr and "carried on" in res.stdout, (res.stdout, res.stderr)
    assert res.returncode == 143 and "stage ran" not in res.stdout, (res.returncode, res.stdout, res.stderr)
    if where == "when the command returns":
        assert "terminated (SIGTERM)" in res.stderr


def test_kill_9_leaves_only_an_unmarked_temporary(resumed):
    assert resumed["kill_rc"] == -signal.SIGKILL
    assert len(resumed["kill_leftovers"]) == 1 and resumed["kill_leftovers"][0].startswith(".tmp-tflite-int8-")
    assert not any(n.startswith("tflite-int8-") for n in resumed["kill_complete"])  # never looks complete


def test_rerun_resumes_from_the_cache(resumed):
    assert resumed["rc"] == 0, resumed["err"]
    stages = resumed["report"]["stages"]
    cached = {f"{s['stage']}-{s['key']}" for s in stages if s["cached"]}
    ran = sorted(s["stage"] for s in stages if not s["cached"])
    assert cached == resumed["kill_complete"]  # everything completed before the kills is reused
    assert "tflite-int8" in ran and "savedmodel" not in ran and "tflite-fp32" not in ran
    out = resumed["out"]
    assert not list((out / "stages").glob(".tmp-*"))  # kill -9's leftover was swept
    for row in resumed["report"]["artifacts"][1:]:
        assert row["status"] == "passed", row


# ---- row 10 --------------------------------------------------------------------------------
def _snapshot(out: Path) -> dict[str, str]:
    files = [out / "report.json", *sorted((out / "artifacts").rglob("*"))]
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files if p.is_file()}


def _mount(*args: str) -> None:
    res = subprocess.run(["mount", *args], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount here (needs root and mount privileges): {res.stderr.strip()}")


def _used_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def test_disk_full_aborts_cleanly_and_keeps_previous_outputs(resumed, tmp_path):
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    _mount("-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt))
    try:
        out = mnt / "out"
        shutil.copytree(resumed["out"], out)
        before = _snapshot(out)
        _mount("-o", f"remount,size={_used_bytes(mnt) + 8192}", str(mnt))  # 8 KiB left: no new model fits
        cfg = json.loads(json.dumps(resumed["cfg"]))
        cfg["output"] = str(out)
        cfg["data"]["calibration"]["size"] = 20  # new calibration set: the INT8 stage must run and write
        res = CliRunner().invoke(app, ["run", str(write_config(tmp_path / "p.yaml", cfg))])
        assert res.exit_code == 2, res.output
        assert "No space left on device" in res.output and "outputs of earlier runs are untouched" in res.output
        assert _snapshot(out) == before
        assert not [p for p in out.rglob(".*") if p.name.startswith((".tmp-", ".old-", ".report.json.tmp"))]
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_read_only_output_aborts_cleanly_and_keeps_previous_outputs(resumed, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(resumed["out"], out)
    before = _snapshot(out)
    _mount("--bind", str(out), str(out))
    try:
        _mount("-o", "remount,bind,ro", str(out))
        with pytest.raises(OSError):
            (out / "probe").write_text("x")  # really read-only, even for root
        cfg = dict(resumed["cfg"], output=str(out))
        res = CliRunner().invoke(app, ["run", str(write_config(tmp_path / "p.yaml", cfg))])
        assert res.exit_code == 2, res.output
        assert str(out) in res.output.replace("\n", "") and "Read-only file system" in res.output
        assert _snapshot(out) == before
    finally:
        subprocess.run(["umount", str(out)], check=False)


def test_leftovers_of_a_killed_publish_are_undone(tmp_path):
    """kill -9 between publish_dir's two renames leaves only the marked "old" folder holding the previous
    version: the previous good artifact is put back; marked temporary folders of dead runs are removed.
    Folders are recognised by the marker edgepipe writes inside them, never by their names."""
    from edgepipe.engine.outdir import sweep_leftovers

    arts = tmp_path / "artifacts"
    old = dead_temp_dir(arts / "tflite-arm-int8", "old")
    (old / "previous").mkdir()
    (old / "previous" / "model_int8.tflite").write_bytes(b"good")
    dead_temp_dir(arts / "tflite-arm-fp32")
    dead_temp_dir(tmp_path / "report.json")
    alive = dead_temp_dir(arts / "openvino-cpu-fp32", pid=1)  # pid 1 is alive: another run's, left alone
    (arts / ".tmp-mine-999999999").mkdir()  # named like an old leftover, but the user's own: no marker
    (arts / ".old-tflite-arm-int8-999999999").mkdir()
    assert sweep_leftovers(tmp_path) == 3
    assert (arts / "tflite-arm-int8" / "model_int8.tflite").read_bytes() == b"good"
    assert sorted(p.name for p in arts.iterdir()) == sorted(
        [".old-tflite-arm-int8-999999999", ".tmp-mine-999999999", alive.name, "tflite-arm-int8"])
    assert [p.name for p in tmp_path.iterdir() if p.name != "artifacts"] == []


def test_a_permission_refused_inside_the_output_is_an_output_error_and_elsewhere_is_not(tmp_path):
    """EACCES/EPERM (a `chattr +i` stages folder; a folder without write permission for a non-root user) were a
    row error: they are the output refusing writes when the path is inside it, and nobody's business otherwise."""
    import errno

    from edgepipe.engine.outdir import write_failure

    out = tmp_path / "out"
    inside = PermissionError(errno.EPERM, "Operation not permitted", str(out / "stages" / ".tmp-x" / "m.tflite"))
    wrapped = RuntimeError("the toolkit's own error")
    wrapped.__cause__ = PermissionError(errno.EACCES, "Permission denied", str(out / "artifacts"))
    for err in (inside, wrapped):
        fail = write_failure(err, out)
        assert fail is not None and fail.exit_code == 2, err
        assert str(out) in str(fail) and os.strerror(err.__cause__.errno if err.__cause__ else err.errno) in str(fail)
    assert write_failure(PermissionError(errno.EACCES, "Permission denied", "/etc/shadow"), out) is None
    assert write_failure(PermissionError(errno.EPERM, "Operation not permitted"), out) is None  # no path: not ours
