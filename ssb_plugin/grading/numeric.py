"""Exact reading of plain numbers: integers, decimals, fractions, mixed numbers, scientific notation.

Returns a ``Fraction`` or ``None``. Bounded by construction: inputs over ``_MAX_LEN`` characters and
exponents over ``_MAX_EXP`` are refused (left to the time-boxed symbolic path), so a call costs
microseconds whatever it is given.
"""

from __future__ import annotations

import re
from fractions import Fraction

_MAX_LEN = 200
_MAX_EXP = 400

_DEC = r"(?:\d+(?:\.\d*)?|\.\d+)"
_SCI_RE = re.compile(
    rf"^([-+]?{_DEC})\s*(?:[eE]\s*([-+]?\d+)|(?:\\times|\\cdot|\*|x)\s*10\s*\^\s*(?:\{{\s*([-+]?\d+)\s*\}}|([-+]?\d)))?$"
)
_POW10_RE = re.compile(r"^([-+]?)10\s*\^\s*(?:\{\s*([-+]?\d+)\s*\}|([-+]?\d))$")
_FRAC_RE = re.compile(rf"^([-+]?)\s*\\frac\s*\{{\s*([-+]?{_DEC})\s*\}}\s*\{{\s*([-+]?{_DEC})\s*\}}$")
_SLASH_RE = re.compile(rf"^([-+]?{_DEC})\s*/\s*([-+]?{_DEC})$")
_REPEATING_RE = re.compile(r"^([-+]?)(\d*)\.(\d*)\\overline\{(\d+)\}$")
_MIXED_RE = re.compile(r"^([-+]?)(\d+)\s*(?:\\frac\s*\{\s*(\d+)\s*\}\s*\{\s*(\d+)\s*\}|\s(\d+)\s*/\s*(\d+))$")


def _dec(text: str) -> Fraction:
    return Fraction(text.replace(" ", ""))


def _sci(mantissa: str, exp: str) -> Fraction | None:
    e = int(exp)
    if abs(e) > _MAX_EXP:
        return None
    return _dec(mantissa) * Fraction(10) ** e


def parse_number(s: str) -> Fraction | None:
    """Exact value of ``s`` if it is a plain number in one of the usual spellings."""
    s = s.strip()
    if not s or len(s) > _MAX_LEN:
        return None
    if s.startswith("(") and s.endswith(")") and "," not in s:
        s = s[1:-1].strip()
    m = _SCI_RE.match(s)
    if m:
        exp = m.group(2) or m.group(3) or m.group(4)
        return _dec(m.group(1)) if exp is None else _sci(m.group(1), exp)
    m = _POW10_RE.match(s)
    if m:
        v = _sci("1", m.group(2) or m.group(3))
        return None if v is None else (-v if m.group(1) == "-" else v)
    m = _FRAC_RE.match(s)
    if m:
        num, den = _dec(m.group(2)), _dec(m.group(3))
        if den == 0:
            return None
        v = num / den
        return -v if m.group(1) == "-" else v
    m = _SLASH_RE.match(s)
    if m:
        num, den = _dec(m.group(1)), _dec(m.group(2))
        return None if den == 0 else num / den
    m = _REPEATING_RE.match(s)
    if m:
        # 0.1\overline{6} = 0.1666...: fixed part plus the repeating block over 9...9 shifted.
        sign, whole, fixed, rep = m.groups()
        v = Fraction(int(whole or "0")) + Fraction(int(fixed or "0"), 10 ** len(fixed))
        v += Fraction(int(rep), (10 ** len(rep) - 1) * 10 ** len(fixed))
        return -v if sign == "-" else v
    m = _MIXED_RE.match(s)
    if m:
        # Mixed number (MATH convention): 2\frac{1}{2} and "2 1/2" mean 2 + 1/2, when the fraction is proper.
        units = int(m.group(2))
        top, bottom = (int(m.group(3)), int(m.group(4))) if m.group(3) else (int(m.group(5)), int(m.group(6)))
        if bottom == 0 or top >= bottom:
            return None
        mixed = units + Fraction(top, bottom)
        return -mixed if m.group(1) == "-" else mixed
    return None


def is_decimal_spelling(s: str) -> bool:
    """True when ``s`` is written as a decimal (has a decimal point or an exponent): an approximation."""
    return bool(_SCI_RE.match(s.strip())) and any(c in s for c in ".eE")
