"""Boards over SSH with the system OpenSSH client (honours ~/.ssh/config and known_hosts).

Every call is non-interactive (BatchMode), never accepts an unknown host key
(StrictHostKeyChecking=yes), has a connect timeout and a command timeout, and retries only
connection failures, a bounded number of times. Failures are RemoteErrors with a short
`status` ("unreachable", "auth failed", "unknown host key", "timeout", ...) for per-board reports.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from edgepipe.boards.ssh_mux import Multiplexer
from edgepipe.boards.upload import EXTRACT, mib, stream_tar, tar_members, upload_timeout
from edgepipe.core.errors import InputError, RemoteError

RETRYABLE = ("unreachable",)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CLASSES = (  # (substring of ssh's stderr, status)
    ("REMOTE HOST IDENTIFICATION HAS CHANGED", "host key changed"),
    ("Host key verification failed", "unknown host key"),
    ("No ED25519 host key is known", "unknown host key"),
    ("host key is known", "unknown host key"),
    ("Permission denied", "auth failed"),
    ("Too many authentication failures", "auth failed"),
    ("Connection refused", "unreachable"),
    ("Connection timed out", "unreachable"),
    ("Operation timed out", "unreachable"),
    ("No route to host", "unreachable"),
    ("Network is unreachable", "unreachable"),
    ("Could not resolve hostname", "unreachable"),
    ("Connection closed", "unreachable"),
    ("Connection reset", "unreachable"),
)


@dataclass(frozen=True)
class Device:
    """`ssh://[user@]host[:port]/path[?python=/path/to/python3]`"""

    host: str
    path: str
    user: str | None = None
    port: int | None = None
    python: str = "python3"

    @classmethod
    def parse(cls, url: str, python: str | None = None) -> Device:
        expected = "device: expected ssh://[user@]host[:port]/path[?python=PYTHON]"
        if _CONTROL.search(url):  # urlsplit would silently drop a newline or a tab
            raise InputError(f"{expected}, without control characters. Received: {url!r}")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:  # an unclosed IPv6 bracket, a port that is no number or out of range
            parts, port = None, -1
        if parts is None or port in (-1, 0) or parts.scheme != "ssh" or not parts.hostname \
                or not parts.path.strip("/") or sorted(set(parse_qs(parts.query)) - {"python"}):
            raise InputError(f"{expected}. Received: {url!r}")
        query = parse_qs(parts.query)
        py = python or (query["python"][0] if "python" in query else "python3")
        path = unquote(parts.path)
        user = unquote(parts.username) if parts.username else None
        for name, value in (("user", user), ("host", parts.hostname), ("path", path), ("python", py)):
            if value and _CONTROL.search(value):  # %00, %0A decoded: a NUL cannot reach ssh, a newline splits lines
                raise InputError(f"{expected}, its {name} without control characters. Received: {url!r}")
        for name, value in (("user", user), ("host", parts.hostname)):
            if value and value.startswith("-"):  # ssh would read it as an option (-oProxyCommand=...)
                raise InputError(f"{expected}, its {name} not starting with '-'. Received: {url!r}")
        if path.startswith("/~/") or path == "/~":
            path = path[1:]  # ssh://host/~/edge -> ~/edge (relative to the login directory)
        return cls(parts.hostname, path.rstrip("/") or "/", user, port, py)

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    @property
    def label(self) -> str:
        port = f":{self.port}" if self.port else ""
        return f"ssh://{self.destination}{port}{'' if self.path.startswith('/') else '/'}{self.path}"

    def q(self, *parts: str) -> str:
        """A shell-quoted remote path under the device's root (a leading ~ stays expandable)."""
        full = "/".join([self.path, *parts])
        if full.startswith("~/"):
            return '"$HOME"/' + shlex.quote(full[2:])
        return shlex.quote(full)


@dataclass(frozen=True)
class SSHOptions:
    identity: Path | None = None
    known_hosts: Path | None = None
    connect_timeout: int = 5
    command_timeout: float = 300.0
    retries: int = 1  # extra attempts after a connection failure (never after auth or host-key failures)
    upload_timeout: float | None = None  # None: --timeout + size at an assumed slow link (boards/upload.py)
    multiplex: bool = True  # one SSH connection for all of a Remote's steps (boards/ssh_mux.py)

    def common(self) -> list[str]:
        opts = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"ConnectTimeout={self.connect_timeout}",
                "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]
        if self.identity:
            opts += ["-o", "IdentitiesOnly=yes", "-i", str(self.identity)]
        if self.known_hosts:
            opts += ["-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null"]
        return opts


def classify(stderr: str) -> str:
    for needle, status in _CLASSES:
        if needle in stderr:
            return status
    return "ssh failed"


class Remote:
    """A board's shell over SSH. Its steps share one connection (boards/ssh_mux.py) until `close()`
    (or the end of a `with` block, or garbage collection)."""

    def __init__(self, device: Device, opts: SSHOptions):
        self.device, self.opts = device, opts
        self.port = ["-p", str(device.port)] if device.port else []
        self.mux = Multiplexer(device.destination, self.port, opts.multiplex)

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the shared connection (a later step opens a new one)."""
        self.mux.close()

    def argv(self, command: str) -> list[str]:
        # `--` before the destination too: nothing after it is read as an option, whatever the destination is
        return ["ssh", *self.opts.common(), *self.mux.options(), *self.port, "--", self.device.destination, command]

    def run(self, command: str, timeout: float | None = None) -> subprocess.CompletedProcess:
        """Run a shell command on the board. ssh's own failures (rc 255) raise RemoteError;
        the command's exit code is returned to the caller."""
        timeout = self.opts.command_timeout if timeout is None else timeout
        res = self._call(with_remote_timeout(command, timeout), timeout, "command")
        if res.returncode in (124, 137):  # the board's `timeout` stopped the command
            raise RemoteError(f"{self.device.label}: command did not finish within {timeout:.0f} s on the board "
                              "(stopped there)", "timeout")
        return res

    def upload(self, sources: list[Path], remote_dir: str, timeout: float | None = None, progress=None) -> int:
        """Stream `sources` (files, or directories of regular files) as one tar archive over ssh into the
        existing directory `remote_dir` under the device root (`tar -x` on the board). Returns the bytes sent.

        The host writes the archive into ssh's stdin, so it knows how much it has handed over:
        `progress(sent, total)` is called as file bytes go out (ssh buffers at most a few hundred KiB
        ahead of the link). The timeout scales with the size (`upload_timeout`); on expiry ssh is
        killed and the message states the size and how the limit was computed."""
        members = tar_members(sources)
        total = sum(size for _, _, size in members)
        limit, why = upload_timeout(total, self.opts) if timeout is None else (timeout, "given")
        cmd = with_remote_timeout(EXTRACT.format(dir=self.device.q(remote_dir)), limit)
        attempts = 1 + max(0, self.opts.retries)
        for attempt in range(1, attempts + 1):
            rc, err, expired = stream_tar(self.argv(cmd), members, total, limit + self.opts.connect_timeout, progress)
            if expired or rc in (124, 137):
                raise RemoteError(f"{self.device.label}: upload of {mib(total)} did not finish within {limit:.0f} s "
                                  f"({why}); a slower link needs a longer --upload-timeout SECONDS", "timeout")
            if rc == 0:
                return total
            if rc == 127:
                raise RemoteError(f"{self.device.label}: upload: expected `tar` on the board (uploads are one tar "
                                  f"stream). Received: {err.strip()[-200:]}. Fix: install tar (apt-get install tar)",
                                  "upload failed")
            if rc != 255:
                raise RemoteError(f"{self.device.label}: upload failed (tar on the board, exit {rc}): "
                                  f"{err.strip()[-500:]}", "upload failed")
            self._ssh_failure(err, attempt, attempts)
        raise AssertionError("unreachable")  # pragma: no cover

    def _call(self, command: str, timeout: float, what: str) -> subprocess.CompletedProcess:
        attempts = 1 + max(0, self.opts.retries)
        for attempt in range(1, attempts + 1):
            try:
                res = subprocess.run(self.argv(command), capture_output=True, text=True,
                                     timeout=timeout + self.opts.connect_timeout, stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired as err:
                raise RemoteError(f"{self.device.label}: {what} did not finish within {timeout:.0f} s (killed)",
                                  "timeout") from err
            except FileNotFoundError as err:
                raise RemoteError(f"{what}: expected the OpenSSH client (ssh) on PATH. Received: not found",
                                  "no ssh client") from err
            if res.returncode != 255:
                return res
            self._ssh_failure(res.stderr, attempt, attempts)
        raise AssertionError("unreachable")  # pragma: no cover

    def _ssh_failure(self, stderr: str, attempt: int, attempts: int) -> None:
        """ssh itself failed (exit 255): raise its RemoteError, or wait and return to retry a connection failure."""
        status = classify(stderr)
        if status in ("host key changed", "unknown host key"):
            raise RemoteError(f"{self.device.label}: {status}: {host_key_message(status, stderr, self.device)}", status)
        if status not in RETRYABLE or attempt == attempts:
            raise RemoteError(f"{self.device.label}: {status}: {stderr.strip()[-400:]}"
                              + (f" (after {attempt} attempts)" if attempt > 1 else ""), status)
        time.sleep(min(2.0, 0.5 * attempt))


def with_remote_timeout(command: str, seconds: float) -> str:
    """Bound the command on the board too (coreutils/busybox `timeout` when it exists)."""
    s = max(1, int(seconds))
    inner = shlex.quote(command)
    return (f"if command -v timeout >/dev/null 2>&1; then timeout -k 5 {s} sh -c {inner}; "
            f"else sh -c {inner}; fi")


def host_key_message(status: str, stderr: str, device: Device) -> str:
    """ssh's host-key banner boiled down to one line: what was expected, the full fingerprint received, the fix."""
    host = f"[{device.host}]:{device.port}" if device.port else device.host
    fp = re.search(r"(SHA256:[A-Za-z0-9+/=]+)", stderr)
    kind = re.search(r"fingerprint for the (\S+) key sent", stderr) or re.search(r"No (\S+) host key is known", stderr)
    kind = kind.group(1) if kind else "host"
    check = (f"compare it with the board's own (on the board's console: ssh-keygen -lf "
             f"/etc/ssh/ssh_host_{kind.lower()}_key.pub)")
    if status == "unknown host key":
        return (f"expected a known {kind} host key for {host} (ssh never accepts an unknown key here). Received: "
                f"{'fingerprint ' + fp.group(1) if fp else 'no key recorded for it in known_hosts'}. Fix: run "
                f"ssh-keyscan{' -p ' + str(device.port) if device.port else ''} {device.host}, {check}, then add "
                "that line to ~/.ssh/known_hosts (or the file given with --known-hosts)")
    where = re.search(r"Offending \S+ key in (.+):(\d+)", stderr)
    recorded = f"{where.group(1)}:{where.group(2)}" if where else "known_hosts"
    known = where.group(1) if where else "~/.ssh/known_hosts"
    return (f"expected the {kind} host key recorded for {host} in {recorded}. Received: a different {kind} key, "
            f"fingerprint {fp.group(1) if fp else '(not shown by ssh)'}. A reinstalled board has a new key, but this "
            f"is also what a man-in-the-middle looks like: {check}; if they match, remove the old entry with "
            f"ssh-keygen -f {shlex.quote(known)} -R {shlex.quote(host)} and add the new one")
