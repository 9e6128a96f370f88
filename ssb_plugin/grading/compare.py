"""Normalise, parse and compare two answers with a given leaf comparator (shared by both paths)."""

from __future__ import annotations

import re

from .normalize import compact, normalize
from .structure import LeafEq, compare, parse
from .units import align_units

_INEQUALITY_RE = re.compile(r"\\le(?![a-zA-Z])|\\ge(?![a-zA-Z])|<|>")
_RELATION_RE = re.compile(r"\\le(?![a-zA-Z])|\\ge(?![a-zA-Z])|\\ne(?![a-zA-Z])|<|>|=")


def compare_answers(pred: str, gold: str, leaf_eq: LeafEq) -> bool:
    p, g = align_units(normalize(pred), normalize(gold))
    if not p or not g:
        return False
    if compact(p) == compact(g):
        return True
    if compare(parse(p), parse(g), leaf_eq):
        return True
    # Two relations the tree did not match ("y = ..." read as a value, "x < 1" as an interval) are
    # compared whole: 2x - y + 3 = 0 vs y = 2x + 3, -x > -1 vs x < 1.
    if _is_relation(p) and _is_relation(g):
        return leaf_eq(p, g)
    # An inequality the tree could not read (2 < g(x) < 5, 1 \le |t| \le 3, x^2 < 4) against a set
    # of reals is compared as the set it describes (the symbolic path solves it).
    return (_is_inequality(p) or _is_inequality(g)) and leaf_eq(p, g)


def _is_inequality(s: str) -> bool:
    return bool(_INEQUALITY_RE.search(s))


def _is_relation(s: str) -> bool:
    if "," in s or "\\cup" in s or "\\in" in s:
        return False
    return len(_RELATION_RE.findall(s)) == 1


def balanced(s: str) -> bool:
    """Brackets pair up (interval brackets may pair "(" with "]", so they are counted together)."""
    return s.count("{") == s.count("}") and s.count("(") + s.count("[") == s.count(")") + s.count("]")
