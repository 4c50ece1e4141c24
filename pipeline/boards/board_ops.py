"""`edgepipe board status | list | rollback`: look at a board's install path and roll `current` back.

The board layout is the one `ship` writes (pipeline/boards/ship.py): `R/current -> bundles/<dir>`,
`R/bundles/<name>-v<N>-<hash>/`, `R/trusted.pub`, `R/.lock/`. `status` and `list` are read-only:
one small Python >= 3.7 script run with the board's python reads the link, every bundle's
manifest (hash, name, version, model sha256), its install time (the bundle dir's mtime, which
`ship` touches on install), the trusted key and the lock's owner; nothing is created or changed.

`rollback` holds the board lock (pipeline/boards/lock.py), picks the target (the newest installed
bundle other than current, or `--to DIR`), verifies it on the board with the runner
(`--verify-only` against `trusted.pub`) and only then switches `current` with one rename
(`Board.switch`). Refusals say what was expected and what was received, and change nothing.
"""

from __future__ import annotations

import shlex

from edgepipe.boards.lock import DEFAULT_TIMEOUT as DEFAULT_LOCK_TIMEOUT
from edgepipe.boards.lock import BoardLock, describe
from edgepipe.boards.remote import Device, Remote, SSHOptions
from edgepipe.core.errors import EXIT_BAD_INPUT, EdgepipeError, InputError, RemoteError

RUNNER_NAME = "device_runner.py"

_SCRIPT = r"""
import hashlib, json, os, stat, sys, time
root = sys.argv[1]

def read(p):
    # a regular file's bytes, else None: opened non-blocking and checked with fstat, so a FIFO or a device
    # in the install path never blocks (or streams into) this read-only script
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except (OSError, IOError, ValueError):
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks = []
        while True:
            try:
                b = os.read(fd, 1 << 20)
            except (OSError, IOError):
                return None
            if not b:
                return b"".join(chunks)
            chunks.append(b)
    finally:
        os.close(fd)

def special(p):
    # what p is when it exists but is not a regular file (for "unreadable"), else None
    try:
        m = os.stat(p).st_mode
    except (OSError, IOError, ValueError):
        return None
    if stat.S_ISREG(m):
        return None
    if stat.S_ISFIFO(m):
        return "a FIFO (named pipe)"
    return "a directory" if stat.S_ISDIR(m) else "a special file"

def when(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))

cur = os.path.join(root, "current")
out = {"exists": os.path.isdir(root), "link": os.readlink(cur) if os.path.islink(cur) else None,
       "bundles": [], "trusted_pub": None, "lock": None,
       "runner": os.path.isfile(os.path.join(root, "runner", "device_runner.py"))}
bd = os.path.join(root, "bundles")
for n in (sorted(os.listdir(bd)) if os.path.isdir(bd) else []):
    p = os.path.join(bd, n)
    if not os.path.isdir(p) or os.path.islink(p):
        continue
    raw = read(os.path.join(p, "manifest.json"))
    mtime = os.stat(p).st_mtime
    e = {"dir": n, "mtime": mtime, "installed": when(mtime),
         "manifest_sha256": hashlib.sha256(raw).hexdigest() if raw is not None else None}
    try:
        m = json.loads(raw.decode("utf-8")) if raw is not None else None
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deeply for the parser
        m = None
    if isinstance(m, dict):
        model = m.get("model") if isinstance(m.get("model"), dict) else {}
        e.update(name=m.get("name"), version=m.get("bundle_version"), created=m.get("created"),
                 target=m.get("target"), precision=m.get("precision"), model_file=model.get("file"),
                 model_sha256=model.get("sha256"))
    else:
        kind = special(os.path.join(p, "manifest.json")) if raw is None else None
        e["unreadable"] = ("manifest.json is %s, not a regular file" % kind if kind else
                           "no manifest.json" if raw is None else "manifest.json is not a JSON object")
    out["bundles"].append(e)
pub = read(os.path.join(root, "trusted.pub"))
if pub is not None:
    out["trusted_pub"] = pub.decode("utf-8", "replace")
lock = os.path.join(root, ".lock")
if os.path.lexists(lock) and (os.path.islink(lock) or not os.path.isdir(lock)):
    # not a lock a ship made, but ship and bench cannot take the lock while it is there: never "free"
    try:
        m = os.lstat(lock)
        out["lock"] = {"not_a_lock": "a symbolic link" if stat.S_ISLNK(m.st_mode) else special(lock) or
                       "a regular file", "age_s": round(time.time() - m.st_mtime, 1)}
    except OSError:
        out["lock"] = {"not_a_lock": "unreadable", "age_s": None}
elif os.path.isdir(lock):
    owner = os.path.join(lock, "owner.json")
    try:
        o = json.loads((read(owner) or b"{}").decode("utf-8"))
    except (ValueError, RecursionError):
        o = {}
    if not isinstance(o, dict):
        o = {}
    try:
        o["age_s"] = round(time.time() - os.stat(owner if os.path.exists(owner) else lock).st_mtime, 1)
    except OSError:
        o["age_s"] = None
    out["lock"] = o
sys.stdout.write(json.dumps(out) + "\n")
"""


class BoardRefused(EdgepipeError):
    """A board command refused to act (nothing to roll back to, unknown bundle): nothing was changed."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, status: str = "refused", report: dict | None = None):
        super().__init__(message)
        self.status, self.report = status, report or {}


def read_board(remote: Remote) -> dict:
    """The board's install path as it is, read-only: link, bundles (newest installed first), key, lock."""
    d = remote.device
    res = remote.run(f"{shlex.quote(d.python)} -c {shlex.quote(_SCRIPT)} {d.q()}")
    from edgepipe.boards.device_runner import parse_output

    out = parse_output(res.stdout)
    if res.returncode in (126, 127):
        raise RemoteError(f"{d.label}: expected a Python on the board at {d.python!r}. Received: "
                          f"{'not found' if res.returncode == 127 else 'not executable'} (exit {res.returncode}). "
                          "Fix: ?python=/path/to/python3 in the board URL or --remote-python", "no python")
    if res.returncode != 0 or out is None or "bundles" not in out:
        raise RemoteError(f"{d.label}: expected to read {d.path} with {d.python}. Received: exit {res.returncode}: "
                          f"{res.stderr.strip()[-300:]}", "read failed")
    if not out["exists"]:
        raise RemoteError(f"{d.label}: expected an install path written by `edgepipe ship`. Received: {d.path} "
                          "is not a directory on the board", "not installed")
    out["bundles"].sort(key=lambda b: (b["mtime"], b["dir"]), reverse=True)
    link = out["link"]
    out["current_dir"] = link[len("bundles/"):] if link and link.startswith("bundles/") else None
    if out["lock"] is not None:
        out["lock"]["holder"] = describe(out["lock"])
        out["lock"].pop("token", None)  # the holder's secret for release/refresh: not for reports
    return out


def _summary(b: dict | None) -> dict | None:
    if b is None:
        return None
    keys = ("dir", "name", "version", "installed", "created", "manifest_sha256", "model_file", "model_sha256",
            "unreadable")
    return {k: b[k] for k in keys if k in b}


def _current(state: dict) -> dict | None:
    return next((b for b in state["bundles"] if b["dir"] == state["current_dir"]), None)


def _previous(state: dict) -> dict | None:
    """The rollback target: the newest installed bundle other than current."""
    return next((b for b in state["bundles"] if b["dir"] != state["current_dir"]), None)


def status(url: str, opts: SSHOptions, python: str | None = None) -> dict:
    from edgepipe.boards.preflight import board_facts

    device = Device.parse(url, python)
    with Remote(device, opts) as remote:
        state = read_board(remote)
        facts = board_facts(remote)
    cur = _current(state)
    pub = state["trusted_pub"]
    if pub is not None:
        from edgepipe.boards.signing import fingerprint

        pub = fingerprint(pub.encode())
    report = {"device": device.label, "status": "ok", "current": _summary(cur), "current_link": state["link"],
              "previous": _summary(_previous(state)), "bundles": len(state["bundles"]),
              "trusted_key": pub, "lock": state["lock"], "board": facts}
    if state["link"] and cur is None:  # a link ship did not write, or to a bundle that is gone
        report["current_missing"] = f"current -> {state['link']} is not a bundle in {device.path}/bundles"
    return report


def list_bundles(url: str, opts: SSHOptions, python: str | None = None) -> dict:
    device = Device.parse(url, python)
    with Remote(device, opts) as remote:
        state = read_board(remote)
    rows = [{**_summary(b), "current": b["dir"] == state["current_dir"]} for b in state["bundles"]]
    return {"device": device.label, "status": "ok", "current_link": state["link"], "bundles": rows}


def rollback(url: str, opts: SSHOptions, to: str | None = None, python: str | None = None,
             lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> dict:
    device = Device.parse(url, python)
    if to is not None:
        to = to.strip().removeprefix("bundles/").rstrip("/")
        if not to or "/" in to or to in (".", ".."):
            raise InputError(f"--to: expected a bundle directory name in PATH/bundles (as `edgepipe board list` "
                             f"shows it). Received: {to!r}")
    if lock_timeout <= opts.command_timeout:
        raise InputError(f"--lock-timeout: expected more than --timeout ({opts.command_timeout:.0f} s). "
                         f"Received: {lock_timeout:.0f}")
    from edgepipe.boards.ship import Board

    with Board(device, opts) as board, BoardLock(board.remote, device.python, "rollback", lock_timeout) as lock:
        state = read_board(board.remote)
        cur = state["current_dir"]
        report = {"device": device.label, "previous": state["link"], "lock_broken": lock.acquired.get("broken")}
        names = [b["dir"] for b in state["bundles"]]
        if to is None:
            target = _previous(state)
            if target is None:
                raise BoardRefused(f"{device.label}: expected an installed bundle other than current to roll back "
                                   f"to. Received: {len(names)} bundle(s) in {device.path}/bundles "
                                   f"({', '.join(names) or 'none'}), current -> {state['link']}",
                                   "nothing to roll back to", report)
        else:
            target = next((b for b in state["bundles"] if b["dir"] == to), None)
            if target is None:
                raise BoardRefused(f"{device.label}: --to: expected one of the bundles in {device.path}/bundles "
                                   f"({', '.join(names) or 'none'}). Received: {to!r}", "unknown bundle", report)
            if to == cur:
                raise BoardRefused(f"{device.label}: --to: expected a bundle other than current. Received: {to!r}, "
                                   "which is current already", "already current", report)
        report["bundle"] = target["dir"]
        if not state["runner"] or state["trusted_pub"] is None:
            raise RemoteError(f"{device.label}: expected the runner ({device.path}/runner/{RUNNER_NAME}) and the "
                              f"trusted key ({device.path}/trusted.pub) that `edgepipe ship` installs. Received: "
                              f"runner {'present' if state['runner'] else 'missing'}, trusted.pub "
                              f"{'present' if state['trusted_pub'] is not None else 'missing'}", "not installed")
        code, out = board.runner(device.q("bundles", target["dir"]), "--verify-only", timeout=opts.command_timeout)
        report["verify"] = out.get("verification")
        if code != 0 or not out.get("ok"):
            err = (out.get("error") or {}).get("message") or f"runner exit code {code}"
            raise RemoteError(f"{device.label}: expected bundles/{target['dir']} to verify on the board against "
                              f"trusted.pub before switching. Received: {err}; current is unchanged "
                              f"({state['link']})", "verification failed")
        lock.refresh()
        board.switch(f"bundles/{target['dir']}")
        report.update(status="ok", current=_summary(target), switched=True)
        return report


def describe_board(facts: dict | None) -> str:
    """'aarch64 (emulated: qemu-user), Python 3.11.2, numpy 2.4.6, ai_edge_litert 2.3.0 (tflite_runtime: not
    importable)': what the board said about itself."""
    if not facts:
        return "unknown"
    if facts.get("error"):
        return f"unknown ({facts['error']})"
    emulated = f" (emulated: {facts['emulated']})" if facts.get("emulated") else ""
    numpy = facts.get("numpy") or {}
    parts = [f"{facts.get('isa') or facts.get('machine')}{emulated}", f"Python {facts.get('python')}",
             f"numpy {numpy['version']}" if "version" in numpy else "no numpy"]
    runtimes = facts.get("runtimes") or {}
    have = [f"{rt} {v['version']}" for rt, v in runtimes.items() if "version" in v]
    missing = [rt for rt, v in runtimes.items() if "version" not in v]
    return ", ".join(parts + (have or ["no runtime"])) + (f" (not importable: {', '.join(missing)})" if missing else "")


def describe_status(report: dict) -> str:
    """`board status` for people."""
    def one(b):
        if b is None:
            return "none"
        if b.get("unreadable"):
            return f"{b['dir']} (unreadable: {b['unreadable']})"
        return (f"{b['dir']}\n    model {b.get('name')} v{b.get('version')} ({b.get('model_file')}, sha256 "
                f"{b.get('model_sha256')})\n    manifest sha256 {b.get('manifest_sha256')}, installed "
                f"{b.get('installed')}")

    lines = [f"board:    {report['device']}", f"runs:     {describe_board(report.get('board'))}",
             f"current:  {one(report['current'])}"]
    if report.get("current_missing"):
        lines.append(f"          warning: {report['current_missing']}")
    lines += [f"previous: {one(report['previous'])}", f"bundles:  {report['bundles']}",
              f"trusted key: {report['trusted_key'] or 'none (no trusted.pub)'}",
              f"lock:     {report['lock']['holder'] if report['lock'] else 'free'}"]
    return "\n".join(lines)

