"""Remembered content hashes of preprocessed batches, so that a rerun whose stages are all cached decodes
no image.

A batch's sha256 (of its preprocessed arrays and labels) is an input of the stage-cache keys, and computing
it means decoding and resizing every image: about 14 s of the example's 18 s warm rerun. The index
remembers, per batch, the hash last computed for exactly these files: the same paths, sizes and
modification times (ns), the same labels, the same preprocessing spec, and the same preprocessing code and
image library. On a hit the batch comes back with that hash and its labels, and its images are decoded only
if a stage needs them; they are then hashed again, and a mismatch (a file rewritten with the same size and
modification time, which the index cannot see) is an error, never a wrong cache hit.

Like make and git, the index trusts modification times; deleting `<stages>/batch-index/` makes every batch
hashed again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from edgepipe.core.errors import InputError
from edgepipe.core.hashing import sha256_file, stable_hash
from edgepipe.core.jsonio import write_json
from edgepipe.core.safeio import KiB, read_bytes

FORMAT = 1
DIRNAME = "batch-index"
MAX_ENTRY = 64 * KiB  # an entry is about 100 bytes of JSON (format, count, sha256)


def _code() -> dict:
    """What else decides the preprocessed pixels: the preprocessing module's source and the image library."""
    import numpy
    import PIL

    from edgepipe.calibration import preprocess

    return {"preprocess": sha256_file(preprocess.__file__), "pillow": PIL.__version__, "numpy": numpy.__version__}


def fingerprint(paths: list[str], labels: list[int], spec: dict, subset: dict) -> str | None:
    """The key of one batch: its files as stat() sees them, labels, spec and code; None when a file cannot be
    stat()ed (the caller's normal load then names the problem)."""
    files = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            return None
        files.append([p, st.st_size, st.st_mtime_ns])
    return stable_hash({"format": FORMAT, "files": files, "labels": labels, "spec": spec, "subset": subset,
                        "code": _code()})


def subset_key(parent_sha256: str, rows: list[int]) -> str:
    """The key of a subset of a batch (`dataset.subsample`): its content is the parent's rows `rows`, so the
    parent's content hash and the rows decide it."""
    return stable_hash({"format": FORMAT, "parent": parent_sha256, "rows": rows})


def lookup(root: Path, key: str, count: int) -> str | None:
    """The remembered sha256 of the batch `key` (of `count` images), or None. An entry that is not a small
    regular file of the expected JSON (a FIFO, a device, a directory, a huge or garbage file) is a miss: read
    through safeio, it never blocks, and the batch is hashed again."""
    path = entry_path(root, key)
    try:
        entry = json.loads(read_bytes(path, "batch index entry", MAX_ENTRY))
    except (InputError, OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("format") != FORMAT or entry.get("count") != count:
        return None
    sha = entry.get("sha256")
    return sha if isinstance(sha, str) and len(sha) == 64 else None


def entry_path(root: Path, key: str) -> Path:
    """The file that remembers the batch `key`."""
    return Path(root) / DIRNAME / f"{key}.json"


def remember(root: Path, key: str, count: int, sha256: str) -> None:
    (Path(root) / DIRNAME).mkdir(parents=True, exist_ok=True)
    write_json(entry_path(root, key), {"format": FORMAT, "count": count, "sha256": sha256})


def forget(root: Path, key: str) -> None:
    entry_path(root, key).unlink(missing_ok=True)
