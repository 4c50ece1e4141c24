"""The output directory: checked before anything is written, an exclusive lock naming its holder,
atomic publication, and the sweep of leftovers of killed runs.

`check_output_dir` (called before the folder, its lock or any sweep is touched) refuses an output
folder that is the filesystem root or the home directory; whose path holds a glob character
(TensorFlow finds a SavedModel's variables by pattern: stages under it could not be read back);
that overlaps an input (the model, the labels file, a data source: either inside the other);
that is not a directory; or that is a non-empty folder edgepipe did not create (no
`.edgepipe.lock` in it, and entries other than the ones edgepipe writes, `OUTPUT_ENTRIES`); or whose
`artifacts` folder holds something no publication wrote (`not_published`: it would be lost when the artifact
is published again). Leftovers are found by the
marker edgepipe writes inside each temporary folder (`edgepipe.core.tempdirs`), never by name.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import socket
import stat
from contextlib import contextmanager
from pathlib import Path

from edgepipe.core import safeio, tempdirs
from edgepipe.core.artifacts import PUBLISHED_EXTRAS, RECORD_NAME
from edgepipe.core.errors import InputError, OutputLockedError, OutputWriteError, expected_received
from edgepipe.core.overlap import overlap

LOCK_NAME = ".edgepipe.lock"
GLOB_CHARS = ("*", "?", "[", "]", "\\")
# what edgepipe writes into an output folder: a folder holding only these (e.g. a copied stage cache) is edgepipe's
OUTPUT_ENTRIES = {LOCK_NAME, "stages", "artifacts", "logs", "report.json", "report.html", "cells", "sweep.json"}
FOLDER_ENTRIES = {"stages", "artifacts", "logs", "cells"}  # of those, the folders edgepipe replaces things in
FILE_ENTRIES = {"report.json", "report.html", "sweep.json"}  # and the files it replaces at the end of a run
MAX_RECORD = 16 << 20  # an artifact.json: kilobytes


@contextmanager
def locked_output(path: Path, wait: bool = False):
    """Hold an exclusive lock on `path` for a run; a second run fails naming the holder (or waits for it)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        # never through a link (the lock is rewritten: a link to a user's file would overwrite it), never blocking
        fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as err:
        why = (f"{LOCK_NAME} is a symbolic link; edgepipe writes its lock only as a regular file"
               if err.errno == errno.ELOOP else err.strerror)
        raise InputError(
            f"output directory {str(path)!r}: expected a writable directory. Received: {why}"
        ) from err
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):  # a FIFO or a device: truncating and rewriting it is no lock
            raise InputError(expected_received(f"output directory {str(path)!r}", f"{LOCK_NAME} a regular file "
                                               "(edgepipe's lock)", f"{LOCK_NAME} is {safeio.kind_of(mode)}"))
        os.set_blocking(fd, True)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown process"
            if not wait:
                raise OutputLockedError(
                    f"output directory {str(path)!r} is in use by another edgepipe run ({holder}); "
                    "wait for it to finish (--wait) or choose another --output"
                ) from err
            from edgepipe.core.progress import stderr
            from edgepipe.reports.escape import terminal as esc

            stderr.print(f"waiting for the edgepipe run holding {esc(repr(str(path)))} ({esc(holder)}) ...",
                         highlight=False)
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


def owned_temp_dir(final: Path):
    """A marked temporary folder beside `final` (see edgepipe.core.tempdirs), removed if the block raises: fill
    it, then `publish_dir`."""
    return tempdirs.owned_temp_dir(Path(final))


def publish_dir(tmp: Path, final: Path) -> None:
    """Replace `final` by `tmp` so that readers see the old or the new, never a mix."""
    tempdirs.publish_dir(tmp, final)


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
# refused for a path inside the output folder only (an immutable `chattr +i` folder, a folder without write
# permission): elsewhere the same errnos are some toolkit's own business, not the output's
PATH_ERRNOS = {errno.EACCES, errno.EPERM}


def _inside_out(filename, out: Path) -> bool:
    try:
        return filename is not None and Path(os.fsdecode(filename)).resolve().is_relative_to(Path(out).resolve())
    except (OSError, ValueError, TypeError):
        return False


def write_failure(err: BaseException, out: Path) -> OutputWriteError | None:
    """An OutputWriteError if `err` (or its cause) is the output filesystem refusing writes, else None.
    Toolkits wrap OS errors in their own types, so the message is checked as well as the errno."""
    seen = err
    while seen is not None:
        if isinstance(seen, OSError) and (seen.errno in WRITE_ERRNOS or (
                seen.errno in PATH_ERRNOS and _inside_out(seen.filename, out))):
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
    """Undo what a killed run left in `root` and `root/artifacts`: marked temporary folders of dead
    processes are removed; an artifact caught between the two renames of `publish_dir` gets its
    previous version back. Unmarked folders are never touched, whatever their names."""
    root = Path(root)
    return tempdirs.sweep(root) + tempdirs.sweep(root / "artifacts")


def _first(names: list[str], n: int = 5) -> str:
    """The first `n` names quoted, for a message ("'a', 'b', ..." when there are more)."""
    return ", ".join(repr(x) for x in names[:n]) + (", ..." if len(names) > n else "")


def check_output_dir(out: Path, inputs: dict[str, Path | None]) -> None:
    """Refuse an output folder that would write over something that is not edgepipe's (see the module
    docstring). `inputs`: what each input is called in messages -> its path (None: not a path)."""
    out = Path(out).expanduser()
    label = f"output directory {str(out)!r}"
    resolved = out.resolve()
    if resolved == Path(resolved.anchor):
        raise InputError(expected_received(label, "a folder for edgepipe's outputs", "the filesystem root"))
    glob = sorted(set(str(resolved)) & set(GLOB_CHARS))
    if glob:  # TensorFlow finds checkpoint files by pattern: the SavedModel under stages/ would not be found
        raise InputError(expected_received(label, f"a path without the characters {' '.join(GLOB_CHARS)} (TensorFlow "
                                                  "reads the SavedModel's variables by glob pattern)",
                                           f"a path with {' '.join(glob)}; choose another --output"))
    home = Path.home().resolve()
    if resolved == home:
        raise InputError(expected_received(label, "a folder for edgepipe's outputs (e.g. ~/edgepipe-out)",
                                           "your home directory"))
    for what, path in inputs.items():
        where = overlap(resolved, path)
        if where:
            raise InputError(expected_received(label, f"a folder apart from every input; it {where} the {what}",
                                               f"{what} {str(path)!r}; choose another --output"))
    if out.is_symlink() and not out.exists():
        raise InputError(expected_received(label, "a folder", "a dangling symbolic link"))
    if out.exists():
        if not out.is_dir():
            raise InputError(expected_received(label, "a folder", "an existing file"))
        try:
            names = [p.name for p in out.iterdir()]
        except OSError as err:
            raise InputError(expected_received(label, "a readable folder", err.strerror)) from None
        foreign = [n for n in names if n not in OUTPUT_ENTRIES and tempdirs.read_marker(out / n) is None]
        if foreign and LOCK_NAME not in names:
            shown = _first(sorted(names))
            raise InputError(expected_received(
                label, "a new or empty folder, or one an earlier edgepipe run wrote",
                f"a non-empty folder edgepipe did not create ({len(names)} entries: {shown}); choose another --output"))
        for name in sorted(FOLDER_ENTRIES & set(names)):
            # a link here would make the run replace or delete what it points to, outside the output folder
            entry = out / name
            if entry.is_symlink() or not entry.is_dir():
                raise InputError(expected_received(label, f"its {name!r} a folder edgepipe made (not a link)",
                                                   f"{name!r} is {safeio.lkind(entry)}; move it away or choose "
                                                   "another --output"))
        for name in sorted(FILE_ENTRIES & set(names)):
            # a folder (or a FIFO) named like the report failed the run at its very end, after every stage
            mode = (out / name).lstat().st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):  # a link is replaced, never written through
                raise InputError(expected_received(label, f"its {name!r} a file edgepipe wrote",
                                                   f"{name!r} is {safeio.kind_of(mode)}; move it away or choose "
                                                   "another --output"))
    if (out / "artifacts").is_dir() and not (out / "artifacts").is_symlink():
        others = not_published(out / "artifacts")
        if others:  # publishing replaces each artifact folder whole: what the user put there would be lost
            shown = _first(others)
            raise InputError(expected_received(
                label, "'artifacts' holding only what edgepipe published (an artifact folder is replaced whole when "
                       "it is published again)",
                f"{len(others)} entr{'y' if len(others) == 1 else 'ies'} edgepipe did not write: {shown}; move "
                "them out of the output folder"))


def not_published(artifacts: Path) -> list[str]:
    """Entries of `artifacts` no publication wrote, where a publication could replace them: an entry that is not
    a folder, a folder without a readable artifact record, a file in an artifact folder that is neither one of the
    record's `files` nor `PUBLISHED_EXTRAS`. Names starting with '.' are never an artifact's (and temporary folders
    edgepipe marked are its own): left alone."""
    found = []
    for entry in sorted(artifacts.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_symlink() or not entry.is_dir():
            found.append(entry.name)
            continue
        try:
            record = json.loads(safeio.read_bytes(entry / RECORD_NAME, "artifact record", MAX_RECORD))
            files = set(record["files"]) | set(PUBLISHED_EXTRAS)
        except (InputError, ValueError, RecursionError, TypeError, KeyError):
            found.append(f"{entry.name}/ (no {RECORD_NAME} edgepipe wrote)")
            continue
        found += [f"{entry.name}/{p.name}" for p in sorted(entry.iterdir()) if p.name not in files]
    return found
