"""Temporary folders that edgepipe can prove are its own, and the only ones it ever sweeps.

Every temporary folder edgepipe creates beside something it publishes (a stage being computed,
an artifact or a bundle being assembled, the previous version of an artifact being replaced, an
archive being unpacked, a report file being written) comes from `make_temp_dir`, which writes a
marker file `MARKER` inside it before anything else:

    {"edgepipe_temp": 1, "run_id": "...", "pid": 1234, "start": <process start ticks>,
     "host": "...", "dir": "<the folder's own name>", "role": "tmp" | "old", "final": "<name>"}

`sweep(directory)` looks at the direct children of `directory` and acts only on a folder (never a
link) whose marker parses, names that very folder, was written on this host, and whose process
is gone (not running, or its pid now belongs to a process started later). Role "tmp" is removed;
role "old" holds the previous version of `final` under `previous/` and is put back when `final`
is missing (a publish killed between its two renames), else removed. A folder without such a
marker is never touched, whatever its name: a user's own `.tmp-something-123` is safe.

The folder is created and marked with Ctrl-C and SIGTERM held (pipeline/core/signals.py), so a signal
never leaves it unmarked. `owned_temp_dir` is `make_temp_dir` as a context manager that also removes the
folder on any exception in its block, a signal's included: the signals are held from before the folder
exists until the block owns it. `scratch_beside` is the same for a folder whose result is moved out of
it: removed when the block ends, however it ends.

The marker is removed just before the folder is renamed into place, so published folders never
carry one; a crash in that instant leaves an unmarked folder behind, which is never swept (litter,
never a loss).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
from pathlib import Path

from edgepipe.core import signals

MARKER = ".edgepipe-temp.json"
ROLES = ("tmp", "old")
_TOKEN: dict[int, str] = {}


def run_id() -> str:
    """This process's run id (a forked worker gets its own)."""
    pid = os.getpid()
    if pid not in _TOKEN:
        _TOKEN[pid] = f"{pid}-{secrets.token_hex(4)}"
    return _TOKEN[pid]


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid from its owner."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def make_temp_dir(final: Path, role: str = "tmp", stem: str | None = None) -> Path:
    """A new marked folder beside `final` (never an existing one): `.<role>-<stem>-<token>-<pid>`."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    token = run_id().split("-", 1)[1]
    d = final.parent / f".{role}-{stem or final.name}-{token}-{os.getpid()}"
    n = 0
    with signals.held():  # created and marked, or neither: never an unmarked folder left by a signal
        while True:
            try:
                d.mkdir()
                break
            except FileExistsError:
                n += 1
                d = final.parent / f".{role}-{stem or final.name}-{token}{n}-{os.getpid()}"
        record = {"edgepipe_temp": 1, "run_id": run_id(), "pid": os.getpid(), "start": _start_ticks(os.getpid()),
                  "host": socket.gethostname(), "dir": d.name, "role": role, "final": final.name}
        try:
            (d / MARKER).write_text(json.dumps(record))
        except BaseException:
            shutil.rmtree(d, ignore_errors=True)
            raise
    return d


@contextlib.contextmanager
def owned_temp_dir(final: Path, role: str = "tmp", stem: str | None = None):
    """`make_temp_dir`, removed again when the block raises (a signal included: see the module doc). A block
    that publishes the folder (renames it into place) leaves nothing for the removal to find."""
    d = None
    try:
        with signals.held():
            d = make_temp_dir(final, role, stem)
        yield d  # a signal that came while the folder was made is raised here, inside the try
    except BaseException:
        if d is not None:
            shutil.rmtree(d, ignore_errors=True)
        raise


@contextlib.contextmanager
def scratch_beside(final: Path, stem: str | None = None):
    """An `owned_temp_dir` beside `final` for work whose result is renamed out of it (a bundle, an archive, a
    file): removed when the block ends, whether it succeeded or raised."""
    with owned_temp_dir(final, stem=stem) as d:
        try:
            yield d
        finally:
            shutil.rmtree(d, ignore_errors=True)


def unmark(tmp: Path) -> None:
    """Remove the marker just before `tmp` is renamed into place."""
    (Path(tmp) / MARKER).unlink(missing_ok=True)


def discard(tmp: Path) -> None:
    """Remove a temporary folder this process made (on failure)."""
    shutil.rmtree(tmp, ignore_errors=True)


def publish_dir(tmp: Path, final: Path) -> None:
    """Replace `final` by the marked folder `tmp` so that readers see the old or the new, never a mix.
    The old version waits in a marked "old" folder until the new one is in place."""
    tmp, final = Path(tmp), Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists() or final.is_symlink():
        old = make_temp_dir(final, "old")
        os.rename(final, old / "previous")
        unmark(tmp)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        unmark(tmp)
        os.replace(tmp, final)


def atomic_write_text(path: Path, text: str) -> Path:
    """Write `path` through a marked temporary folder beside it, then one rename: never half-written."""
    path = Path(path)
    with scratch_beside(path) as tmp:
        (tmp / path.name).write_text(text, encoding="utf-8")
        os.replace(tmp / path.name, path)
    return path


def read_marker(folder: Path) -> dict | None:
    """The marker of `folder` if it is a valid edgepipe marker naming this very folder, else None."""
    p = Path(folder) / MARKER
    try:
        if p.is_symlink() or not p.is_file() or p.stat().st_size > 4096:
            return None
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            record = json.loads(f.read(4097).decode("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    types = {"pid": int, "final": str, "host": str, "run_id": str}
    ok = (record.get("edgepipe_temp") == 1 and record.get("dir") == Path(folder).name and record.get("role") in ROLES
          and all(isinstance(record.get(k), t) for k, t in types.items())
          and "/" not in record["final"] and record["final"] not in ("", ".", ".."))
    return record if ok else None


def owner_gone(record: dict) -> bool:
    """True when the process that wrote the marker is no longer running (on this host)."""
    if record["host"] != socket.gethostname():
        return False  # another machine's (a shared filesystem): it may still be writing
    pid = record["pid"]
    if pid == os.getpid():
        return True  # an earlier run of this very process, which failed without cleaning up
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    start = _start_ticks(pid)
    return record.get("start") is not None and start is not None and start != record["start"]


def sweep(directory: Path) -> int:
    """Remove (or restore) the marked leftovers of dead edgepipe processes directly in `directory`."""
    directory = Path(directory)
    n = 0
    try:
        children = sorted(directory.iterdir()) if directory.is_dir() else []
    except OSError:
        return 0
    for p in children:
        if p.is_symlink() or not p.is_dir():
            continue
        record = read_marker(p)
        if record is None or not owner_gone(record):
            continue
        final, previous = directory / record["final"], p / "previous"
        if record["role"] == "old" and previous.exists() and not (final.exists() or final.is_symlink()):
            os.rename(previous, final)  # the previous good version: put it back
        shutil.rmtree(p, ignore_errors=True)
        n += 1
    return n
