"""A real OpenSSH server on loopback, used as an edge "board" by the ship/bench tests.

Installs Debian's openssh-server/openssh-client when /usr/sbin/sshd is missing (as root; .ci/run
does the same), starts sshd on a free 127.0.0.1 port with a temporary host key, an authorized
client key, and a known_hosts file holding the host key.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"


def ensure_openssh() -> None:
    if os.path.exists(SSHD) and shutil.which("ssh") and shutil.which("scp"):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("openssh-server is not installed and cannot be installed here (needs root + apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-q", "openssh-server", "openssh-client"]
    if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=True)
        subprocess.run(cmd, env=env, capture_output=True, check=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def start_sshd(d: Path) -> dict:
    ensure_openssh()
    Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)  # privilege-separation dir
    host_key, client_key, stranger_key = _keygen(d / "host_key"), _keygen(d / "client_key"), _keygen(d / "stranger")
    shutil.copyfile(d / "client_key.pub", d / "authorized_keys")
    port = free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nAuthorizedKeysFile {d / 'authorized_keys'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
        f"PidFile {d / 'sshd.pid'}\nUsePAM no\nStrictModes no\nSubsystem sftp internal-sftp\n")
    log = open(d / "sshd.log", "wb")
    proc = subprocess.Popen([SSHD, "-f", str(d / "sshd_config"), "-D", "-e"], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"sshd did not start: {(d / 'sshd.log').read_text()}") from None
            time.sleep(0.1)
    # the host key is known from the file we generated, not from a scan: nothing is trusted on first use
    pub = (d / "host_key.pub").read_text().split()
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {pub[0]} {pub[1]}\n")
    (d / "empty_known_hosts").write_text("")
    return {"proc": proc, "log": log, "port": port, "dir": d, "user": getpass.getuser(),
            "client_key": client_key, "stranger_key": stranger_key,
            "known_hosts": d / "known_hosts", "empty_known_hosts": d / "empty_known_hosts"}


def stop_sshd(board: dict) -> None:
    board["proc"].terminate()
    try:
        board["proc"].wait(10)
    except subprocess.TimeoutExpired:
        board["proc"].kill()
        board["proc"].wait(5)
    board["log"].close()
