"""Identify and structurally validate model files before any runtime kernel sees them.

`sniff(path)` says what kind of file it is from its first bytes, asking each format in the
table (`registry.py`) and then a few common non-model kinds; `describe(path)` says it in words
for error messages; `check_model_file(path, fmt)` runs the format's own structural check
(in its module): a zero-byte, truncated or wrong-kind file is an `InputError` that names the
file, what was expected and what it looks like. Only parsers are imported, never an interpreter.

Refused before any parser reads a byte (`edgepipe.core.safeio`): FIFOs, devices, sockets, link
loops, files over `MAX_MODEL`; each format's check adds its own caps (a .keras archive's member
sizes and compression ratios: `keras.py`).
"""

from __future__ import annotations

from pathlib import Path

from edgepipe.core import safeio
from edgepipe.core.errors import InputError, expected_received
from edgepipe.formats.registry import FORMATS, find, for_suffix

HEAD_BYTES = 4096
# kinds that are no model format edgepipe handles, by magic bytes (for messages only)
_MAGIC = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"\x1f\x8b", "a gzip archive"),
          (b"%PDF", "a PDF document"), (b"\x7fELF", "an ELF executable"), (b"PK\x03\x04", "a zip archive"),
          (b"PK\x05\x06", "an empty zip archive"), (b"\x89HDF\r\n\x1a\n", "an HDF5 file"))
_TEXT_NOUNS = {"xml": "an XML file", "text": "a text file"}


def sniff(path: Path) -> str:
    """The kind of a file from its first bytes: a format's `kind` (tflite, onnx, openvino-xml, zip, savedmodel),
    or missing, directory, empty, hdf5, xml, text, unknown."""
    path = Path(path)
    problem = safeio.stat_problem(path)
    if problem == "a directory":
        return next((f.kind for f in FORMATS if f.looks_like(path, None)), "directory")
    if problem is not None:  # missing, or a FIFO / device / socket / link loop: never opened for reading
        return "missing" if problem == "no such file or directory" else "special"
    try:
        with safeio.open_regular(path, "file") as f:
            head = f.read(HEAD_BYTES)
    except InputError:
        return "special"
    if not head:
        return "empty"
    for fmt in FORMATS:
        if fmt.looks_like(path, head):
            return fmt.kind
    if head.startswith(b"\x89HDF"):
        return "hdf5"
    text = as_text(head)
    if text is not None:
        return "xml" if text.lstrip("\ufeff \t\r\n").startswith("<") else "text"
    return "unknown"


def describe(path: Path) -> str:
    """What a file looks like, for messages: 'an empty file (0 bytes)', 'a TFLite flatbuffer (1234 bytes)'..."""
    path = Path(path)
    kind = sniff(path)
    if kind in ("missing", "special"):
        return safeio.stat_problem(path) or "an unreadable file"
    nouns = {**{f.kind: f.noun for f in FORMATS if f.noun}, **_TEXT_NOUNS}
    if path.is_dir():
        return nouns.get(kind, "a directory")
    size = path.stat().st_size
    if kind == "empty":
        return "an empty file (0 bytes)"
    if kind in nouns:
        return f"{nouns[kind]} ({size} bytes)"
    with safeio.open_regular(path, "file") as f:
        head = f.read(16)
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return f"{name} ({size} bytes)"
    return f"{size} bytes of unknown content starting {head[:8]!r}"


def as_text(head: bytes) -> str | None:
    """`head` decoded as UTF-8 if it is (almost all) printable text, else None."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.start < len(head) - 4:  # not just a multi-byte character cut at the end of the sample
            return None
        text = head[:err.start].decode("utf-8")
    printable = sum(ch.isprintable() or ch in "\t\r\n" for ch in text)
    return text if text and printable >= 0.95 * len(text) else None


def format_of(path: Path) -> str | None:
    """The format a file's suffix names, or None."""
    fmt = for_suffix(path)
    return fmt.name if fmt else None


def check_model_file(path: Path, fmt: str | None = None, what: str = "model") -> None:
    """Structural validation; `fmt` defaults to the format the file's extension names."""
    path = Path(path)
    fmt = fmt or format_of(path)
    label = f"{what} {str(path)!r}"
    known = find(fmt)
    if known is None:
        suffixes = sorted(s for f in FORMATS for s in f.suffixes)
        raise InputError(expected_received(label, f"one of {suffixes}", describe(path)))
    problem = safeio.stat_problem(path)
    if (problem != "a directory") if known.directory else (problem is not None):
        raise InputError(expected_received(label, known.expected, describe(path)))
    if not known.directory:
        safeio.check_regular(path, what, safeio.MAX_MODEL, label)
    kind = sniff(path)
    if kind != known.kind and not (known.loose_sniff and kind == "unknown"):
        raise InputError(expected_received(label, known.expected, describe(path)))
    known.check(path, label)
