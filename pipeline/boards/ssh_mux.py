"""One SSH connection per board session: OpenSSH connection multiplexing (ControlMaster).

A ship is about a dozen remote steps (pre-flight, lock, probe, upload, verify, switch, smoke test,
prune, unlock). Without multiplexing each step is a new SSH connection: key exchange and
authentication every time, 0.3 s on loopback and a round trip or more per step on a real link.
With it the first step opens a master connection and every later step is a new session on it.

Safety: the control socket lives in a private directory (0700, `mkdtemp`) made for one `Remote`, so a
connection authenticated with one identity / known_hosts is never reused by another command line or
another process. The master is stopped (`ssh -O exit`) and the directory removed when the `Remote` is
closed, garbage-collected, or at interpreter exit; if the process is killed outright, the master
exits on its own after `PERSIST` idle seconds. When the server refuses another session on the
connection (sshd `MaxSessions`), ssh itself falls back to a connection of its own for that step.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import weakref

PERSIST = 30  # seconds the master stays up with no session (it is stopped explicitly before that)
MAX_SOCKET_PATH = 100  # sockaddr_un holds 108 bytes; a longer TMPDIR disables multiplexing


class Multiplexer:
    """The ssh options that share one connection, and the master's lifecycle."""

    def __init__(self, destination: str, port: list[str], enabled: bool = True):
        self.destination, self.port = destination, port
        self.enabled = enabled
        self._finalizer = None
        self.path: str | None = None

    def options(self) -> list[str]:
        if not self.enabled:
            return []
        if self.path is None:
            d = tempfile.mkdtemp(prefix="edgepipe-ssh-")
            path = os.path.join(d, "m")
            if len(path.encode()) > MAX_SOCKET_PATH:
                shutil.rmtree(d, ignore_errors=True)
                self.enabled = False
                return []
            self.path = path
            self._finalizer = weakref.finalize(self, _stop, path, self.destination, list(self.port))
        return ["-o", "ControlMaster=auto", "-o", f"ControlPath={self.path}", "-o", f"ControlPersist={PERSIST}"]

    def close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
        self.path = None


def _stop(path: str, destination: str, port: list[str]) -> None:
    if os.path.exists(path):
        try:
            subprocess.run(["ssh", "-o", f"ControlPath={path}", *port, "-O", "exit", "--", destination],
                           capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            pass
    shutil.rmtree(os.path.dirname(path), ignore_errors=True)
