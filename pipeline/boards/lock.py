"""One `ship` or `bench` at a time per board: a lock directory `R/.lock` made with mkdir().

mkdir() is atomic on every POSIX filesystem, so the first caller wins. The winner writes
`R/.lock/owner.json` (purpose, host, pid, user, start time, a random token) and refreshes its
mtime between remote steps (a heartbeat). A lock whose owner.json was not refreshed for
`timeout` seconds (board clock) is stale: it is renamed aside (only one breaker can win the
rename), checked to still be the stale one, and removed. Release and refresh act only when the
token is ours, so a lock broken and re-taken by another ship is never removed by the old owner.

Holding the lock means no other ship or bench is uploading, so `acquire` also sweeps
`R/.staging/`, the upload directories left behind by killed ships.

The board side is one small Python >= 3.7 script (the runner needs python anyway); the lock
works with only POSIX sh and python3 on the board.
"""

from __future__ import annotations

import getpass
import json
import os
import shlex
import socket
import uuid

from edgepipe.boards.remote import Remote
from edgepipe.core.errors import RemoteError

DEFAULT_TIMEOUT = 900.0  # seconds without a heartbeat after which a lock is stale

_SCRIPT = r"""
import json, os, shutil, sys, time
act, lock, staging, token, timeout, owner = sys.argv[1:7]
timeout = float(timeout)

def read(d):
    p = os.path.join(d, "owner.json")
    o = {}
    if os.path.isfile(p):  # a FIFO there would block open() until the command timeout; it reads as no owner
        try:
            with open(p) as f:
                o = json.load(f)
        except (OSError, ValueError, RecursionError):
            o = {}
    if not isinstance(o, dict):
        o = {}
    try:
        o["age_s"] = round(time.time() - os.stat(p if os.path.exists(p) else d).st_mtime, 1)
    except OSError:
        o["age_s"] = None
    return o

def done(**kw):
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.exit(0)

def mine():
    return read(lock).get("token") == token

if act == "acquire":
    root = os.path.dirname(lock)
    try:
        if not os.path.isdir(root):
            os.makedirs(root)
    except OSError as e:
        done(ok=False, error="%s: %s" % (type(e).__name__, e))
    broken = None
    for _ in range(5):
        try:
            os.mkdir(lock)
        except OSError as e:
            if not isinstance(e, FileExistsError):
                done(ok=False, error="%s: %s" % (type(e).__name__, e))
            held = read(lock)
            if held["age_s"] is None:
                continue
            if held["age_s"] < timeout:
                done(ok=False, held=held)
            aside = lock + ".broken-" + token
            try:
                os.rename(lock, aside)
            except OSError:
                continue
            gone = read(aside)
            if gone.get("token") != held.get("token") or (gone["age_s"] or 0) < timeout:
                try:
                    os.rename(aside, lock)  # another ship took it in between: not ours to break
                except OSError:
                    pass
                continue
            shutil.rmtree(aside, ignore_errors=True)
            broken = held
            continue
        o = json.loads(owner)
        o.update(token=token, started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        with open(os.path.join(lock, ".owner.tmp"), "w") as f:
            json.dump(o, f)
        os.rename(os.path.join(lock, ".owner.tmp"), os.path.join(lock, "owner.json"))
        swept = []
        if os.path.isdir(staging):
            for name in sorted(os.listdir(staging)):
                p = os.path.join(staging, name)
                if os.path.isdir(p) and not os.path.islink(p):
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    os.remove(p)
                swept.append(name)
        done(ok=True, broken=broken, swept=swept)
    done(ok=False, held=read(lock))
elif act == "refresh":
    if mine():
        os.utime(os.path.join(lock, "owner.json"))
        done(ok=True)
    done(ok=False, held=read(lock))
elif act == "release":
    if mine():
        aside = lock + ".released-" + token
        os.rename(lock, aside)
        shutil.rmtree(aside, ignore_errors=True)
        done(ok=True)
    done(ok=False, held=read(lock))
"""


class BoardLock:
    """`with BoardLock(remote, python, "ship", timeout) as lock:` ... `lock.acquired["swept"]`."""

    def __init__(self, remote: Remote, python: str, purpose: str, timeout: float = DEFAULT_TIMEOUT):
        self.remote, self.python, self.purpose, self.timeout = remote, python, purpose, float(timeout)
        self.token = uuid.uuid4().hex
        self.acquired: dict | None = None
        self.released = False

    @property
    def where(self) -> str:
        return f"{self.remote.device.path}/.lock"

    def _call(self, action: str) -> dict:
        d = self.remote.device
        owner = {"purpose": self.purpose, "host": socket.gethostname(), "pid": os.getpid(), "user": _user()}
        cmd = (f"{shlex.quote(self.python)} -c {shlex.quote(_SCRIPT)} {action} {d.q('.lock')} {d.q('.staging')} "
               f"{self.token} {self.timeout} {shlex.quote(json.dumps(owner))}")
        res = self.remote.run(cmd)
        from edgepipe.boards.device_runner import parse_output

        out = parse_output(res.stdout)
        if res.returncode in (126, 127):
            raise RemoteError(f"{d.label}: expected a Python on the board at {self.python!r}. Received: "
                              f"{'not found' if res.returncode == 127 else 'not executable'} (exit {res.returncode}). "
                              "Fix: ?python=/path/to/python3 in the board URL or --remote-python", "no python")
        if res.returncode != 0 or out is None:
            raise RemoteError(f"{d.label}: expected the board lock {self.where} to be {action}d with {self.python}. "
                              f"Received: exit {res.returncode}: {res.stderr.strip()[-300:]}", "lock failed")
        return out

    def acquire(self) -> dict:
        out = self._call("acquire")
        if out.get("error"):
            raise RemoteError(f"{self.remote.device.label}: expected to create the board lock {self.where} (the "
                              f"install path must be a directory the login user can write). Received: "
                              f"{out['error']}", "remote path not writable")
        if not out.get("ok"):
            raise RemoteError(f"{self.remote.device.label}: expected no other ship or bench on this board. Received: "
                              f"{self.where} {describe(out.get('held') or {})}; a lock is broken when not refreshed "
                              f"for --lock-timeout {self.timeout:.0f} s (or remove {self.where} if that process "
                              "is gone)", "locked")
        self.acquired = out
        return out

    def refresh(self) -> None:
        """The heartbeat: call between remote steps. Raises when the lock is no longer ours.
        It starts no Python on the board when the lock is ours (grep for our token in owner.json, a regular file,
        then touch it: the script's own check, in sh); otherwise the script says who holds it now."""
        owner = self.remote.device.q(".lock", "owner.json")
        mine = shlex.quote(json.dumps({"token": self.token})[1:-1])  # how json.dump wrote it: "token": "<hex>"
        # `test -f` first: grep on a FIFO put there would block until the command timeout
        if self.remote.run(f"test -f {owner} && grep -qF {mine} {owner} && touch -c {owner}").returncode == 0:
            return
        out = self._call("refresh")
        if not out.get("ok"):
            raise RemoteError(f"{self.remote.device.label}: expected to still hold {self.where}. Received: it was "
                              f"broken as stale and is now {describe(out.get('held') or {})}", "locked")

    def release(self) -> None:
        self._call("release")
        self.released = True

    def __enter__(self) -> BoardLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.release()
        except RemoteError as err:  # the board went away: the lock goes stale after `timeout`
            from edgepipe.core.progress import stderr

            stderr.print(f"[yellow]warning:[/] could not release {self.where}: {err}", highlight=False)


def describe(held: dict) -> str:
    if held.get("not_a_lock"):
        return (f"taken by {held['not_a_lock']} that is not a lock edgepipe made ({held.get('age_s')} s old): ship "
                "and bench take it for a held lock; remove it")
    if not held.get("token"):
        return f"held (owner not written yet, {held.get('age_s')} s old)"
    return (f"held by {held.get('purpose', '?')} from {held.get('host', '?')} (pid {held.get('pid', '?')}, "
            f"user {held.get('user', '?')}) since {held.get('started', '?')}, last refreshed "
            f"{held.get('age_s')} s ago")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
