"""The shape of an answer: tuples, sets, lists, intervals, unions, matrices, equations, inequalities.

``parse`` turns a normalised answer into a small tree; ``compare`` walks two trees and asks a leaf
comparator about the scalars. The same code runs in-process (with an exact numeric leaf comparator
that gives up by raising ``NeedSymbolic``) and in the worker (with the sympy one), so both paths
agree on conventions:

- ``(a, b)`` / ``[a, b]`` / ``(a, b]``: ordered, and the brackets must match (tuple or interval);
- ``\\{a, b\\}`` and bare lists ``a, b``: unordered; against a parenthesised tuple, a bare list
  is read in the gold's way: in order when the gold is the tuple, in any order when the gold is
  the list (models add or drop the parentheses);
- unions: unordered parts; an inequality in one variable becomes the interval(s) it describes;
- ``x = 3`` / ``(x, y) = (1, 2)``: the left side is a name, so only the value is compared;
- ``a = 3, b = 1; a = 5, b = 1``: assignments whose names repeat are one tuple per solution;
- ``a \\pm b``: the list ``a + b, a - b``;
- a one-column or one-row matrix is the tuple of its entries.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

_MAX_DEPTH = 12
_MAX_ITEMS = 64

_OPEN = "([{"
_CLOSE = ")]}"


class NeedSymbolic(Exception):
    """The leaf comparator cannot decide without sympy."""


@dataclass(frozen=True)
class Node:
    kind: str  # leaf | seq | set | list | union | matrix
    text: str = ""
    items: tuple = ()
    open: str = ""
    close: str = ""


LeafEq = Callable[[str, str], bool]

_VAR = r"(?:[a-zA-Z]|\\[a-zA-Z]+)(?:_\{?[a-zA-Z0-9]+\}?)?'*"
_VAR_RE = re.compile(rf"^{_VAR}$")
# f(x) = ..., f^{-1}(x) = ..., g(x, y) = ... name a value too
_FUNC_RE = re.compile(rf"^{_VAR}(?:\^\{{?-1\}}?)?\([^()=<>]*\)$")  # f(x), g(x, y), f(2)
# \tan x, \log_2 x, \cos^2 x: a named function applied to one variable, without parentheses.
_FUNCTIONS = r"sin|cos|tan|cot|sec|csc|arcsin|arccos|arctan|sinh|cosh|tanh|log|ln|lg|exp"
_APPLIED_RE = re.compile(
    rf"^(\\(?:{_FUNCTIONS})(?![a-zA-Z])(?:_\{{?[a-zA-Z0-9]+\}}?)?(?:\^\{{?-?\d+\}}?)?)\s*(?:{_VAR}|\{{\s*{_VAR}\s*\}})$"
)
_ASSIGNMENT_RE = re.compile(rf"^({_VAR})\s*=(?!=)\s*(\S.*)$")
_SUBSCRIPT_RE = re.compile(r"_\{?[a-zA-Z0-9]+\}?")
_NAME_CMD_RE = re.compile(r"\\(?:frac|angle|measuredangle|overline|triangle|widehat|overarc|arc)(?![a-zA-Z])")
_NAMED_RATIO_RE = re.compile(r"^[a-zA-Z'\s{}:/+\-|]+$")
_VARTUPLE_RE = re.compile(rf"^\(\s*{_VAR}(?:\s*,\s*{_VAR})+\s*\)$")
IN_RE = re.compile(rf"^{_VAR}\s*\\in\s*")
_MATRIX_RE = re.compile(r"^\\begin\{([pbvBV]?matrix|array)\}(?:\{[^{}]*\})?(.*)\\end\{\1\}$", re.DOTALL)
_REL_RE = re.compile(r"\\le(?![a-zA-Z])|\\ge(?![a-zA-Z])|<|>")
_PM_RE = re.compile(r"\\pm(?![a-zA-Z])")
_SET_BUILDER_RE = re.compile(rf"^{_VAR}\s*(?:\\mid|\||:)\s*(.+)$")
_INF = ("\\infty", "+\\infty", "-\\infty", "infty")


def _split_outside(s: str, sep_at) -> list[str]:
    """Split ``s`` at separators outside all brackets; ``sep_at(s, i)`` is the separator's length at i (0: none)."""
    parts, depth, start, i, n = [], 0, 0, 0, len(s)
    while i < n:
        k = sep_at(s, i) if depth == 0 else 0
        if k:
            parts.append(s[start:i])
            i += k
            start = i
            continue
        c = s[i]
        if c == "\\" and i + 1 < n and s[i + 1] in "{}":
            depth += 1 if s[i + 1] == "{" else -1
            i += 2
            continue
        if c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth -= 1
        i += 1
    parts.append(s[start:])
    return [p.strip() for p in parts]


def _split_top(s: str, seps: str) -> list[str]:
    """Split ``s`` at separator characters that sit outside all brackets."""
    return _split_outside(s, lambda t, i: 1 if t[i] in seps else 0)


def _split_top_token(s: str, token: str) -> list[str]:
    """Split at a multi-character token (``\\cup``, ``\\pm``, ``=``) outside brackets."""
    k = len(token)

    def sep_at(t: str, i: int) -> int:
        # a command token must not be the prefix of a longer command (\pm vs \pmod)
        if t.startswith(token, i) and not (token[-1].isalpha() and t[i + k : i + k + 1].isalpha()):
            return k
        return 0

    return _split_outside(s, sep_at)


def _outer_pair(s: str) -> tuple[str, str, str] | None:
    """``(open, inner, close)`` when one bracket pair encloses all of ``s``."""
    if s.startswith("\\{") and s.endswith("\\}"):
        o, c, inner = "{", "}", s[2:-2]
    elif s and s[0] in "([" and s[-1] in ")]":
        o, c, inner = s[0], s[-1], s[1:-1]
    else:
        return None
    # The opener must close at the very end, not earlier ("(1)+(2)" is not a group).
    depth = 0
    for ch in inner:
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
            if depth < 0:
                return None
    return (o, inner.strip(), c) if depth == 0 else None


def _interval(lo: str, lo_closed: bool, hi: str, hi_closed: bool) -> Node:
    return Node(
        "seq",
        items=(Node("leaf", text=lo), Node("leaf", text=hi)),
        open="[" if lo_closed else "(",
        close="]" if hi_closed else ")",
    )


def _inequality(s: str) -> Node | None:
    """``x > 2``, ``-1 < x \\le 3``, ``2 \\ge x``: the interval it describes (one variable)."""
    ops = [(m.start(), m.end(), m.group(0)) for m in _REL_RE.finditer(s)]
    if not ops or len(ops) > 2:
        return None
    pieces, prev = [], 0
    for a, b, _ in ops:
        pieces.append(s[prev:a].strip())
        prev = b
    pieces.append(s[prev:].strip())
    if any(not p for p in pieces):
        return None
    kinds = [op for _, _, op in ops]

    def less(op: str) -> bool:
        return op in ("<", "\\le")

    def closed(op: str) -> bool:
        return op in ("\\le", "\\ge")

    if len(pieces) == 2:
        left, right = pieces
        op = kinds[0]
        if _VAR_RE.match(left):
            var_less = less(op)  # x < a
            bound = right
        elif _VAR_RE.match(right):
            var_less = not less(op)  # a < x means x > a
            bound = left
        else:
            return None
        if var_less:
            return _interval("-\\infty", False, bound, closed(op))
        return _interval(bound, closed(op), "\\infty", False)
    lo, var, hi = pieces
    if not _VAR_RE.match(var) or less(kinds[0]) != less(kinds[1]):
        return None
    if less(kinds[0]):
        return _interval(lo, closed(kinds[0]), hi, closed(kinds[1]))
    return _interval(hi, closed(kinds[1]), lo, closed(kinds[0]))


def _is_name(p: str) -> bool:
    return bool(_VAR_RE.match(p) or _FUNC_RE.match(p) or _VARTUPLE_RE.match(p) or _is_named_ratio(p))


def _is_named_ratio(p: str) -> bool:
    """``A_1:A_2``, ``\\frac{AB}{CD}``, ``m+n``, ``\\angle ABC``: named quantities, no numbers."""
    bare = _NAME_CMD_RE.sub(" ", _SUBSCRIPT_RE.sub("", p))
    return bool(_NAMED_RATIO_RE.match(bare)) and any(c.isalpha() for c in bare)


def _strip_name(s: str) -> str:
    """The value an answer states: ``x = 3`` -> ``3``, ``(x, y) = (1, 2)``, ``x \\in S``,
    ``x = 2 + 3 = 5`` -> ``5`` (a chain that starts with a name ends with the value), and
    ``\\frac13 \\approx 0.33`` -> ``\\frac13`` (the exact value before an approximation)."""
    s = IN_RE.sub("", s, count=1)
    parts = _split_top_token(s, "=")
    if len(parts) >= 2 and all(parts) and _is_name(parts[0]):
        s = parts[-1]
    approx = _split_top_token(s, "\\approx")
    if len(approx) >= 2:
        values = [p for p in approx if p and not _is_name(p)]
        if values:
            s = values[0]
    return s


def equation_head(s: str) -> str | None:
    """The function an equation is about: ``\\tan`` for ``\\tan(x) = ...`` or ``\\tan x = ...``,
    ``f^{-1}`` for ``f^{-1}(2) = 7``; ``None`` for anything else (``x = 3`` names no function)."""
    parts = _split_top_token(s, "=")
    if len(parts) != 2 or not all(parts):
        return None
    lhs = parts[0]
    if _FUNC_RE.match(lhs):
        head = lhs[: lhs.index("(")]
    else:
        m = _APPLIED_RE.match(lhs)
        if m is None:
            return None
        head = m.group(1)
    return head.replace(" ", "").replace("{", "").replace("}", "")


def _assignment_groups(parts: list[str], depth: int) -> Node | None:
    """``a=3, b=1; a=5, b=1``: assignments whose names repeat are several solutions, one tuple each
    (``(3, 1), (5, 1)``); ``None`` unless every part assigns a name and the groups agree."""
    groups: list[list[tuple[str, str]]] = [[]]
    for part in parts:
        m = _ASSIGNMENT_RE.match(part)
        if m is None:
            return None
        name = m.group(1).replace(" ", "")
        if any(name == n for n, _ in groups[-1]):
            groups.append([])
        groups[-1].append((name, m.group(2)))
    names = [tuple(n for n, _ in g) for g in groups]
    if len(groups) < 2 or len(names[0]) < 2 or any(n != names[0] for n in names):
        return None
    return Node(
        "list",
        items=tuple(
            Node("seq", items=tuple(parse(v, depth + 1) for _, v in g), open="(", close=")") for g in groups
        ),
    )


def _items(parts: list[str], depth: int) -> tuple:
    """Parsed list elements; an element that is itself a list (``a \\pm b``) is spliced in."""
    out: list[Node] = []
    for p in parts[:_MAX_ITEMS]:
        if not p:
            continue
        node = parse(p, depth + 1)
        out.extend(node.items if node.kind == "list" else (node,))
    return tuple(out)


def parse(s: str, depth: int = 0) -> Node:
    """The tree of a normalised answer (see the module docstring for the conventions)."""
    s = s.strip()
    if depth > _MAX_DEPTH or not s:
        return Node("leaf", text=s)
    parts = _split_top(s, ",;")
    if len(parts) > 1:
        solutions = _assignment_groups(parts[:_MAX_ITEMS], depth)
        if solutions is not None:
            return solutions
        elements = _items(parts, depth)
        return elements[0] if len(elements) == 1 else Node("list", items=elements)
    s = _strip_name(s)
    m = _MATRIX_RE.match(s)
    if m and "\\begin{" not in m.group(2):  # A + B: two matrices are an expression, not one matrix
        rows = [r for r in (x.strip() for x in m.group(2).split("\\\\")) if r]
        cells = tuple(tuple(parse(c, depth + 1) for c in r.split("&")) for r in rows[:_MAX_ITEMS])
        if cells and all(len(r) == len(cells[0]) for r in cells):
            if len(cells) == 1 or len(cells[0]) == 1:  # a vector: the tuple of its entries
                flat = tuple(c for r in cells for c in r)
                return (
                    Node("seq", text="vector", items=flat, open="(", close=")") if len(flat) > 1 else flat[0]
                )
            return Node("matrix", items=cells)
        return Node("leaf", text=s)
    union = _split_top_token(s, "\\cup")
    if len(union) > 1:
        return Node("union", items=tuple(parse(p, depth + 1) for p in union[:_MAX_ITEMS]))
    outer = _outer_pair(s)
    if outer is not None:
        o, inner, c = outer
        items = _split_top(inner, ",;") if inner else []
        if o == "{":
            builder = _SET_BUILDER_RE.match(inner)
            if builder:  # \{x \mid x > 2\}: the set the condition describes
                return parse(builder.group(1), depth + 1)
            return Node("set", items=_items(items, depth))
        if len(items) > 1:
            return Node("seq", items=tuple(parse(p, depth + 1) for p in items[:_MAX_ITEMS]), open=o, close=c)
        if o == "(" and c == ")":
            return parse(inner, depth + 1)
        return Node("leaf", text=s)
    ineq = _inequality(s)
    if ineq is not None:
        return ineq
    pm = _split_top_token(s, "\\pm")
    if len(pm) == 2:
        a, b = pm
        plus = f"{a}+{b}" if a else b
        minus = f"{a}-({b})" if a else f"-({b})"
        return Node("list", items=(Node("leaf", text=plus), Node("leaf", text=minus)))
    if len(_PM_RE.findall(s)) == 1:  # a \pm inside a group: \frac{-1 \pm \sqrt5}{2}
        plus, minus = _PM_RE.sub("+", s), _PM_RE.sub("-", s)
        return Node("list", items=(Node("leaf", text=plus), Node("leaf", text=minus)))
    return Node("leaf", text=s)


def _unordered(ps: tuple, gs: tuple, leaf_eq: LeafEq) -> bool:
    """Equal as sets: every element of each side is on the other (a repeated element counts once)."""
    if len(ps) > 2 * len(gs) or len(gs) > 2 * len(ps):
        return False  # not worth the pairwise comparisons
    return all(any(compare(p, g, leaf_eq) for g in gs) for p in ps) and all(
        any(compare(p, g, leaf_eq) for p in ps) for g in gs
    )


def _ordered(ps: tuple, gs: tuple, leaf_eq: LeafEq) -> bool:
    return len(ps) == len(gs) and all(compare(p, g, leaf_eq) for p, g in zip(ps, gs, strict=True))


def _is_inf(n: Node) -> bool:
    return n.kind == "leaf" and n.text.replace(" ", "") in _INF


def compare(p: Node, g: Node, leaf_eq: LeafEq) -> bool:
    """Whether answer tree ``p`` means the same as gold tree ``g``."""
    if p.kind == "leaf" and g.kind == "leaf":
        return leaf_eq(p.text, g.text)
    # A one-element collection is its element ({3} vs 3, "x = 3" vs 3).
    if p.kind in ("set", "list", "union") and len(p.items) == 1:
        return compare(p.items[0], g, leaf_eq)
    if g.kind in ("set", "list", "union") and len(g.items) == 1:
        return compare(p, g.items[0], leaf_eq)
    if p.kind == "leaf" or g.kind == "leaf":
        # One value written several ways ("\\boxed{x+11} or \\boxed{11+x}") is that value.
        many, one = (p, g) if g.kind == "leaf" else (g, p)
        if many.kind == "list" and one.text:
            return all(compare(item, one, leaf_eq) for item in many.items)
        return False
    unordered = ("set", "list", "union")
    if p.kind == "seq" and g.kind == "seq":
        if "vector" in (p.text, g.text):
            return _ordered(p.items, g.items, leaf_eq)  # a column vector has no interval brackets
        # Brackets must agree, except next to an infinite endpoint (some write "\\infty]").
        if (p.open, p.close) != (g.open, g.close) and not _brackets_agree(p, g):
            return False
        return _ordered(p.items, g.items, leaf_eq)
    if p.kind == "matrix" and g.kind == "matrix":
        return len(p.items) == len(g.items) and all(
            _ordered(pr, gr, leaf_eq) for pr, gr in zip(p.items, g.items, strict=True)
        )
    if {p.kind, g.kind} == {"list", "seq"}:
        seq = p if p.kind == "seq" else g
        if (seq.open, seq.close) != ("(", ")"):
            return False
        # A gold list of solutions is unordered whatever the answer's brackets; a gold tuple is not.
        return (_unordered if g.kind == "list" else _ordered)(p.items, g.items, leaf_eq)
    if p.kind in unordered and g.kind in unordered:
        # A set of values is not a union of intervals; a bare list matches either.
        if {p.kind, g.kind} == {"set", "union"}:
            return False
        return _unordered(p.items, g.items, leaf_eq)
    return False  # different shapes: tuple vs set, matrix vs tuple, interval vs union, ...


def _brackets_agree(p: Node, g: Node) -> bool:
    if len(p.items) != 2 or len(g.items) != 2:
        return False
    lo_ok = p.open == g.open or (_is_inf(p.items[0]) and _is_inf(g.items[0]))
    hi_ok = p.close == g.close or (_is_inf(p.items[1]) and _is_inf(g.items[1]))
    return lo_ok and hi_ok
