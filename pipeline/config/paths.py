"""Path fields of the config schemas, resolved in one place.

Every field that holds a file-system path is typed `ConfigPath` (a path) or `SourcePath` (a path, or a
built-in source such as `example:elpv`, kept as is). When a config is validated with a base directory
in the validation context (`Model.model_validate(raw, context={"base": DIR})`, which `load_config` and
`load_sweep` do with the file's own directory), each relative path is resolved against it and `~` is
expanded. No schema lists its path fields by hand, so a new path field cannot be forgotten: a field
that is a path is typed as one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, ValidationInfo

BUILTIN_PREFIX = "example:"


def resolve_path(value, info: ValidationInfo):
    """A relative path (str or Path) made absolute against `info.context["base"]`; other values pass."""
    base = (info.context or {}).get("base") if info is not None else None
    if not isinstance(value, (str, Path)) or (isinstance(value, str) and value.startswith(BUILTIN_PREFIX)):
        return value
    if "\x00" in str(value):  # no system call takes it: os.stat would raise a bare ValueError later
        raise ValueError(f"path {str(value)!r}: expected a path without a NUL byte. Received: a NUL byte at "
                         f"position {str(value).index(chr(0))}")
    try:
        p = Path(value).expanduser()
    except RuntimeError:  # "~someone/..." for a user this machine does not know
        raise ValueError(f"path {str(value)!r}: expected '~' or '~user' with a known home directory. "
                         f"Received: an unknown user {str(value).split('/')[0]!r}") from None
    if base is None or p.is_absolute():
        return str(p) if isinstance(value, str) else p
    resolved = Path(base) / p
    return str(resolved) if isinstance(value, str) else resolved


ConfigPath = Annotated[Path, BeforeValidator(resolve_path)]
SourcePath = Annotated[str, BeforeValidator(resolve_path)]
