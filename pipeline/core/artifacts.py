"""Typed artifact records: immutable, written as JSON beside the files they describe."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgepipe.core.hashing import sha256_file

RECORD_NAME = "artifact.json"
# what `publish` (pipeline/engine/target.py) writes beside an artifact's own files, with the record
LABELS_NAME, PREPROCESS_NAME, CARD_NAME = "labels.txt", "preprocess.json", "README.md"
PUBLISHED_EXTRAS = (LABELS_NAME, PREPROCESS_NAME, RECORD_NAME, CARD_NAME)


@dataclass(frozen=True)
class Artifact:
    name: str  # e.g. "tflite-arm/int8"
    target: str
    format: str  # a name in the formats table (pipeline/formats/registry.py): tflite | openvino-ir | onnx
    precision: str  # fp32 | int8
    path: Path  # the main model file
    files: tuple[str, ...]  # every file of the artifact, relative to path.parent
    sha256: str  # of the main file (for IR: of .xml and .bin together)
    size_bytes: int
    tool_versions: dict = field(default_factory=dict)
    calibration_sha256: str | None = None
    source_model_sha256: str | None = None  # the file (or SavedModel tree) the run was given
    # the model's identity: a .keras file's content hash (formats/keras.py: the same model saved again has the
    # same one), else source_model_sha256; what ship compares to tell "another model" from a new bundle of it
    source_model_key: str | None = None
    stage_key: str | None = None
    # target-specific facts (pre-flight, compiler log, min runtime version, compiled blob, ...)
    metadata: dict = field(default_factory=dict)
    # what this host could not do for it, each a precise status ("not compiled: ...")
    incomplete: tuple[str, ...] = ()
    recipe: dict | None = None  # the quantization recipe (name and settings) of an INT8 artifact

    @classmethod
    def from_files(cls, name, target, fmt, precision, path: Path, extra_files: tuple[str, ...] = (), **kw) -> Artifact:
        """`sha256`/`size_bytes` cover the model files; `extra_files` (beside it) are shipped with it."""
        path = Path(path)
        # = formats.get(fmt).model_files(path): core sits below the formats table, so it keeps this one
        # rule itself; tests/test_formats.py checks it against the table's companions.
        model = (path.name, path.with_suffix(".bin").name) if fmt == "openvino-ir" else (path.name,)
        digests = [sha256_file(path.parent / f) for f in model]
        sha = digests[0] if len(digests) == 1 else _combine(digests)
        size = sum((path.parent / f).stat().st_size for f in model)
        files = model + tuple(f for f in extra_files if f not in model)
        return cls(name, target, fmt, precision, path, files, sha, size, **kw)

    def to_json(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        d["files"] = list(self.files)
        d["incomplete"] = list(self.incomplete)
        return d

    @classmethod
    def from_json(cls, d: dict) -> Artifact:
        d = dict(d)
        d["path"] = Path(d["path"])
        d["files"] = tuple(d["files"])
        d["incomplete"] = tuple(d.get("incomplete", ()))
        return cls(**d)

    def write(self, directory: Path, extra: dict | None = None) -> Path:
        dest = Path(directory) / RECORD_NAME
        dest.write_text(json.dumps({**self.to_json(), **(extra or {})}, indent=2, sort_keys=True, default=str))
        return dest


def _combine(digests: list[str]) -> str:
    import hashlib

    return hashlib.sha256("".join(digests).encode()).hexdigest()
