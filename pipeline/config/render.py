"""A config as a commented pipeline.yaml: `render(raw, comments, header)`.

`raw` is the mapping a config is validated from (as `parse_config` takes it); `comments` maps a dotted
key ("input.size", "targets.0") to the comment written after it. Top-level sections and mappings that
hold containers are blocks; scalars, lists and the other mappings are one line in YAML's flow style;
a list of mappings (the targets) is one flow mapping per line. What `edgepipe run MODEL --data DIR`
and `edgepipe init` write, and what they check loads back to the same config.
"""

from __future__ import annotations

from typing import Any

COMMENT_COLUMN = 44


def flow(value: Any) -> str:
    """`value` as one line of YAML (flow style; strings quoted only when YAML needs it)."""
    import yaml

    if isinstance(value, (dict, list, tuple)):
        value = list(value) if isinstance(value, tuple) else value
        return yaml.safe_dump(value, default_flow_style=True, width=1 << 30, sort_keys=False,
                              allow_unicode=True).strip()
    return yaml.safe_dump([value], default_flow_style=True, width=1 << 30, allow_unicode=True).strip()[1:-1]


def _line(pad: str, text: str, comment: str | None) -> str:
    line = pad + text
    return f"{line.ljust(COMMENT_COLUMN - 1)} # {comment}" if comment else line


def _emit(mapping: dict, comments: dict[str, str], path: str, depth: int) -> list[str]:
    pad, out = "  " * depth, []
    for key, value in mapping.items():
        where = f"{path}{key}"
        comment = comments.get(where)
        block = depth == 0 or any(isinstance(v, (dict, list)) for v in value.values()) if isinstance(value, dict) \
            else False
        if value and block:
            out.append(_line(pad, f"{key}:", comment))
            out += _emit(value, comments, where + ".", depth + 1)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            out.append(_line(pad, f"{key}:", comment))
            out += [_line(pad + "  ", f"- {flow(item)}", comments.get(f"{where}.{i}")) for i, item in enumerate(value)]
        else:
            out.append(_line(pad, f"{key}: {flow(value)}", comment))
    return out


def render(raw: dict, comments: dict[str, str] | None = None, header: list[str] = ()) -> str:
    lines = [f"# {h}" if h else "#" for h in header]
    return "\n".join([*lines, *_emit(raw, comments or {}, "", 0)]) + "\n"
