"""The output directory: an exclusive lock naming its holder, and atomic publication."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path

from pipeline.core.cache import pid_alive
from pipeline.core.errors import InputError, OutputLockedError, OutputWriteError

LOCK_NAME = ".edgepipe.lock"


@contextmanager
def locked_output(path: Path, wait: bool = False):
    """Hold an exclusive lock on `path` for a run; a second run fails naming the holder (or waits for it)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise InputError(
            f"output directory {str(path)!r}: expected a writable directory. Received: {err.strerror}"
        ) from err
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown process"
            if not wait:
                raise OutputLockedError(
                    f"output directory {str(path)!r} is in use by another edgepipe run ({holder}); "
                    "wait for it to finish (--wait) or choose another --output"
                ) from err
            from pipeline.core.progress import stderr

            stderr.print(f"waiting for the edgepipe run holding {str(path)!r} ({holder}) ...", highlight=False)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode(), 0)
        yield path
    finally:
        os.close(fd)


@contextmanager
def write_guard(out: Path):
    """Turn the output filesystem refusing writes (disk full, read-only) into a clean OutputWriteError."""
    try:
        yield
    except OutputWriteError:
        raise
    except Exception as err:
        fail = write_failure(err, out)
        if fail is None:
            raise
        raise fail from err


def publish_dir(tmp: Path, final: Path) -> None:
    """Replace `final` by `tmp` so that readers see the old or the new, never a mix."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        old = final.with_name(f".old-{final.name}-{os.getpid()}")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)


WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}
WRITE_MESSAGES = ("No space left on device", "Read-only file system", "Disk quota exceeded", "File too large")


def write_failure(err: BaseException, out: Path) -> OutputWriteError | None:
    """An OutputWriteError if `err` (or its cause) is the output filesystem refusing writes, else None.
    Toolkits wrap OS errors in their own types, so the message is checked as well as the errno."""
    seen = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in WRITE_ERRNOS:
            why = os.strerror(seen.errno)
            break
        text = str(seen)
        why = next((m for m in WRITE_MESSAGES if m in text), None)
        if why:
            break
        seen = seen.__cause__ or seen.__context__
    else:
        return None
    return OutputWriteError(
        f"output directory {str(out)!r}: expected a writable directory with free space. Received: {why}; "
        "the run was aborted, outputs of earlier runs are untouched (rerun to resume from the cache)"
    )


def sweep_leftovers(root: Path) -> int:
    """Undo what a killed run left in `root`: temporary artifact dirs and report files are removed; an
    artifact caught between the two renames of `publish_dir` gets its previous version back."""
    root = Path(root)
    n = 0
    for d in (root, root / "artifacts"):
        if not d.is_dir():
            continue
        for p in d.glob(".*"):
            name, _, pid = p.name.rpartition("-")
            if not pid.isdigit() or not p.name.startswith((".tmp-", ".old-", ".report.json.tmp")):
                continue
            if int(pid) != os.getpid() and pid_alive(int(pid)):
                continue
            final = d / name.removeprefix(".old-")
            if p.name.startswith(".old-") and not final.exists():
                os.replace(p, final)  # the previous good artifact: restore it
            elif p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            n += 1
    return n

