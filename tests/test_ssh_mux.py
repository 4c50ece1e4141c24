"""One SSH connection per board session (pipeline/boards/ssh_mux.py), against a real sshd on loopback."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from edgepipe.boards.remote import Device, Remote, SSHOptions
from edgepipe.core.errors import RemoteError
from tests.fixtures.sshd_board import start_sshd, stop_sshd


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    b = start_sshd(tmp_path_factory.mktemp("sshd-mux"), own_home=True)
    yield b
    stop_sshd(b)


def logins(b) -> int:
    b["log"].flush()
    time.sleep(0.2)  # sshd writes the line from its own process
    return (b["dir"] / "sshd.log").read_text(errors="replace").count("Accepted publickey")


def remote(b, tmp_path, key="client_key", **kw) -> Remote:
    opts = SSHOptions(identity=b[key], known_hosts=b["known_hosts"], retries=0, **kw)
    return Remote(Device.parse(f"ssh://{b['user']}@127.0.0.1:{b['port']}{tmp_path}"), opts)


def master_pid(path: str) -> int | None:
    res = subprocess.run(["ssh", "-o", f"ControlPath={path}", "-O", "check", "x"], capture_output=True, text=True)
    return int(res.stderr.split("pid=")[1].split(")")[0]) if res.returncode == 0 else None


def test_a_remotes_steps_share_one_login_and_close_stops_it(sshd, tmp_path):
    before = logins(sshd)
    r = remote(sshd, tmp_path)
    outs = [r.run(f"echo step{i}").stdout.strip() for i in range(3)]
    assert outs == ["step0", "step1", "step2"]
    assert logins(sshd) - before == 1  # three steps, one key exchange and authentication
    path = r.mux.path
    pid = master_pid(path)
    assert pid is not None and os.path.isdir(os.path.dirname(path))
    r.close()
    assert not os.path.exists(os.path.dirname(path))  # the private socket directory is gone
    for _ in range(50):  # and the master process with it
        if not os.path.exists(f"/proc/{pid}"):
            break
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{pid}")
    assert r.run("echo again").stdout.strip() == "again"  # a later step opens a new connection
    r.close()


def test_without_multiplexing_every_step_logs_in(sshd, tmp_path):
    before = logins(sshd)
    with remote(sshd, tmp_path, multiplex=False) as r:
        for i in range(3):
            r.run(f"echo {i}")
        assert r.mux.path is None
    assert logins(sshd) - before == 3


def test_another_identity_never_rides_an_open_connection(sshd, tmp_path):
    """The socket is private to one Remote: a key the board does not accept fails even while a
    connection authenticated with the right key is open to the same board."""
    with remote(sshd, tmp_path) as good:
        assert good.run("echo ok").stdout.strip() == "ok"
        with remote(sshd, tmp_path, key="stranger_key") as stranger:
            with pytest.raises(RemoteError) as err:
                stranger.run("echo should-not-run")
            assert err.value.status == "auth failed"
