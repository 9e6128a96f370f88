"""Normalise, parse and compare two answers with a given leaf comparator (shared by both paths)."""

from __future__ import annotations

import re

from .clock import clock_times_differ
from .normalize import compact, normalize
from .structure import IN_RE, LeafEq, compare, equation_head, parse
from .units import align_units

# d,dd / dddd,dd / 0,ddd: not a thousands grouping (that needs 1-3 digits, not 0, then groups of 3).
_DECIMAL_COMMA_RE = re.compile(r"^-?(?:\d+,\d{1,2}|\d+,\d{4,}|\d{4,},\d+|0,\d+)$")
_PLAIN_NUMBER_RE = re.compile(r"^-?\d*\.?\d+$")
_INEQUALITY_RE = re.compile(r"\\le(?![a-zA-Z])|\\ge(?![a-zA-Z])|<|>")
_RELATION_RE = re.compile(r"\\le(?![a-zA-Z])|\\ge(?![a-zA-Z])|\\ne(?![a-zA-Z])|<|>|=")


def compare_answers(pred: str, gold: str, leaf_eq: LeafEq) -> bool:
    times = clock_times_differ(pred, gold)
    if times is not None:
        return not times  # 2:30 against 12:30 are two times of day, not two ratios
    p, g = align_decimal_comma(*align_units(normalize(pred), normalize(gold)))
    if not p or not g:
        return False
    if compact(p) == compact(g):
        return True
    if _heads_differ(p, g):
        return False  # tan(x) = 3/7 and cot(x) = 3/7 state the same value of different things
    pt, gt = parse(p), parse(g)
    if compare(pt, gt, leaf_eq):
        return True
    if _matrix_expression(pt) or _matrix_expression(gt):
        return leaf_eq(p, g)  # A + B against the matrix it makes: compared as values
    # Two relations the tree did not match ("y = ..." read as a value, "x < 1" as an interval) are
    # compared whole: 2x - y + 3 = 0 vs y = 2x + 3, -x > -1 vs x < 1.
    if _is_relation(p) and _is_relation(g):
        return leaf_eq(p, g)
    # An inequality the tree could not read (2 < g(x) < 5, 1 \le |t| \le 3, x^2 < 4) against a set
    # of reals is compared as the set it describes (the symbolic path solves it).
    if not (_is_inequality(p) or _is_inequality(g)):
        return False
    return leaf_eq(IN_RE.sub("", p, count=1), IN_RE.sub("", g, count=1))  # z \in S is S


def align_decimal_comma(p: str, g: str) -> tuple[str, str]:
    """``1,22`` against the number ``1.22``: a comma that cannot group thousands is a decimal comma."""
    if _DECIMAL_COMMA_RE.match(p) and _PLAIN_NUMBER_RE.match(g):
        p = p.replace(",", ".")
    elif _DECIMAL_COMMA_RE.match(g) and _PLAIN_NUMBER_RE.match(p):
        g = g.replace(",", ".")
    return p, g


def _heads_differ(p: str, g: str) -> bool:
    """Both answers are equations about a named function (``\\tan(x) = ...``), not the same one."""
    hp, hg = equation_head(p), equation_head(g)
    return hp is not None and hg is not None and hp != hg


def _matrix_expression(node) -> bool:
    return node.kind == "leaf" and "matrix}" in node.text


def _is_inequality(s: str) -> bool:
    return bool(_INEQUALITY_RE.search(s))


def _is_relation(s: str) -> bool:
    if "," in s or "\\cup" in s or "\\in" in s:
        return False
    return len(_RELATION_RE.findall(s)) == 1


def balanced(s: str) -> bool:
    """Brackets pair up (interval brackets may pair "(" with "]", so they are counted together)."""
    return s.count("{") == s.count("}") and s.count("(") + s.count("[") == s.count(")") + s.count("]")
