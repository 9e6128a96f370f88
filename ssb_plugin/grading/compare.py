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
    return compare(parse(p), parse(g), leaf_eq)
