"""Sets of reals: an inequality in one unknown against an interval, a union or another condition.

Runs only inside the grading worker (imports sympy). ``2 < g(x) < 5``, ``1 \\le |t| \\le 3`` and
``x^2 < 4`` describe sets of reals; they equal a set written as intervals when the two agree at
probe points: every endpoint of the written set (exactly), just inside and outside each endpoint,
the points the condition's own constants suggest (``|x - a| < b`` turns at ``a \\pm b``), far out
on both sides and random points. A disagreement is a witness (not equal); agreement everywhere is
taken as equal, as the expression comparison does with its probe points. Solving the condition
exactly (``as_set``) is the fallback for sets the probes cannot read, being 10-100 times slower.
"""

from __future__ import annotations

import itertools
import random

import sympy
from sympy.core.function import AppliedUndef
from sympy.core.relational import Relational

_EPS = 1e-7
_RANDOM_PROBES = 24


def condition(v):
    """``(condition, unknown)`` for an inequality (or an and/or of them) in one unknown, else None."""
    # A Symbol is a Boolean too: only relations and their and/or combinations are conditions.
    if not isinstance(v, Relational | sympy.And | sympy.Or) or isinstance(v, sympy.Eq | sympy.Ne):
        return None
    unknowns = v.atoms(AppliedUndef) or v.free_symbols  # 2 < g(x) < 5 is a condition on g(x)
    if len(unknowns) != 1:
        return None
    x = sympy.Dummy("x", real=True)
    return v.xreplace({next(iter(unknowns)): x}), x


def _intervals(s) -> list[tuple] | None:
    """``s`` as ``(lo, hi, lo_closed, hi_closed)`` with sympy endpoints, or None if not that simple."""
    parts = s.args if isinstance(s, sympy.Union) else (s,)
    out = []
    for p in parts:
        if isinstance(p, sympy.Interval):
            out.append((p.start, p.end, not p.left_open, not p.right_open))
        elif isinstance(p, sympy.FiniteSet) and all(a.is_real for a in p.args):
            out.extend((a, a, True, True) for a in p.args)
        elif p is not sympy.S.EmptySet:
            return None
    return out


def _inside(value: float, intervals: list[tuple]) -> bool:
    # Compared as floats: sympy's Integer(-1) == -1.0 is False.
    for lo, hi, lo_c, hi_c in ((float(a), float(b), c, d) for a, b, c, d in intervals):
        above = value > lo or (lo_c and value == lo)
        below = value < hi or (hi_c and value == hi)
        if above and below:
            return True
    return False


def _probe_points(cond, intervals: list[tuple]) -> list[float]:
    ends = [float(e) for lo, hi, _, _ in intervals for e in (lo, hi) if e.is_finite]
    consts = {abs(float(n)) for n in cond.atoms(sympy.Number) if n.is_finite}
    turns = {s * a + t * b for a, b in itertools.product(consts, repeat=2) for s in (1, -1) for t in (1, -1)}
    points = set(turns) | {s * c for c in consts for s in (1, -1)}
    for e in ends + sorted(points):
        points.update((e - _EPS * (1 + abs(e)), e + _EPS * (1 + abs(e))))
    ordered = sorted(ends)
    points.update((a + b) / 2 for a, b in zip(ordered, ordered[1:], strict=False))
    span = max([abs(e) for e in ends] + [1.0])
    rng = random.Random(1234)
    points.update((-1e6, 1e6, -span - 1, span + 1))
    points.update(rng.uniform(-2 * span - 5, 2 * span + 5) for _ in range(_RANDOM_PROBES))
    return sorted(points)


def _probe_equal(cond, x, s) -> bool | None:
    intervals = _intervals(s)
    if intervals is None:
        return None
    f = sympy.lambdify(x, cond, modules=["math"])
    for end in {e for lo, hi, _, _ in intervals for e in (lo, hi) if e.is_finite}:  # exactly
        try:
            holds = bool(cond.subs(x, end))
        except TypeError:
            continue  # sympy cannot decide the relation there: the points around it still count
        if holds != _inside(float(end), intervals):
            return False
    for point in _probe_points(cond, intervals):
        try:
            if bool(f(point)) != _inside(point, intervals):
                return False
        except (ValueError, ZeroDivisionError, OverflowError, TypeError):
            continue  # outside the condition's domain
    return True


def sets_equal(a, b) -> bool | None:
    """Equal as sets of reals; None when neither side is a set-like condition against a set."""
    if not (isinstance(a, sympy.Set) or isinstance(b, sympy.Set)) and isinstance(a, Relational):
        return None  # two single relations: compared as relations by the caller
    ca, cb = condition(a), condition(b)
    if (ca is None and not isinstance(a, sympy.Set)) or (cb is None and not isinstance(b, sympy.Set)):
        return None
    try:
        if ca is not None and isinstance(b, sympy.Set):
            probed = _probe_equal(ca[0], ca[1], b)
        elif cb is not None and isinstance(a, sympy.Set):
            probed = _probe_equal(cb[0], cb[1], a)
        else:
            probed = None
        if probed is not None:
            return probed
        sa = a if ca is None else ca[0].as_set()
        sb = b if cb is None else cb[0].as_set()
        return bool(sa == sb or sa.symmetric_difference(sb) == sympy.S.EmptySet)
    except Exception:
        return False


def warm() -> None:
    """lambdify and the set classes cost a first call: done while the worker is idle."""
    x = sympy.Symbol("x", real=True)
    try:
        sets_equal(sympy.And(1 <= sympy.Abs(x), sympy.Abs(x) <= 3), sympy.Interval(1, 3))
    except Exception:
        pass
