"""Class labels: read strictly (UTF-8, no BOM, LF, unique), and matched against the model's outputs."""

from __future__ import annotations

from pathlib import Path

from edgepipe.core import safeio
from edgepipe.core.errors import InputError, expected_received


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
    if len(out) < 2:
        raise InputError(expected_received(label, "at least 2 class labels, one per line", f"{len(out)}"))
    dup = sorted({x for x in out if out.count(x) > 1})
    if dup:
        raise InputError(expected_received(label, "unique labels", f"duplicates {dup}"))
    return out


def check_outputs(n_outputs: int, labels: list[str], where: str) -> None:
    """One label per model output: checked on every run, cached scores included, before packaging."""
    if int(n_outputs) != len(labels):
        raise InputError(expected_received(
            where, f"{len(labels)} class scores, one per label ({len(labels)} labels)",
            f"{int(n_outputs)} outputs; the labels do not match the model"))
