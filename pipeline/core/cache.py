"""Content-addressed stage cache with atomic publication.

A stage's output directory is named `<stage>-<key>` where key is a hash of the stage
name, its inputs' hashes, its parameters and the tool versions it depends on (and oneDNN's ISA cap when
one is set: `key_for`). The stage
writes into a private temporary directory (marked as edgepipe's own, see
edgepipe.core.tempdirs); only when it returns is a `_stage.json` marker written and the
directory renamed into place (an atomic rename on one
filesystem). So an interrupted stage never leaves a directory that looks complete, and
a rerun with unchanged inputs runs nothing.

An entry is served by content, not by name: its marker records every file the stage wrote (size, modification
time, sha256, `file_record`), and a lookup checks them (`intact`). A file whose size and time are as recorded is
taken as is (a warm rerun reads no model); one whose time moved (a copy made without -p) is hashed, and kept when
its content is unchanged (the marker then records the new time). A file changed, removed or replaced by another
kind of file (another model copied over it, or over the artifact that is a hard link to it) makes the entry a
miss: the stage runs again and its result replaces the entry. A marker without that record (written by an older
edgepipe) cannot be checked and is a miss too.

Each stage that runs is timed (wall and CPU seconds, `pipeline/core/timing.py`): its cost is in its
StageResult and in its marker, so a cache hit still says what the stage cost when it ran. `span`
times work outside stages (loading images or the model) on the same clock; both feed the run's profile.

Several workers (processes, Ray tasks) may share one cache directory. A per-stage file lock
makes a stage run once: the second worker waits for the lock, then finds the published
result and reports it as cached instead of recomputing it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock

from edgepipe.core import safeio, tempdirs
from edgepipe.core.errors import InputError, expected_received
from edgepipe.core.hashing import sha256_file, stable_hash
from edgepipe.core.signals import stop_if_terminated
from edgepipe.core.timing import Clock, Cost, Span
from edgepipe.core.versions import onednn_isa_cap

MARKER = "_stage.json"
MAX_MARKER = 16 << 20  # a marker holds the stage's inputs and meta: kilobytes
LOCKS = ".locks"  # per-stage lock files (never swept: a lock file is harmless, and may be held)


FILES = "files"  # marker key: each file of the entry (relative POSIX path) -> [size, mtime_ns, sha256]


def _inside(rel: object) -> bool:
    return isinstance(rel, str) and bool(rel) and "\x00" not in rel and not Path(rel).is_absolute() \
        and ".." not in Path(rel).parts


def _recorded(rel: str, files: dict) -> bool:
    """Whether the meta's `file` is one the marker records (or a folder holding some): else nothing checks it."""
    return rel in files or any(k.startswith(rel.rstrip("/") + "/") for k in files)


def _cost_ok(cost: object) -> bool:
    """A stage's recorded cost: absent, or an object of finite numbers (the profile adds and rounds them)."""
    return cost is None or (isinstance(cost, dict) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in cost.values()))


def file_record(entry: Path) -> dict[str, list]:
    """Every regular file under `entry` but the markers (the stage's, the temporary folder's) -> [size, mtime_ns,
    sha256]: what `intact` checks."""
    record = {}
    for p in sorted(entry.rglob("*")):
        st = p.lstat()
        if stat.S_ISREG(st.st_mode) and p.relative_to(entry).as_posix() not in (MARKER, tempdirs.MARKER):
            record[p.relative_to(entry).as_posix()] = [st.st_size, st.st_mtime_ns, sha256_file(p)]
    return record


def intact(out: Path, files: object) -> tuple[bool, dict]:
    """(True, files with the times seen now) when every recorded file of entry `out` is a regular file of its
    recorded size and content (hashed only when its time moved); (False, {}) otherwise."""
    if not isinstance(files, dict):
        return False, {}
    seen = {}
    for rel, rec in files.items():
        if not _inside(rel) or not (isinstance(rec, list) and len(rec) == 3):
            return False, {}
        size, mtime, digest = rec
        p = out / rel
        try:
            st = p.lstat()
            same = stat.S_ISREG(st.st_mode) and st.st_size == size and (
                st.st_mtime_ns == mtime or sha256_file(p) == digest)
        except (OSError, ValueError):  # ValueError: a NUL byte no system call takes
            return False, {}
        if not same:
            return False, {}
        seen[rel] = [size, st.st_mtime_ns, digest]
    return True, seen


def complete_record(out: Path, name: str, key: str, required: tuple[str, ...] = ()) -> dict | None:
    """The marker of `out` when it is a complete entry of stage `name` with `key`: a folder (not a link) whose
    marker is a regular file within MAX_MARKER, a JSON object naming this stage and key, its meta an object whose
    `file` stays inside the folder, is one of the recorded files and which holds the `required` keys (a measurement,
    say), its cost finite numbers, and whose recorded files are `intact`. Anything else (a damaged entry, another
    stage's folder or another model copied over this one) is None: the stage runs again and its result replaces
    the entry. When a file's time moved but not its content, the marker is rewritten with the new times (if the
    cache is writable), so the next lookup hashes nothing."""
    if out.is_symlink() or not out.is_dir():
        return None
    try:
        record = json.loads(safeio.read_bytes(out / MARKER, "stage marker", MAX_MARKER))
    except (InputError, ValueError, RecursionError):  # missing, special, too big; not UTF-8 or not JSON
        return None
    if not isinstance(record, dict) or record.get("stage") != name or record.get("key") != key \
            or not isinstance(record.get("meta", {}), dict):
        return None
    meta = record.get("meta", {})
    if (meta.get("file") is not None and not _inside(meta["file"])) or any(k not in meta for k in required) \
            or not _cost_ok(record.get("cost")):
        return None
    ok, seen = intact(out, record.get(FILES))
    if not ok or (meta.get("file") is not None and not _recorded(meta["file"], record[FILES])):
        return None
    if seen != record[FILES]:
        record = {**record, FILES: seen}
        try:
            tempdirs.atomic_write_text(out / MARKER, _dumps(record))
        except OSError:  # a read-only cache: checked by hash again next time
            pass
    return record


def _dumps(record: dict) -> str:
    return json.dumps(record, indent=2, sort_keys=True, default=str)


@dataclass(frozen=True)
class StageResult:
    name: str
    key: str
    path: Path
    cached: bool
    seconds: float
    meta: dict = field(default_factory=dict)
    cost: Cost | None = None  # this run's cost when it ran here; when cached, what it cost when it ran (if recorded)


@dataclass
class StageCache:
    root: Path
    events: list[StageResult] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)  # timed work outside stages (loads)
    clock: Clock = field(default_factory=Clock, repr=False)
    cap_in_keys: bool = True  # oneDNN's ISA cap in the keys (`key_for`); off for a cache of inputs (the example model)

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    @contextmanager
    def span(self, name: str, kind: str = "load") -> Iterator[None]:
        """Time work that is not a stage (e.g. loading the validation images) on the stages' clock."""
        with self.clock.span() as m:
            yield
        self.spans.append(Span(name, kind, m.cost))

    def key_for(self, name: str, inputs: dict) -> str:
        """The key of a stage. Under a oneDNN ISA cap (ONEDNN_MAX_CPU_ISA) the cap is part of it: the kernels of
        OpenVINO and TensorFlow then run below the CPU's ISA and may compute other numbers (int8 saturation,
        float rounding), so a capped run shares no stage with an uncapped one. Without a cap keys are as before."""
        cap = onednn_isa_cap() if self.cap_in_keys else None
        return stable_hash({"stage": name, "inputs": inputs, **({"onednn_isa_cap": cap} if cap else {})})[:20]

    def lock_file(self, stem: str) -> Path:
        """`root/.locks/<stem>.lock`, its folder made. A link or another kind of file in either place (a folder
        named like the lock, a `.locks` that is a file) is an InputError naming it: FileLock failed there with a
        bare OSError traceback."""
        locks = self.root / LOCKS
        lock = locks / f"{stem}.lock"
        for path, want, is_kind in ((locks, "a folder", stat.S_ISDIR), (lock, "a regular file", stat.S_ISREG)):
            mode = safeio.lmode(path)
            if mode is not None and not is_kind(mode):
                raise InputError(expected_received(f"stage cache {str(self.root)!r}", f"{path.name!r} {want} "
                                                   "edgepipe made (not a link)",
                                                   f"{safeio.lkind(path, mode)}; remove it and rerun"))
            if path == locks:
                locks.mkdir(parents=True, exist_ok=True)
        return lock

    def lookup(self, name: str, inputs: dict, required: tuple[str, ...] = ()) -> StageResult | None:
        key = self.key_for(name, inputs)
        out = self.root / f"{name}-{key}"
        record = complete_record(out, name, key, required)
        if record is None:
            return None
        return StageResult(name, key, out, True, 0.0, record.get("meta", {}), Cost.from_json(record.get("cost")))

    def run(self, name: str, inputs: dict, fn: Callable[[Path], dict | None],
            required: tuple[str, ...] = ()) -> StageResult:
        """Return the cached result for (name, inputs) or run `fn(tmpdir)` and publish it. `required`: keys the
        meta must hold for a hit (an entry without them is computed again)."""
        stop_if_terminated()  # a SIGTERM whose exception a finalizer swallowed stops the run here
        hit = self.lookup(name, inputs, required)
        if hit is not None:
            self.events.append(hit)
            return hit
        key = self.key_for(name, inputs)
        with FileLock(self.lock_file(f"{name}-{key}")):
            hit = self.lookup(name, inputs, required)  # another worker computed it while we waited
            if hit is not None:
                self.events.append(hit)
                return hit
            result = self._compute(name, key, inputs, fn)
        self.events.append(result)
        return result

    def _compute(self, name: str, key: str, inputs: dict, fn: Callable[[Path], dict | None]) -> StageResult:
        out = self.root / f"{name}-{key}"
        # marked: only ever swept by its marker; removed on any exception, a signal's included
        with tempdirs.owned_temp_dir(out, stem=f"{name}-{key}") as tmp:
            with self.clock.span() as m:
                meta = fn(tmp) or {}
                files = file_record(tmp)  # hashing what it wrote is part of the stage's cost
            seconds = m.cost.wall
            record = {"stage": name, "key": key, "inputs": inputs, "meta": meta, "seconds": seconds,
                      "cost": m.cost.to_json(), FILES: files}
            (tmp / MARKER).write_text(_dumps(record))
            mode = safeio.lmode(out)
            if mode is not None and not stat.S_ISDIR(mode):  # a link, file, FIFO or socket: not an entry this
                out.unlink()  # cache made, the name itself goes (rmtree would open a FIFO and wait forever)
            elif mode is not None:  # a leftover without a complete marker (never finished, or damaged): replace it
                shutil.rmtree(out)
            tempdirs.unmark(tmp)
            os.replace(tmp, out)
        return StageResult(name, key, out, False, seconds, meta, m.cost)

    def sweep_temporaries(self) -> int:
        """Remove the temporary folders of killed runs (kill -9 leaves them): only folders carrying
        edgepipe's marker, written by a process that is gone (edgepipe.core.tempdirs)."""
        return tempdirs.sweep(self.root)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cache_root() -> Path:
    """edgepipe's per-user cache (built example models, the arm64 userland): $EDGEPIPE_CACHE, else
    $XDG_CACHE_HOME/edgepipe, else ~/.cache/edgepipe."""
    env = os.environ.get("EDGEPIPE_CACHE")
    return Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgepipe"
