"""JSON files written atomically: through a marked temporary folder beside the file, then one
`os.replace` (never a half-written file; a killed write leaves only a folder edgepipe can prove is
its own, see edgepipe.core.tempdirs)."""

from __future__ import annotations

import json
from pathlib import Path

from edgepipe.core.tempdirs import atomic_write_text


def dumps(obj) -> str:
    """The one JSON encoder for edgepipe's files: every string escaped by the json module (control
    characters as \\u escapes), anything else as its str()."""
    return json.dumps(obj, indent=2, default=str)


def write_json(path: Path, obj) -> None:
    atomic_write_text(Path(path), dumps(obj))
