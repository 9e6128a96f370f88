"""Normalise, parse and compare two answers with a given leaf comparator (shared by both paths)."""

from __future__ import annotations

from .normalize import compact, normalize
from .structure import LeafEq, compare, parse


def compare_answers(pred: str, gold: str, leaf_eq: LeafEq) -> bool:
    p, g = normalize(pred), normalize(gold)
    if not p or not g:
        return False
    if compact(p) == compact(g):
        return True
    if _is_equation(p) and _is_equation(g) and leaf_eq(p, g):
        return True  # two equations: compare them whole before reading "y = ..." as a value
    return compare(parse(p), parse(g), leaf_eq)


def _is_equation(s: str) -> bool:
    return s.count("=") == 1 and "," not in s and "\\le" not in s and "\\ge" not in s
