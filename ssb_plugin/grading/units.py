"""Units written against a plain number: ``5cm``, ``\\frac{3}{4}m``, ``12s``, ``60 km/h``.

A trailing unit symbol is dropped only when the other answer is a number without letters, so a
letter that could be a variable (``\\frac34 m`` against ``\\frac34 m``, ``5x`` against ``5``) is
never thrown away by guesswork: ``5x`` stays ``5x`` because ``x`` is no unit.
"""

from __future__ import annotations

import re

# SI, imperial, time, and the usual abbreviations in answers; longer spellings first.
_UNITS = (
    "km/h|m/s|mph|kph|kmh|cm|mm|km|nm|m|ms|s|sec|secs|min|mins|h|hr|hrs|kg|mg|g|ml|mL|l|L|ft|in|yd|mi"
    "|lb|lbs|oz|kW|W|kJ|J|N|Pa|V|A|Hz|rad|sr|cal|kcal|USD|EUR|dollars?|cents?|units?|degrees?"
)
_UNIT_RE = re.compile(
    rf"^(?P<value>.*?(?:[\d}}.)]|\\[a-zA-Z]+\s))\s*(?:{_UNITS})(?:\s*\^\s*\{{?[23]\}}?|[²³])?(?:\s*/\s*(?:{_UNITS}))?$"
)
_COMMAND_RE = re.compile(r"\\[a-zA-Z]+")
_LETTER_RE = re.compile(r"[a-zA-Z]")


def is_plain_value(s: str) -> bool:
    """No letters outside LaTeX commands: a number, a fraction, a radical, a multiple of pi."""
    return not _LETTER_RE.search(_COMMAND_RE.sub("", s))


def drop_unit(s: str) -> str:
    """``s`` without a trailing unit symbol, when what is left is a plain value; else ``s``."""
    m = _UNIT_RE.match(s.strip())
    if m is None:
        return s
    value = m.group("value").strip()
    return value if value and is_plain_value(value) else s


def align_units(pred: str, gold: str) -> tuple[str, str]:
    """Drop a unit from one side when the other is a plain value (see the module docstring)."""
    if is_plain_value(gold):
        pred = drop_unit(pred)
    if is_plain_value(pred):
        gold = drop_unit(gold)
    return pred, gold
