"""In-process comparison of two scalar answers: same spelling, exact numbers, text, choice letters.

Everything here is bounded by construction (short regexes on short strings, ``Fraction`` arithmetic
with capped exponents). What it cannot decide it hands on by raising ``NeedSymbolic``.

Conventions (documented in docs/grading.md):
- numbers compare by exact value (``0.5 == \\frac12 == 1/2``; ``2\\frac{1}{2}`` is the mixed number);
- a decimal stands for a non-terminating value (``1/3``, ``\\pi``) only with >= 6 decimal places
  that agree with it, rounded or truncated (MATH golds are exact; ``0.33`` is not ``\\frac13``);
- ``%`` may be dropped (``25\\%`` == ``25``) or applied (``25\\%`` == ``0.25``) when one side has it;
- ``°`` may be dropped (``30^\\circ`` == ``30``); radians are checked by the symbolic path.
"""

from __future__ import annotations

import re
from fractions import Fraction

from .normalize import compact
from .numeric import is_decimal_spelling, parse_number
from .structure import NeedSymbolic

APPROX_MIN_DECIMALS = 6

_CHOICE_RE = re.compile(r"^\(?([A-J])\)?$")
_CHOICE_PRED_RE = re.compile(r"^\(?([A-Ja-j])\)(?:\s|$)|^([A-Ja-j])$|^([A-J])[.:]\s")
_CHOICE_WITH_VALUE_RE = re.compile(r"^\(([A-J])\)\s+\S")
_LATEX_CMD_RE = re.compile(r"\\[a-zA-Z]+")
_ENV_NAME_RE = re.compile(r"\\(?:begin|end)\{[a-zA-Z*]*\}")
_WORD_RE = re.compile(r"[a-zA-Z]{3,}")
_MATH_NAMES = frozenset(
    "sin cos tan cot sec csc arcsin arccos arctan sinh cosh tanh log ln exp sqrt frac pi infty "
    "max min gcd lcm det mod bmod pmod deg cis".split()
)
_TEXT_PUNCT_RE = re.compile(r"[^a-z0-9]+")


def split_marker(s: str) -> tuple[str, bool, bool]:
    """``s`` without trailing ``%`` / ``°`` markers, and whether each was there."""
    s = s.strip()
    pct = deg = False
    while s.endswith(("%", "°")):
        if s.endswith("%"):
            pct = True
        else:
            deg = True
        s = s[:-1].rstrip()
    return s, pct, deg


def _terminates(v: Fraction) -> bool:
    d = v.denominator
    for f in (2, 5):
        while d % f == 0:
            d //= f
    return d == 1


def approx_ok(pred_text: str, pred: Fraction, gold_text: str, gold: Fraction) -> bool:
    """A decimal ``pred`` standing for a gold whose exact value has no short decimal form."""
    if not is_decimal_spelling(pred_text) or is_decimal_spelling(gold_text) or _terminates(gold):
        return False
    decimals = len(pred_text.split(".")[1]) if "." in pred_text else 0
    if decimals < APPROX_MIN_DECIMALS or "e" in pred_text.lower():
        return False
    return abs(pred - gold) < Fraction(1, 10**decimals)


def numbers_equal(p_text: str, p: Fraction, p_pct: bool, g_text: str, g: Fraction, g_pct: bool) -> bool:
    candidates = [p]
    if p_pct and not g_pct:
        candidates.append(p / 100)
    if g_pct and not p_pct:
        candidates.append(p * 100)
    return any(c == g for c in candidates) or approx_ok(p_text, p, g_text, g)


def is_text(s: str) -> bool:
    """Prose rather than mathematics: a word of 3+ letters that is not a function name."""
    bare = _LATEX_CMD_RE.sub(" ", _ENV_NAME_RE.sub(" ", s))  # \begin{pmatrix} names no text
    return any(w.lower() not in _MATH_NAMES for w in _WORD_RE.findall(bare))


def _text_key(s: str) -> str:
    return _TEXT_PUNCT_RE.sub(" ", _LATEX_CMD_RE.sub(" ", s).lower()).strip()


def _gold_choice(gold: str) -> str | None:
    """The letter of a multiple-choice gold: ``C``, ``(C)``, or ``(C) 12`` (letter and value)."""
    gold = gold.strip()
    if _CHOICE_RE.match(gold):
        return gold.strip("()")
    m = _CHOICE_WITH_VALUE_RE.match(gold)
    return m.group(1) if m else None


def choice_letter(s: str) -> str | None:
    m = _CHOICE_PRED_RE.match(s.strip())
    if m is None:
        return None
    return next(g for g in m.groups() if g).upper()


def fast_leaf_equal(pred: str, gold: str) -> bool:
    """Exact in-process decision, or ``NeedSymbolic``."""
    if compact(pred) == compact(gold):
        return True
    p_core, p_pct, _ = split_marker(pred)
    g_core, g_pct, _ = split_marker(gold)
    if compact(p_core) == compact(g_core) and p_core:
        return True
    g_letter = _gold_choice(g_core)
    if g_letter is not None:
        letter = choice_letter(p_core)
        if letter is not None:
            return letter == g_letter
    pv, gv = parse_number(p_core), parse_number(g_core)
    if pv is not None and gv is not None:
        return numbers_equal(p_core, pv, p_pct, g_core, gv, g_pct)
    if is_text(g_core) or is_text(p_core):
        if is_text(g_core) and is_text(p_core):
            return _text_key(p_core) == _text_key(g_core)
        # Prose against a number: a number is never equal to a sentence.
        if pv is not None or gv is not None:
            return False
    raise NeedSymbolic
