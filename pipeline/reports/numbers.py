"""One number formatter for every renderer (terminal, HTML and its charts, model card, leaderboard).

Renderers never format a number themselves (no `format()`, no `{x:.2f}`): they call `fmt` (text),
`fmt_range` (an interval), `tick` (an axis label), `coord` (an SVG coordinate), or `rounded` /
`significant` (numbers written into YAML or JSON). `tests/test_rows_and_numbers.py` checks that.
"""

from __future__ import annotations

MISSING = "—"


def fmt(value, spec: str, missing: str = MISSING) -> str:
    """`value` formatted with `spec` (a format spec: ".4f", "+.2f", "g", "d"); `missing` when it was
    not measured (None); a value the spec does not fit (a string where a number was expected) as is."""
    if value is None:
        return missing
    try:
        return format(value, spec)
    except (TypeError, ValueError):
        return str(value)


def fmt_range(pair, spec: str, sep: str = "..", missing: str = MISSING) -> str:
    """An interval `(lo, hi)` as "lo..hi" (each with `spec`); `missing` when there is none."""
    if not pair:
        return missing
    lo, hi = pair
    return f"{fmt(lo, spec)}{sep}{fmt(hi, spec)}"


def tick(value: float) -> str:
    """An axis label: short, in scientific notation only for magnitudes below 0.01."""
    return fmt(value, "g") if abs(value) >= 0.01 or value == 0 else fmt(value, ".1e")


def coord(value: float) -> str:
    """An SVG coordinate: one decimal."""
    return fmt(value, ".1f")


def rounded(value, ndigits: int = 4) -> float | None:
    """A measured number rounded for a machine-readable output (model card front matter); None stays None."""
    return None if value is None else round(float(value), ndigits)


def significant(value, digits: int = 3) -> float:
    """A number kept to `digits` significant digits (e.g. a tiny max |diff|)."""
    return float(fmt(value, f".{digits}g"))
