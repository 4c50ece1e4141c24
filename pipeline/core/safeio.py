"""Every file edgepipe reads is a regular file within a size limit: the one helper every reader uses.

Refused, each with an `InputError` that says what was expected and what the path is:
- FIFOs, character and block devices, sockets, directories where a file is expected (a FIFO
  would block the reader forever, a device would stream without end);
- symbolic-link loops (reported as a loop, not as a missing file) and dangling links;
- files larger than the reader's cap (configs, labels, CSVs, images, manifests each have one).

The file is opened non-blocking and checked with `fstat` on the open descriptor, so a path that
is swapped for a FIFO between a check and the open cannot block the reader either. Text is UTF-8;
a UTF-8 byte-order mark is accepted where the caller says so (`bom="strip"`), UTF-16 is named.
"""

from __future__ import annotations

import errno
import io
import os
import stat
from pathlib import Path

from edgepipe.core.errors import InputError, expected_received

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30

# caps per kind of file (bytes); callers pass their own where they know better
MAX_CONFIG = 1 * MiB  # pipeline.yaml, sweep.yaml
MAX_TEXT = 64 * MiB  # labels, CSV sources, preprocess.json, artifact.json, manifest.json
MAX_IMAGE = 256 * MiB  # one image file
MAX_MODEL = 8 * GiB  # one model file (.keras, .tflite, .onnx, IR .xml/.bin, saved_model.pb)
NUL_PATH = "a path containing a NUL byte"


def kind_of(mode: int) -> str:
    """A file type for messages: 'a FIFO (named pipe)', 'a character device', ..."""
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISREG, "a regular file")):
        if test(mode):
            return name
    return "a special file"


def lmode(path: str | os.PathLike) -> int | None:
    """The mode of `path` itself (a link is not followed), or None when nothing is there."""
    try:
        return os.lstat(path).st_mode
    except FileNotFoundError:
        return None


def lkind(path: str | os.PathLike, mode: int | None = None) -> str:
    """What `path` itself is, for messages: "a symbolic link (to 'x')", "a directory", ... (`mode`: its lstat mode,
    when the caller has it)."""
    mode = os.lstat(path).st_mode if mode is None else mode
    return f"a symbolic link (to {os.readlink(path)!r})" if stat.S_ISLNK(mode) else kind_of(mode)


def stat_problem(path: str | os.PathLike) -> str | None:
    """Why `path` cannot be read as a regular file (a short phrase), or None when it is one."""
    try:
        st = os.stat(path)
    except OSError as err:
        return os_problem(path, err)
    except ValueError:  # an embedded NUL byte (a CSV row, a config value): no system call takes it
        return NUL_PATH
    if not stat.S_ISREG(st.st_mode):
        return kind_of(st.st_mode)
    return None


def os_problem(path: str | os.PathLike, err: OSError) -> str:
    """An OSError on `path` as a phrase: a symlink loop, a dangling link, no such file, permission denied."""
    if err.errno == errno.ELOOP:
        return "a symbolic-link loop"
    if err.errno == errno.ENOENT:
        try:
            if os.path.islink(path):
                return f"a dangling symbolic link (to {os.readlink(path)!r})"
        except OSError:
            pass
        return "no such file or directory"
    if err.errno == errno.ENAMETOOLONG:
        return "a file name too long for this system"
    return err.strerror or type(err).__name__


def label_of(path, what: str) -> str:
    """`what` naming the file, for messages: "labels file '/data/labels.txt'"."""
    return f"{what} {str(path)!r}"


def check_regular(path: str | os.PathLike, what: str, max_bytes: int | None = None,
                  label: str | None = None) -> os.stat_result:
    """stat of a regular file no larger than `max_bytes`; otherwise an InputError naming the problem.
    `label` replaces the default "<what> '<path>'" in messages."""
    label = label or label_of(path, what)
    try:
        st = os.stat(path)
    except OSError as err:
        raise InputError(expected_received(label, "a readable regular file", os_problem(path, err))) from None
    except ValueError:
        raise InputError(expected_received(label, "a readable regular file", NUL_PATH)) from None
    _check_stat(st, label, max_bytes)
    return st


def _check_stat(st: os.stat_result, label: str, max_bytes: int | None) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise InputError(expected_received(label, "a regular file", kind_of(st.st_mode)))
    if max_bytes is not None and st.st_size > max_bytes:
        raise InputError(expected_received(label, f"at most {human(max_bytes)}", f"{human(st.st_size)}"))


def open_regular(path: str | os.PathLike, what: str, max_bytes: int | None = None,
                 label: str | None = None) -> io.BufferedReader:
    """Open a regular file for binary reading (never blocks on a FIFO or a device)."""
    label = label or label_of(path, what)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise InputError(expected_received(label, "a readable regular file", os_problem(path, err))) from None
    except ValueError:
        raise InputError(expected_received(label, "a readable regular file", NUL_PATH)) from None
    try:
        _check_stat(os.fstat(fd), label, max_bytes)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: str | os.PathLike, what: str, max_bytes: int = MAX_TEXT, label: str | None = None) -> bytes:
    label = label or label_of(path, what)
    with open_regular(path, what, max_bytes, label) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew after the check
        raise InputError(expected_received(label, f"at most {human(max_bytes)}", "more"))
    return data


def read_text(path: str | os.PathLike, what: str, max_bytes: int = MAX_TEXT, bom: str = "strip",
              label: str | None = None) -> str:
    """UTF-8 text. `bom`: "strip" accepts and drops a UTF-8 byte-order mark, "refuse" names it."""
    label = label or label_of(path, what)
    return decode_utf8(read_bytes(path, what, max_bytes, label), label, bom)


def decode_utf8(raw: bytes, label: str, bom: str = "strip") -> str:
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError(expected_received(label, "UTF-8 text", "UTF-16 (a UTF-16 byte-order mark); save it as UTF-8"))
    if raw.startswith(b"\xef\xbb\xbf"):
        if bom != "strip":
            raise InputError(expected_received(label, "UTF-8 text without a byte-order mark",
                                               "a UTF-8 BOM (EF BB BF) at the start; save it as plain UTF-8"))
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise InputError(expected_received(
            label, "UTF-8 text", f"undecodable byte {raw[err.start]:#04x} on line {line} (Latin-1 or another "
                                 "8-bit encoding? save it as UTF-8)")) from None


def check_tree(root: str | os.PathLike, what: str, max_files: int = 100_000) -> None:
    """Every entry under a directory is a directory or (through links) a regular file: no FIFO, device,
    socket, link loop or dangling link that a copy or a hash of the tree would block on or fail at."""
    root = Path(root)
    n = 0
    for dirpath, dirnames, filenames in os.walk(root, onerror=None, followlinks=False):
        for name in dirnames + filenames:
            n += 1
            if n > max_files:
                raise InputError(expected_received(f"{what} {str(root)!r}", f"at most {max_files} files", "more"))
            full = os.path.join(dirpath, name)
            try:
                st = os.stat(full)
            except OSError as err:
                raise InputError(expected_received(f"{what} {str(root)!r}", "regular files and directories only",
                                                   f"{os.path.relpath(full, root)!r} is {os_problem(full, err)}")
                                 ) from None
            if stat.S_ISDIR(st.st_mode) and os.path.islink(full):  # a copy would follow it (loops, escapes)
                raise InputError(expected_received(f"{what} {str(root)!r}", "regular files and directories only",
                                                   f"{os.path.relpath(full, root)!r} is a link to a directory"))
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
                raise InputError(expected_received(f"{what} {str(root)!r}", "regular files and directories only",
                                                   f"{os.path.relpath(full, root)!r} is {kind_of(st.st_mode)}"))


def human(n: int) -> str:
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"
