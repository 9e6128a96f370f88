"""Symbolic comparison of two scalar answers with sympy (runs only inside the grading worker).

LaTeX is parsed with latex2sympy2_extended (ANTLR 4.9-4.13); plain-text maths (``sqrt(2)/2``)
falls back to sympy's ``parse_expr``. Two parsed values are equal when they are structurally
equal, when constants agree numerically to 1e-12 relative, or when expressions with free symbols
agree at random probe points (then confirmed by ``simplify`` if the probes were inconclusive).
Equations compare as ``lhs - rhs`` up to a non-zero constant factor.
"""

from __future__ import annotations

import math
import random
import re

import sympy
from latex2sympy2_extended.latex2sympy2 import ConversionConfig, latex2sympy
from latex2sympy2_extended.math_normalization import NormalizationConfig
from sympy.core.relational import Relational
from sympy.parsing.sympy_parser import (
    convert_xor,
    implicit_multiplication,
    implicit_multiplication_application,
    parse_expr,
    standard_transformations,
)

from .fastlatex import translate
from .leaves import APPROX_MIN_DECIMALS, fast_leaf_equal, split_marker
from .realsets import sets_equal
from .structure import NeedSymbolic

_NORM = NormalizationConfig(
    basic_latex=True, units=True, malformed_operators=True, nits=True, boxed="none", equations=False
)
_CONV = ConversionConfig(interpret_as_mixed_fractions=True, lowercase_symbols=False)
_TRANSFORMS = standard_transformations + (implicit_multiplication_application, convert_xor)
_FAST_TRANSFORMS = standard_transformations + (implicit_multiplication,)
_GLOBALS: dict = {}
exec("from sympy import *", _GLOBALS)  # noqa: S102 - parse_expr's usual namespace, built once
_PLAIN_RE = re.compile(r"^[0-9a-zA-Z_+\-*/^().\s]+$")
_PLAIN_FUNC_RE = re.compile(
    r"\b(?:sqrt|sin|cos|tan|cot|sec|csc|arcsin|arccos|arctan|log|ln|exp|abs)\s*\(|\*\*"
)
_FLOAT_DIGITS_RE = re.compile(r"\d*\.\d+|\d+\.\d*")
_I = sympy.Symbol("i")
_REL_TOL = sympy.Float("1e-12")
_PROBES = 5
_MAX_EXPR_OPS = 400


def _parse_plain(text: str):
    # log without a base is base 10, as latex2sympy reads \\log; ln is natural.
    local = {
        "e": sympy.E,
        "i": sympy.I,
        "pi": sympy.pi,
        "ln": sympy.log,
        "arcsin": sympy.asin,
        "arccos": sympy.acos,
        "arctan": sympy.atan,
        "log": lambda a, b=10: sympy.log(a, b),
    }
    return parse_expr(text, local_dict=local, transformations=_TRANSFORMS, evaluate=False)


def _fast_parse(text: str):
    """Simple expressions through the fast translator (see fastlatex), or None."""
    translated = translate(text)
    if translated is None:
        return None
    src, letters = translated
    local = {f"_v_{c}": sympy.Symbol(c) for c in letters}
    local.update(_v_i=sympy.I, _v_e=sympy.E, pi=sympy.pi, sqrt=sympy.sqrt, root=sympy.root)
    try:
        return parse_expr(src, local_dict=local, global_dict=_GLOBALS, transformations=_FAST_TRANSFORMS)
    except Exception:
        return None


_CACHE: dict[str, sympy.Basic] = {}
_CACHE_SIZE = 4096


def to_sympy(text: str):
    """sympy value of a LaTeX (or plain) scalar answer; raises on failure.

    Cached: a gold is usually compared with several answers (k rollouts per problem).
    """
    cached = _CACHE.get(text)
    if cached is not None:
        return cached
    value = _to_sympy(text)
    if isinstance(value, sympy.Basic):  # immutable; matrices from latex2sympy are mutable
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.clear()
        _CACHE[text] = value
    return value


def _to_sympy(text: str):
    fast = _fast_parse(text)
    if fast is not None:
        return fast
    if _PLAIN_RE.match(text) and "**" in text:
        # Python-style powers (x**2): not LaTeX at all.
        try:
            return _parse_plain(text)
        except Exception:
            pass
    try:
        value = latex2sympy(text, normalization_config=_NORM, conversion_config=_CONV)
    except Exception:
        if not _PLAIN_RE.match(text):
            raise
        value = _parse_plain(text)
    if isinstance(value, sympy.MatrixExpr):
        value = value.doit()  # A + B, A B: the matrix they make
    if isinstance(value, sympy.Basic) and _I in value.free_symbols:
        value = value.subs(_I, sympy.I)  # MATH writes the imaginary unit as i
    return value


def _numeric(expr) -> complex | None:
    try:
        v = sympy.N(expr, 30)
    except Exception:
        return None
    if not v.is_number or v.has(sympy.zoo, sympy.nan):
        return None
    return v


def _close(a, b) -> bool:
    if not (a.is_finite and b.is_finite):
        return bool(a == b)
    diff = abs(a - b)
    scale = max(abs(a), abs(b), sympy.Integer(1))
    return bool(diff <= _REL_TOL * scale)


def _has_float(expr) -> bool:
    return isinstance(expr, sympy.Basic) and expr.has(sympy.Float)


def _approx_ok(pred_text: str, p, g) -> bool:
    """A decimal approximation of an exact irrational gold: >= 6 decimal places that agree."""
    m = _FLOAT_DIGITS_RE.search(pred_text)
    if m is None or _FLOAT_DIGITS_RE.search(pred_text[m.end() :]):
        return False
    decimals = len(m.group(0).split(".")[1])
    if decimals < APPROX_MIN_DECIMALS:
        return False
    try:
        return bool(abs(p - g) < sympy.Rational(1, 10**decimals))
    except Exception:
        return False


def _probe_equal(a, b) -> bool | None:
    """Compare at random points: True/False when the probes decide, None when they can't.

    Variables are probed at positive reals (MATH answers' variables are lengths, counts, ...), so
    sqrt(x^2) = x; with an absolute value on either side, negative points are probed too.
    """
    syms = sorted(a.free_symbols | b.free_symbols, key=str)
    rng = random.Random(1234)
    signed = a.has(sympy.Abs) or b.has(sympy.Abs)
    decided = 0
    for k in range(_PROBES + (2 if signed else 0)):
        sign = -1 if signed and k >= _PROBES else 1
        point = {s: sympy.Float(sign * rng.uniform(0.3, 2.9), 30) for s in syms}
        try:
            va, vb = _numeric(a.subs(point)), _numeric(b.subs(point))
        except Exception:
            continue
        if va is None or vb is None:
            continue
        if not _close(va, vb):
            return False
        decided += 1
    return True if decided >= 3 else None


def _exprs_equal(a, b, pred_text: str) -> bool:
    if a == b:
        return True
    as_sets = sets_equal(a, b)
    if as_sets is not None:
        return as_sets
    if isinstance(a, Relational) or isinstance(b, Relational):
        return _relations_equal(a, b, pred_text)
    if isinstance(a, sympy.MatrixBase) or isinstance(b, sympy.MatrixBase):
        if not (isinstance(a, sympy.MatrixBase) and isinstance(b, sympy.MatrixBase)) or a.shape != b.shape:
            return False
        return all(_exprs_equal(x, y, "") for x, y in zip(a, b, strict=True))
    if not isinstance(a, sympy.Expr) or not isinstance(b, sympy.Expr):
        try:
            return bool(a == b) or bool(sympy.simplify(a) == sympy.simplify(b))
        except Exception:
            return False
    if a.count_ops() > _MAX_EXPR_OPS or b.count_ops() > _MAX_EXPR_OPS:
        return False
    if not a.free_symbols and not b.free_symbols:
        try:
            diff = a - b  # sympy cancels like terms: 10^{10^{10}} + 1 - 10^{10^{10}} is exactly 1
            if diff.is_Rational:
                return bool(diff == 0)
        except Exception:
            pass
        va, vb = _numeric(a), _numeric(b)
        if va is None or vb is None:
            return False
        if _has_float(a) and not _has_float(b):
            # An approximation matches only under the approximate-decimal convention.
            return _close(va, vb) or _approx_ok(pred_text, va, vb)
        return _close(va, vb)
    probed = _probe_equal(a, b)
    if probed is not None:
        return probed
    try:
        return sympy.simplify(a - b) == 0
    except Exception:
        return False


def _relations_equal(a, b, pred_text: str) -> bool:
    if not (isinstance(a, Relational) and isinstance(b, Relational)):
        return False
    if type(a) is not type(b):
        if a.reversed.__class__ is type(b):
            a = a.reversed
        else:
            return False
    da, db = a.lhs - a.rhs, b.lhs - b.rhs
    if isinstance(a, sympy.Eq):
        # Same solution set: lhs - rhs proportional (x = 2y and 2y - x = 0).
        try:
            probed = _proportional_at_probes(da, db)
            if probed is not None:
                return probed
            if sympy.simplify(da - db) == 0 or sympy.simplify(da + db) == 0:
                return True
            ratio = sympy.simplify(da / db)
            return bool(ratio.is_number and ratio != 0)
        except Exception:
            return False
    return _exprs_equal(da, db, pred_text)


def _proportional_at_probes(a, b) -> bool | None:
    """``a = c * b`` for one non-zero constant c, judged at random points (None: undecided).

    ``simplify`` on both forms costs seconds on a loaded machine; float ratios at a few points do not.
    """
    syms = sorted(a.free_symbols | b.free_symbols, key=str)
    if not syms:
        return None
    fa, fb = sympy.lambdify(syms, a, "math"), sympy.lambdify(syms, b, "math")
    rng = random.Random(4321)
    ratios = []
    for _ in range(_PROBES + 2):
        point = [rng.uniform(0.3, 2.9) for _ in syms]
        try:
            va, vb = float(fa(*point)), float(fb(*point))
        except (ValueError, ZeroDivisionError, OverflowError, TypeError):
            continue
        if vb != 0 and math.isfinite(va) and math.isfinite(vb):
            ratios.append(va / vb)
    if len(ratios) < 3:
        return None
    first = ratios[0]
    return first != 0 and all(abs(r - first) <= 1e-9 * max(1.0, abs(first)) for r in ratios[1:])


# Parsed once at worker start-up: ANTLR builds its prediction cache (DFA) lazily, so the first
# parses of each construct are several times slower than later ones.
WARMUP = [
    "\\frac{\\sqrt{3}}{2}",
    "x^{2}+2x+1",
    "\\sin^2 x + \\cos(2\\theta)",
    "\\log_{2} 8",
    "\\ln(x)",
    "y = 2x + 3",
    "x \\le 3",
    "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}",
    "3+4i",
    "e^{i\\pi}",
    "\\sqrt[3]{2}",
    "\\binom{5}{2}",
    "5!",
    "|x-1|",
    "\\tan^{-1}(1)",
    "2\\cdot 10^{3}",
    "\\frac{a}{b}c",
    "\\csc^2 y",
    "1 \\le |t| \\le 3",
    "[-3,-1] \\cup [1,3]",
    "2 < g(x) < 5",
    "\\{-17, 17\\}",
]


def warm_one(text: str) -> None:
    try:
        latex2sympy(text, normalization_config=_NORM, conversion_config=_CONV)
    except Exception:
        pass


def symbolic_leaf_equal(pred: str, gold: str) -> bool:
    """Full comparison of two normalised scalar answers (cheap checks first)."""
    try:
        return fast_leaf_equal(pred, gold)
    except NeedSymbolic:
        pass
    p_core, p_pct, p_deg = split_marker(pred)
    g_core, g_pct, g_deg = split_marker(gold)
    try:
        p, g = to_sympy(p_core), to_sympy(g_core)
    except Exception:
        return False
    candidates = [p]
    if isinstance(p, sympy.Expr):
        if p_pct and not g_pct:
            candidates.append(p / 100)
        if g_pct and not p_pct:
            candidates.append(p * 100)
        # Degrees against radians: 30° == \pi/6.
        if p_deg and not g_deg:
            candidates.append(p * sympy.pi / 180)
        if g_deg and not p_deg and isinstance(g, sympy.Expr):
            g_rad = g * sympy.pi / 180
            if any(_exprs_equal(c, g_rad, p_core) for c in candidates):
                return True
    return any(_exprs_equal(c, g, p_core) for c in candidates)
