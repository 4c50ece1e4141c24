"""YAML files (pipeline.yaml, sweep.yaml) read within limits, with bounded error messages.

Refused with a `ConfigError` before the document is built: a path that is not a regular file
(FIFO, device, link loop: `edgepipe.core.safeio`), a file over `MAX_BYTES`, text that is not
UTF-8 (a UTF-8 byte-order mark is accepted), more than `MAX_ALIASES` aliases (an alias bomb:
each alias may expand a whole subtree, and schema errors would print the expansion), nesting
deeper than `MAX_DEPTH`, or more than `MAX_EVENTS` parse events. The limits are checked on the
parser's event stream, which is iterative, so even the check cannot recurse or expand anything.
The document is built by `_Loader` (PyYAML's SafeLoader), which also refuses a key given twice in
one mapping (PyYAML keeps the last one silently: `threads: 2` ... `threads: 8` would run with 8)
and a scalar it cannot convert (an integer of more than 4300 digits is a ValueError in Python).
Every message that quotes input is cut to `MAX_QUOTE` characters (`bounded`).
"""

from __future__ import annotations

import reprlib
from pathlib import Path
from typing import Any

from edgepipe.core import safeio
from edgepipe.core.errors import ConfigError, EdgepipeError

MAX_BYTES = safeio.MAX_CONFIG
MAX_ALIASES = 100
MAX_DEPTH = 50
MAX_EVENTS = 200_000
MAX_QUOTE = 200

_repr = reprlib.Repr()
_repr.maxstring, _repr.maxother, _repr.maxlist, _repr.maxdict, _repr.maxlevel = 100, 100, 6, 6, 3


def bounded(value: Any) -> str:
    """repr(value) cut to a readable length, never expanding a deep or shared structure."""
    text = _repr.repr(value)
    return text if len(text) <= MAX_QUOTE else text[:MAX_QUOTE] + "..."


def load_yaml(path: str | Path, what: str) -> Any:
    """The document of a YAML file, or a ConfigError naming the file and the problem."""
    import yaml

    path = Path(path)
    problem = safeio.stat_problem(path)
    if problem is not None:
        raise ConfigError(f"{what}: expected an existing YAML file. Received: {str(path)!r} ({problem})")
    try:
        text = safeio.read_text(path, what, MAX_BYTES, bom="strip")
    except EdgepipeError as err:
        if "UTF-8" in str(err):
            from edgepipe.formats.inspect import describe

            raise ConfigError(f"{path}: expected UTF-8 YAML text. Received: {describe(path)}") from None
        raise ConfigError(str(err)) from None
    try:
        check_events(yaml.parse(text, Loader=yaml.SafeLoader), path)
        return yaml.load(text, Loader=_loader())  # noqa: S506 - a SafeLoader subclass
    except ValueError as err:  # a scalar Python cannot convert: an integer of more than 4300 digits
        raise ConfigError(f"{path}: expected YAML values Python can read. Received: "
                          f"{str(err)[:MAX_QUOTE]}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: expected valid UTF-8 YAML. Received a parse error: "
                          f"{str(err)[:MAX_QUOTE * 2]}") from None
    except RecursionError:  # belt and braces: the depth check runs first
        raise ConfigError(f"{path}: expected YAML nested at most {MAX_DEPTH} levels. Received: deeper") from None


_LOADER = None


def _loader():
    """SafeLoader that refuses a key repeated in one mapping, naming the key and both lines."""
    global _LOADER
    if _LOADER is not None:
        return _LOADER
    import yaml

    class _Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):  # the literal keys, before merge keys (<<: *base) join them
                seen: dict = {}
                for key_node, _ in node.value:
                    if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                        continue  # merged keys may be overridden; an unhashable key is refused by PyYAML
                    key = self.construct_object(key_node, deep=True)
                    line = key_node.start_mark.line + 1
                    if key in seen:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"expected each key once in a mapping. Received: {bounded(key)} on line "
                                        f"{seen[key]} and again on line {line}", key_node.start_mark)
                    seen[key] = line
            return super().construct_mapping(node, deep=deep)

    _LOADER = _Loader
    return _LOADER


def check_events(events, path: Path) -> None:
    import yaml

    aliases = depth = n = 0
    for ev in events:
        n += 1
        if n > MAX_EVENTS:
            raise ConfigError(f"{path}: expected at most {MAX_EVENTS} YAML nodes. Received: more")
        if isinstance(ev, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                raise ConfigError(f"{path}: expected at most {MAX_ALIASES} YAML aliases (*name). Received: more "
                                  "(an alias bomb expands each one)")
        elif isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise ConfigError(f"{path}: expected YAML nested at most {MAX_DEPTH} levels. Received: deeper")
        elif isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
