"""Content hashes: files, directories, numpy arrays and JSON-able parameter dicts."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_tree(path: str | Path) -> str:
    """Hash of a file, or of a directory's relative paths and file contents."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(p.relative_to(path).as_posix().encode())
        h.update(b"\0")
        h.update(sha256_file(p).encode())
    return h.hexdigest()


def sha256_arrays(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(_bytes_of(a))
    return h.hexdigest()


def _bytes_of(a) -> memoryview:
    """The array's bytes in C order, as `a.tobytes()` gives them, without copying a C-contiguous array (a copy
    of the 786 elpv test images is 0.8 GB and 0.7 s)."""
    import numpy as np

    c = np.ascontiguousarray(a)
    if c.dtype.hasobject:  # no buffer to read: tobytes() as before
        return memoryview(c.tobytes())
    return memoryview(c.reshape(-1)).cast("B")


def stable_hash(obj: object) -> str:
    """sha256 of a canonical JSON rendering (sorted keys, no whitespace)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
