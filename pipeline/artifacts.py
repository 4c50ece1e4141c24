"""Typed artifact records: immutable, written as JSON beside the files they describe."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.hashing import sha256_file

RECORD_NAME = "artifact.json"


@dataclass(frozen=True)
class Artifact:
    name: str  # e.g. "tflite-arm/int8"
    target: str
    format: str  # tflite | openvino-ir | keras
    precision: str  # fp32 | int8
    path: Path  # the main model file
    files: tuple[str, ...]  # every file of the artifact, relative to path.parent
    sha256: str  # of the main file (for IR: of .xml and .bin together)
    size_bytes: int
    tool_versions: dict = field(default_factory=dict)
    calibration_sha256: str | None = None
    source_model_sha256: str | None = None
    stage_key: str | None = None
    recipe: dict | None = None  # the quantization recipe (name and settings) of an INT8 artifact

    @classmethod
    def from_files(cls, name, target, fmt, precision, path: Path, **kw) -> Artifact:
        path = Path(path)
        files = (path.name, path.with_suffix(".bin").name) if fmt == "openvino-ir" else (path.name,)
        digests = [sha256_file(path.parent / f) for f in files]
        sha = digests[0] if len(digests) == 1 else _combine(digests)
        size = sum((path.parent / f).stat().st_size for f in files)
        return cls(name, target, fmt, precision, path, files, sha, size, **kw)

    def to_json(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        d["files"] = list(self.files)
        return d

    @classmethod
    def from_json(cls, d: dict) -> Artifact:
        d = dict(d)
        d["path"] = Path(d["path"])
        d["files"] = tuple(d["files"])
        return cls(**d)

    def write(self, directory: Path, extra: dict | None = None) -> Path:
        dest = Path(directory) / RECORD_NAME
        dest.write_text(json.dumps({**self.to_json(), **(extra or {})}, indent=2, sort_keys=True, default=str))
        return dest


def _combine(digests: list[str]) -> str:
    import hashlib

    return hashlib.sha256("".join(digests).encode()).hexdigest()
