"""Uploads to a board: one tar stream over ssh, with progress and a timeout that scales with the size.

Why tar over ssh and not scp: the host writes the archive into ssh's stdin itself, so it can say
honestly how many bytes it has handed to ssh (ssh and the kernel buffer at most a few hundred KiB
ahead of the link), without a terminal, and kill the transfer at a deadline. The board needs only
`tar` (GNU or busybox), which every board with a shell has. Only regular files and directories
are sent (a bundle is verified on the host first and holds nothing else).

The timeout is `--upload-timeout` when given, else the per-command `--timeout` (the floor: the
board still verifies and moves the files after the last byte) plus the size at MIN_RATE, an
assumed slow link (2 Mbit/s): a 45 MiB OpenVINO bundle gets 300 s + 180 s.
"""

from __future__ import annotations

import os
import subprocess
import tarfile
import tempfile
import threading
import time
from pathlib import Path

from edgepipe.core.errors import BundleError

MIN_RATE = 256 * 1024  # bytes/s assumed for the slowest link a default timeout allows
EXTRACT = "tar -x -f - -C {dir}"  # {dir}: the quoted target directory on the board


def mib(n: float) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def upload_timeout(total: int, opts) -> tuple[float, str]:
    """(seconds, how they were computed) for an upload of `total` bytes."""
    if getattr(opts, "upload_timeout", None):
        return float(opts.upload_timeout), f"--upload-timeout {opts.upload_timeout:.0f} s"
    extra = total / MIN_RATE
    return (opts.command_timeout + extra,
            f"--timeout {opts.command_timeout:.0f} s + {mib(total)} at an assumed {MIN_RATE // 1024} KiB/s")


def tar_members(sources: list[Path]) -> list[tuple[Path, str, int]]:
    """[(path, name in the archive, size)]: each source under its own name; directories recursively
    (sorted, directories listed before their files, with size -1); links and special files refused."""
    out: list[tuple[Path, str, int]] = []
    for src in sources:
        src = Path(src)
        if src.is_dir() and not src.is_symlink():
            out.append((src, src.name, -1))
            for dirpath, dirnames, filenames in os.walk(src):
                dirnames.sort()
                rel = Path(dirpath).relative_to(src.parent)
                for n in dirnames:
                    out.append((Path(dirpath) / n, (rel / n).as_posix(), -1))
                for n in sorted(filenames):
                    out.append(_file(Path(dirpath) / n, (rel / n).as_posix()))
        else:
            out.append(_file(src, src.name))
    return out


def _file(path: Path, name: str) -> tuple[Path, str, int]:
    if path.is_symlink() or not path.is_file():
        raise BundleError(f"upload: expected regular files only. Received: {path} (a link or special file)")
    return path, name, path.stat().st_size


class Meter:
    """Counts file bytes read into the archive and calls progress(sent, total)."""

    def __init__(self, total: int, progress):
        self.total, self.sent, self.progress = total, 0, progress

    def add(self, n: int) -> None:
        self.sent += n
        if self.progress is not None:
            self.progress(self.sent, self.total)


class _Counted:
    def __init__(self, f, meter: Meter):
        self.f, self.meter = f, meter

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        if data:
            self.meter.add(len(data))
        return data


def write_tar(fileobj, members: list[tuple[Path, str, int]], meter: Meter) -> None:
    now = int(time.time())
    with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for path, name, size in members:
            info = tarfile.TarInfo(name)
            info.mtime = now
            if size < 0:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
                continue
            info.size, info.mode = size, 0o644
            with open(path, "rb") as f:
                tar.copybufsize = 256 * 1024
                tar.addfile(info, _Counted(f, meter))


def stream_tar(argv: list[str], members, total: int, deadline_s: float, progress) -> tuple[int, str, bool]:
    """Run `argv` (ssh ... tar -x) and write the archive into its stdin. Returns (exit code, stderr, expired):
    a watchdog kills ssh at the deadline, which also ends a write blocked on a stalled link."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
        expired = threading.Event()

        def kill():
            expired.set()
            proc.kill()

        timer = threading.Timer(deadline_s, kill)
        timer.daemon = True
        timer.start()
        try:
            try:
                write_tar(proc.stdin, members, Meter(total, progress))
                proc.stdin.close()
            except (BrokenPipeError, ValueError, OSError):  # ssh ended early: its exit code and stderr say why
                pass
            rc = proc.wait()
        except BaseException:  # Ctrl-C: never leave ssh running
            proc.kill()
            proc.wait()
            raise
        finally:
            timer.cancel()
            if proc.stdin and not proc.stdin.closed:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
        err.seek(0)
        return rc, err.read().decode("utf-8", "replace"), expired.is_set()
