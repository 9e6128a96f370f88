"""Times of day: ``2:30``, ``02:30``, ``4:05 p.m.``, ``\\text{3:45 PM}``, ``11{:}20``.

An answer ``H:MM`` (minutes written with two digits, below 60) on both sides is a time of day, not a
ratio, so ``2:30`` is not ``1:15``. Hours compare as written, except that ``a.m.``/``p.m.`` on one
side is read against the other's: ``4:05 p.m.`` is ``16:05`` and also the bare ``4:05``, but not
``14:05``.
"""

from __future__ import annotations

import re

_WRAPPER_RE = re.compile(r"\\(?:text|mathrm|textrm|mbox|textnormal)\s*\{([^{}]*)\}")
_NOISE_RE = re.compile(r"\\[,;!: ]|~|\$")
_CLOCK_RE = re.compile(
    r"^(\d{1,2})\s*(?:\{:\}|:)\s*(\d{2})(?:\s*([ap])\.?\s*m\.?)?(?:\s*\\?\.)?$",
    re.IGNORECASE,
)


def _clock(s: str) -> tuple[int, int, str] | None:
    """``(hour, minute, "a" | "p" | "")`` of an answer that is only a time of day."""
    t = _NOISE_RE.sub(" ", _WRAPPER_RE.sub(r"\1", s)).strip()
    m = _CLOCK_RE.match(t)
    if m is None:
        return None
    hour, minute = int(m.group(1)), int(m.group(2))
    half = (m.group(3) or "").lower()
    if minute >= 60 or hour > 24 or (half and not 1 <= hour <= 12):
        return None
    return hour, minute, half


def _hour24(hour: int, half: str) -> int:
    return hour % 12 + (12 if half == "p" else 0)


def clock_times_differ(pred: str, gold: str) -> bool | None:
    """``None`` unless both answers are times of day; else whether they name different times."""
    a, b = _clock(pred), _clock(gold)
    if a is None or b is None:
        return None
    if a[1] != b[1]:
        return True
    if bool(a[2]) == bool(b[2]):  # both plain (as written) or both with a.m./p.m.
        return (_hour24(a[0], a[2]) if a[2] else a[0]) != (_hour24(b[0], b[2]) if b[2] else b[0])
    (h12, half), plain = ((a[0], a[2]), b[0]) if a[2] else ((b[0], b[2]), a[0])
    h24 = _hour24(h12, half)
    if plain > 12 or plain == 0:  # a 24-hour reading: 4 p.m. is 16, not 14
        return h24 != plain
    return h24 % 12 != plain % 12
