"""Content-addressed stage cache with atomic publication.

A stage's output directory is named `<stage>-<key>` where key is a hash of the stage
name, its inputs' hashes, its parameters and the tool versions it depends on. The stage
writes into a private temporary directory; only when it returns is a `_stage.json`
marker written and the directory renamed into place (an atomic rename on one
filesystem). So an interrupted stage never leaves a directory that looks complete, and
a rerun with unchanged inputs runs nothing.

Several workers (processes, Ray tasks) may share one cache directory. A per-stage file lock
makes a stage run once: the second worker waits for the lock, then finds the published
result and reports it as cached instead of recomputing it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock

from pipeline.core.hashing import stable_hash

MARKER = "_stage.json"
LOCKS = ".locks"  # per-stage lock files (never swept: a lock file is harmless, and may be held)


@dataclass(frozen=True)
class StageResult:
    name: str
    key: str
    path: Path
    cached: bool
    seconds: float
    meta: dict = field(default_factory=dict)


@dataclass
class StageCache:
    root: Path
    events: list[StageResult] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    @staticmethod
    def key_for(name: str, inputs: dict) -> str:
        return stable_hash({"stage": name, "inputs": inputs})[:20]

    def lookup(self, name: str, inputs: dict) -> StageResult | None:
        key = self.key_for(name, inputs)
        out = self.root / f"{name}-{key}"
        marker = out / MARKER
        if not marker.is_file():
            return None
        meta = json.loads(marker.read_text())
        return StageResult(name, key, out, True, 0.0, meta.get("meta", {}))

    def run(self, name: str, inputs: dict, fn: Callable[[Path], dict | None]) -> StageResult:
        """Return the cached result for (name, inputs) or run `fn(tmpdir)` and publish it."""
        hit = self.lookup(name, inputs)
        if hit is not None:
            self.events.append(hit)
            return hit
        key = self.key_for(name, inputs)
        (self.root / LOCKS).mkdir(parents=True, exist_ok=True)
        with FileLock(self.root / LOCKS / f"{name}-{key}.lock"):
            hit = self.lookup(name, inputs)  # another worker computed it while we waited
            if hit is not None:
                self.events.append(hit)
                return hit
            result = self._compute(name, key, inputs, fn)
        self.events.append(result)
        return result

    def _compute(self, name: str, key: str, inputs: dict, fn: Callable[[Path], dict | None]) -> StageResult:
        out = self.root / f"{name}-{key}"
        tmp = self.root / f".tmp-{name}-{key}-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        t0 = time.perf_counter()
        try:
            meta = fn(tmp) or {}
            seconds = time.perf_counter() - t0
            record = {"stage": name, "key": key, "inputs": inputs, "meta": meta, "seconds": seconds}
            (tmp / MARKER).write_text(json.dumps(record, indent=2, sort_keys=True, default=str))
            if out.exists():  # a leftover without a marker (never complete): replace it
                shutil.rmtree(out)
            os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return StageResult(name, key, out, False, seconds, meta)

    def sweep_temporaries(self) -> int:
        """Remove `.tmp-*` dirs left by runs that were killed (kill -9 leaves them)."""
        n = 0
        if self.root.is_dir():
            for p in self.root.glob(".tmp-*"):
                pid = p.name.rsplit("-", 1)[-1]
                if pid.isdigit() and pid_alive(int(pid)) and int(pid) != os.getpid():
                    continue
                shutil.rmtree(p, ignore_errors=True)
                n += 1
        return n


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
