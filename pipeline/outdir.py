"""The output directory: an exclusive lock naming its holder, and atomic publication."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path

from pipeline.errors import InputError, OutputLockedError

LOCK_NAME = ".edgepipe.lock"


@contextmanager
def locked_output(path: Path):
    """Hold an exclusive lock on `path` for a run; a second run fails naming the holder."""
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
            raise OutputLockedError(
                f"output directory {str(path)!r} is in use by another edgepipe run ({holder}); "
                "wait for it to finish or choose another --output"
            ) from err
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode(), 0)
        yield path
    finally:
        os.close(fd)


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
