"""Output encoding: one escaping helper per medium a user-supplied string can reach.

Class labels, file and folder names, model, target and board names, and error messages that
quote them are escaped at the point they are emitted:

    html(s)          report.html: &, <, >, quotes as entities; control characters as U+FFFD
    markdown(s)      model-card bodies (rendered by model hubs): Markdown and inline-HTML
                     punctuation backslash-escaped or as entities, line breaks as spaces
    markdown_code(s) an inline code span: a backtick fence longer than any run inside it
    front_matter(d)  YAML front matter: safe_dump, with every string that holds a line break or
                     a non-printable character double-quoted (escaped), and the result checked to
                     hold no document marker ('---' / '...') of its own
    json_text(o)     JSON files: the json module escapes every string (edgepipe.core.jsonio.dumps)
    terminal(s)      the terminal (rich): ANSI/VT escape sequences and other control characters
                     removed or shown as \\xNN (so are a file name's bytes that are not UTF-8), bidirectional
                     overrides dropped, rich markup escaped
"""

from __future__ import annotations

import html as _html
import re

from edgepipe.core.jsonio import dumps

# C0 controls except tab/newline, DEL, C1 controls
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# ESC/CSI sequences (colour, cursor movement, OSC titles and hyperlinks), also the 8-bit CSI/OSC forms
_ANSI = re.compile(r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]|(?:\x1b\]|\x9d).*?(?:\x07|\x1b\\|\x9c)|\x1b[@-Z\\-_]")
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")
_SURROGATE = re.compile("[\ud800-\udfff]")  # a file name's undecodable byte (surrogateescape): \udce9 is byte 0xe9
_MD_SPECIAL = re.compile(r"([\\`*_\[\]#|~])")  # the rest only matters at a line start (below)
_MD_LEADING = re.compile(r"^(\s*)([-+=>]|\d+[.)])")


def _text(value) -> str:
    return value if isinstance(value, str) else str(value)


def html(value) -> str:
    return _html.escape(_CONTROL.sub("\ufffd", _text(value)), quote=True)


def markdown(value) -> str:
    """Text for a Markdown body: no markup, no inline HTML, no line break that starts a block."""
    text = _CONTROL.sub("\ufffd", _BIDI.sub("", _text(value)))
    text = re.sub(r"[\r\n\u2028\u2029\x85]+", " ", text)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return _MD_LEADING.sub(lambda m: m.group(1) + "\\" + m.group(2), text)


def markdown_code(value) -> str:
    """An inline code span holding `value` verbatim (fenced by more backticks than any run inside)."""
    text = re.sub(r"[\r\n\u2028\u2029\x85]+", " ", _CONTROL.sub("\ufffd", _BIDI.sub("", _text(value))))
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or longest else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _needs_quotes(s: str) -> bool:
    return any(not (ch.isprintable() or ch == " ") for ch in s) or bool(_BIDI.search(s))


def front_matter(data: dict) -> str:
    """`data` as the YAML between a model card's two '---' lines (without them)."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper, value):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"' if _needs_quotes(value) else None)

    Dumper.add_representer(str, text)
    out = yaml.dump(data, Dumper=Dumper, sort_keys=False, allow_unicode=True).rstrip()
    bad = [ln for ln in out.splitlines() if ln.rstrip() in ("---", "...") or ln.startswith(("--- ", "... "))]
    if bad:  # cannot happen with the quoting above; never emit a card whose front matter ends early
        raise ValueError(f"front matter: a line {bad[0]!r} would end the YAML block")
    return out


def json_text(obj) -> str:
    return dumps(obj)


def terminal(value, markup: bool = True) -> str:
    """Text safe for the terminal: no escape sequences, no control characters (shown as \\xNN), no
    bidirectional overrides; with `markup` (printing through rich) rich markup escaped too."""
    text = _ANSI.sub("", _text(value))
    text = _BIDI.sub("", text)
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    text = text.replace("\r", "\\r")
    # a path with bytes that are not UTF-8 (Python holds them as lone surrogates) is shown as \xNN: written raw, the
    # output was not UTF-8 any more (or a UnicodeEncodeError under a strict stdout)
    text = _SURROGATE.sub(lambda m: f"\\x{ord(m.group()) - 0xdc00:02x}" if ord(m.group()) >= 0xdc80 else "\ufffd",
                          text)
    if not markup:
        return text
    from rich.markup import escape as rich_escape

    return rich_escape(text)
