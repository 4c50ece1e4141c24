"""Class labels: read strictly (UTF-8, no BOM, LF, unique), and matched against the model's outputs.

`labels_problem` is the one rule for a list of labels, wherever it comes from (`data.labels` in
pipeline.yaml, a labels file, `--labels`): at least 2, unique, at most `MAX_LABELS`, each non-empty,
at most `MAX_LABEL_CHARS` characters, without surrounding spaces, NUL or any character
`str.splitlines` breaks a line at. Every artifact ships labels.txt, one label per line, and the model
card's program reads it with `splitlines()`: a label holding a form feed or U+2028 would become two,
and every class after it would be named wrong on the board.
"""

from __future__ import annotations

import reprlib
from pathlib import Path

from edgepipe.core import safeio
from edgepipe.core.errors import InputError, expected_received

MAX_LABELS = 100_000  # ImageNet-21k has 21,841 classes
MAX_LABEL_CHARS = 256
# every character str.splitlines() splits at, and NUL
BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\x00"

_repr = reprlib.Repr()
_repr.maxstring, _repr.maxother, _repr.maxlist = 60, 60, 5


def brief(value) -> str:
    """repr(value), cut: a message never quotes a whole 10 MB label or a 100,000-label list."""
    return _repr.repr(value)


def labels_problem(labels: list[str]) -> str | None:
    """'expected ... Received: ...' when `labels` break the rule in the module docstring, else None."""
    if len(labels) < 2:
        return f"expected at least 2 class labels. Received: {len(labels)} {brief(labels)}"
    if len(labels) > MAX_LABELS:
        return f"expected at most {MAX_LABELS} class labels. Received: {len(labels)}"
    bad = [x for x in labels if not isinstance(x, str) or not x or x != x.strip() or len(x) > MAX_LABEL_CHARS
           or any(c in x for c in BREAKS)]
    if bad:
        return (f"expected non-empty labels of at most {MAX_LABEL_CHARS} characters without surrounding spaces, "
                "line breaks (including form feed, U+2028 and the other characters Python's splitlines() breaks "
                f"at) or NUL (labels.txt holds one per line). Received: {len(bad)} such, e.g. {brief(bad[:3])}")
    seen: set = set()
    dup = sorted({x for x in labels if x in seen or seen.add(x)})
    if dup:
        return f"expected unique class labels. Received duplicates: {brief(dup)}"
    return None


def read_labels(labels) -> list[str]:
    """A list from the config as is; a labels file: one label per line, blank lines ignored."""
    if isinstance(labels, list):
        return labels
    path = Path(labels)
    label = f"labels file {str(path)!r}"
    raw = safeio.read_bytes(path, "labels file", safeio.MAX_TEXT)  # a regular file (no FIFO, device, loop)
    if raw.startswith(b"\xef\xbb\xbf"):
        raise InputError(expected_received(label, "UTF-8 text without a byte-order mark",
                                           "a UTF-8 BOM (EF BB BF) at the start; save it as plain UTF-8"))
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError(expected_received(label, "UTF-8 text", "UTF-16 (a UTF-16 byte-order mark)"))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise InputError(expected_received(label, "UTF-8 text",
                                           f"undecodable byte {raw[err.start]:#04x} on line {line}")) from err
    if "\r" in text:
        line = text[:text.index("\r")].count("\n") + 1
        raise InputError(expected_received(label, "LF line endings",
                                           f"CR/CRLF line endings (first on line {line}); convert with dos2unix"))
    out = [ln.strip() for ln in text.split("\n") if ln.strip()]
    problem = labels_problem(out)
    if problem:
        raise InputError(f"{label}: {problem}")
    return out


def check_outputs(n_outputs: int, labels: list[str], where: str) -> None:
    """One label per model output: checked on every run, cached scores included, before packaging."""
    if int(n_outputs) != len(labels):
        raise InputError(expected_received(
            where, f"{len(labels)} class scores, one per label ({len(labels)} labels)",
            f"{int(n_outputs)} outputs; the labels do not match the model"))
