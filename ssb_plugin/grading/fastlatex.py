"""A small LaTeX-to-Python translator for the simple expressions most answers are.

latex2sympy's ANTLR parser costs 5-20 ms per expression; sympy's ``parse_expr`` on a translated
string costs well under 1 ms. This module translates only a conservative subset (numbers,
single-letter variables, ``+ - * ^``, brackets, ``\\frac``, ``\\sqrt``, ``\\pi``, ``\\cdot``,
``\\times``) and returns ``None`` for anything else, which then goes to latex2sympy. Readings agree
with latex2sympy's: ``i`` is the imaginary unit, ``e`` is Euler's number, letters are separate
variables (``xy`` = ``x*y``), and a digit right before ``\\frac`` (a mixed number) is refused.
"""

from __future__ import annotations

import re

# No "/": in "a/bc" latex2sympy lets the implicit product bind first (a/(bc)); Python would not.
_ALLOWED_RE = re.compile(r"^(?:[0-9a-zA-Z.+\-*^(){}\[\] ]|\\(?:frac|sqrt|pi|cdot|times)(?![a-zA-Z]))*$")
_MIXED_RE = re.compile(r"\d\s*\\frac")
_MAX_LEN = 300
_MAX_EXP_DIGITS = 4


class _Refuse(Exception):
    pass


def _group(s: str, i: int) -> tuple[str, int]:
    """The argument starting at ``s[i]``: a braced group or a single character."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        raise _Refuse
    if s[i] != "{":
        if s[i] == "\\":
            m = re.match(r"\\[a-zA-Z]+", s[i:])
            if m is None:
                raise _Refuse
            return s[i : i + m.end()], i + m.end()
        return s[i], i + 1
    depth = 0
    for j in range(i, len(s)):
        if s[j] == "{":
            depth += 1
        elif s[j] == "}":
            depth -= 1
            if depth == 0:
                return s[i + 1 : j], j + 1
    raise _Refuse


def _translate(s: str, depth: int = 0) -> str:
    if depth > 20:
        raise _Refuse
    out: list[str] = []
    i, n = 0, len(s)
    prev_letter = False
    while i < n:
        c = s[i]
        if c == "\\":
            m = re.match(r"\\([a-zA-Z]+)", s[i:])
            if m is None:
                raise _Refuse
            name, i = m.group(1), i + m.end()
            if name == "frac":
                num, i = _group(s, i)
                den, i = _group(s, i)
                out.append(f"(({_translate(num, depth + 1)})/({_translate(den, depth + 1)}))")
            elif name == "sqrt":
                index = None
                while i < n and s[i] == " ":
                    i += 1
                if i < n and s[i] == "[":
                    close = s.find("]", i)
                    if close < 0:
                        raise _Refuse
                    index, i = s[i + 1 : close], close + 1
                arg, i = _group(s, i)
                body = _translate(arg, depth + 1)
                out.append(
                    f"sqrt({body})" if index is None else f"root({body},{_translate(index, depth + 1)})"
                )
            elif name == "pi":
                out.append(" pi ")
            else:  # cdot, times
                out.append("*")
            prev_letter = False
            continue
        if c == "^":
            exp, i = _group(s, i + 1)
            if "^" in exp or sum(ch.isdigit() for ch in exp) > _MAX_EXP_DIGITS:
                raise _Refuse  # towers and huge powers are evaluated lazily by latex2sympy instead
            out.append(f"**({_translate(exp, depth + 1)})")
            prev_letter = False
            continue
        if c.isalpha():
            # Letters are separate variables: xy is x*y (so no run of letters can name a function).
            out.append(("*" if prev_letter else " ") + f"_v_{c} ")
            prev_letter = True
            i += 1
            continue
        out.append({"{": "(", "}": ")", "[": "(", "]": ")"}.get(c, c))
        prev_letter = False
        i += 1
    return "".join(out)


def translate(text: str) -> tuple[str, set[str]] | None:
    """Python source for ``text`` and the letters it uses, or ``None`` when outside the subset."""
    text = text.strip()
    if not text or len(text) > _MAX_LEN or not _ALLOWED_RE.match(text) or _MIXED_RE.search(text):
        return None
    if text.count("{") != text.count("}") or text.count("(") != text.count(")"):
        return None
    try:
        src = _translate(text)
    except (_Refuse, RecursionError):
        return None
    return src, {c for c in re.sub(r"\\[a-zA-Z]+", " ", text) if c.isalpha()}
