"""String-level clean-up of an answer, before any parsing.

Pure string rewrites with linear regexes: spacing and sizing commands, fraction spellings, unicode
symbols, dollar signs, unit words and ``\\text{}`` wrappers go; percent and degree signs are kept as
the single markers ``%`` and ``°`` so the comparison can decide what they mean.
"""

from __future__ import annotations

import re

from .boxes import last_boxed

_UNICODE = {
    "\u2212": "-",  # minus sign
    "\u2013": "-",
    "\u00d7": "\\times ",
    "\u22c5": "\\cdot ",
    "\u00b7": "\\cdot ",
    "\u03c0": "\\pi ",
    "\u221e": "\\infty ",
    "\u221a": "\\sqrt",
    "\u2264": "\\le ",
    "\u2265": "\\ge ",
    "\u2260": "\\ne ",
    "\u222a": "\\cup ",
    "\u2229": "\\cap ",
    "\u00b0": "°",
    "\u00bd": "1/2",
    "\u00bc": "1/4",
    "\u00be": "3/4",
    "\u2009": " ",
    "\u00a0": " ",
    "\u2248": "\\approx ",
    "\u202f": " ",
}
_UNICODE_RE = re.compile("|".join(re.escape(k) for k in _UNICODE))

# Thousands separators written with a negative thin space: 10,\!080.
_THIN_THOUSANDS_RE = re.compile(r"(?<=\d),\s*\\!\s*(?=\d{3})")
# Commands that only change size or kerning: removed outright.
_DROP_RE = re.compile(
    r"\\(?:left|right|bigl|bigr|Bigl|Bigr|biggl|biggr|big|Big|bigg|Bigg)(?![a-zA-Z])\.?"
    r"|\\(?:displaystyle|textstyle|limits|nolimits|mathstrut|boldsymbol|bm)(?![a-zA-Z])"
    r"|(?<!\\)\\[!,]|\\phantom\{[^{}]*\}"
)
# Commands that stand for a space.
_SPACE_CMD_RE = re.compile(r"\\(?:quad|qquad|hfill)(?![a-zA-Z])|(?<!\\)\\[;:> ]|~")
_RENAME = [
    (re.compile(r"\\[dtc]frac(?![a-zA-Z])"), r"\\frac"),
    (re.compile(r"\\[dt]binom(?![a-zA-Z])"), r"\\binom"),
    (re.compile(r"\\(?:leq|leqslant)(?![a-zA-Z])"), r"\\le"),
    (re.compile(r"\\(?:geq|geqslant)(?![a-zA-Z])"), r"\\ge"),
    (re.compile(r"\\(?:neq)(?![a-zA-Z])"), r"\\ne"),
    (re.compile(r"\\lt(?![a-zA-Z])"), "<"),
    (re.compile(r"\\gt(?![a-zA-Z])"), ">"),
    (re.compile(r"<="), r"\\le "),
    (re.compile(r"!="), r"\\ne "),
    (re.compile(r">="), r"\\ge "),
    (
        re.compile(
            r"\\(?:textbf|textrm|textit|textnormal|textsf|texttt|mathrm|mathbf|mathit|mathsf|mbox|hbox)\s*\{"
        ),
        r"\\text{",
    ),
    (re.compile(r"\\emph\s*\{"), r"\\text{"),
    (re.compile(r"\\(?:varpi)(?![a-zA-Z])"), r"\\pi"),
    (re.compile(r"\\(?:lbrace)(?![a-zA-Z])"), r"\\{"),
    (re.compile(r"\\(?:rbrace)(?![a-zA-Z])"), r"\\}"),
    (re.compile(r"\\(?:lbrack)(?![a-zA-Z])"), "["),
    (re.compile(r"\\(?:rbrack)(?![a-zA-Z])"), "]"),
    (re.compile(r"\\(?:langle)(?![a-zA-Z])"), "("),  # a vector <1, 2> is the tuple (1, 2)
    (re.compile(r"\\(?:rangle)(?![a-zA-Z])"), ")"),
    (re.compile(r"\\(?:dots|ldots|cdots)(?![a-zA-Z])"), r"\\ldots "),
    (re.compile(r"\{,\}"), ""),  # 1{,}000
    (re.compile(r"\{:\}"), ":"),  # 11{:}20
    # The real line, however written.
    (
        re.compile(
            r"\\mathbb\s*\{?\s*R\s*\}?|\\R(?![a-zA-Z])|\u211d|\\text\{\s*all real numbers\s*\}|\ball real numbers\b"
        ),
        r"(-\\infty,\\infty)",
    ),
    (re.compile(r"\\(?:emptyset|varnothing)(?![a-zA-Z])|\\\{\s*\\\}"), r"\\{\\}"),
]
_PERCENT_RE = re.compile(
    r"\s*(?:\\%|%|\\text\{\s*(?:\\?%|percent|percentage|pct)\s*\}|\b(?:percent|percentage|pct)\b)"
)
_DEGREE_RE = re.compile(
    r"\s*(?:\^\s*\{\s*\\circ\s*\}|\^\s*\\circ(?![a-zA-Z])|\\circ(?![a-zA-Z])|\\degree(?![a-zA-Z])|°"
    r"|\\text\{\s*degrees?\s*\}|\bdegrees?\b)"
)
# An angle in degrees inside a trig function is converted to radians: \sin 30° = \sin(\pi/6).
_TRIG_DEGREES_RE = re.compile(r"(\\(?:sin|cos|tan|cot|sec|csc)\s*\(?\s*)(\d+(?:\.\d+)?)\s*°")
# Currency signs: the amount is the answer.
_DOLLAR_RE = re.compile(r"\\\$|\$|€|£|¥|\\(?:euro|pounds|yen)(?![a-zA-Z])")
_INFTY_RE = re.compile(r"\\infinity|\binfinity\b|\binf\b")
_TEXT_RE = re.compile(r"\\text\s*\{([^{}]*)\}")
_TEXT_CONNECTOR_RE = re.compile(
    r"\s*\\text\{\s*,?\s*(?:and|or)\s*\}\s*|,?\s+(?:and|or)\s+|(?<=[)\]])\s*(?:and|or)\s*(?=[(\[])",
    re.IGNORECASE,
)
# A unit: a trailing \text{...} (optionally squared/cubed) after something numeric-looking.
_TEXT_UNIT_RE = re.compile(r"(?<=[\d}%°)a-zA-Z])\s*\\text\{\s*[a-zA-Z][a-zA-Z ./]*\}(?:\^\{?\d\}?)?\s*$")
# Plain unit words after a number ("18 dollars", "12 square units").
_WORD_UNIT_RE = re.compile(r"^(.*[\d}%°])\s+([a-zA-Z][a-zA-Z./]+(?:\s+[a-zA-Z./]+)*)(?:\^\{?\d\}?)?$")
_MATH_WORDS = frozenset({"pi", "and", "or", "sqrt", "infty", "i", "e", "cis"})
_FIX_FRAC_RE = [
    (re.compile(r"\\frac\s*(\d)\s*(\d)"), r"\\frac{\1}{\2}"),
    (re.compile(r"\\frac\s*(\d)\s*\{"), r"\\frac{\1}{"),
    (re.compile(r"\\frac\s*\{([^{}]*)\}\s*(\d)"), r"\\frac{\1}{\2}"),
    (re.compile(r"\\frac\s*([a-zA-Z])\s*([a-zA-Z\d])"), r"\\frac{\1}{\2}"),
    (re.compile(r"\\sqrt\s*(\d+|[a-zA-Z])"), r"\\sqrt{\1}"),
    (re.compile(r"\\sqrt\s*\[\s*(\d+)\s*\]\s*(\d+)"), r"\\sqrt[\1]{\2}"),
]
# Plain a/b between integers is one fraction: "2/3 sqrt(3)" is (2/3)*sqrt(3), "1/2 x" is x/2.
_SLASH_FRAC_RE = re.compile(r"(?<![\w.}^_])(\d+)\s*/\s*(\d+)(?![\d.^])")
_THOUSANDS_RE = re.compile(r"^[-+]?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?$")  # 0,111 groups nothing
# Plain-text maths: sqrt(2), sqrt2, pi.
_PLAIN_FIX_RE = [
    (re.compile(r"(?<![a-zA-Z\\])sqrt\s*\(([^()]*)\)"), r"\\sqrt{\1}"),
    (re.compile(r"(?<![a-zA-Z\\])sqrt\s*(\d+|[a-zA-Z])"), r"\\sqrt{\1}"),
    (re.compile(r"(?<![a-zA-Z\\])pi(?![a-zA-Z])"), r"\\pi "),
    (
        re.compile(r"(?<![a-zA-Z\\])(arcsin|arccos|arctan|sin|cos|tan|cot|sec|csc|log|ln|exp)(?=\s*\()"),
        r"\\\1",
    ),
]
_SPACE_THOUSANDS_RE = re.compile(r"^[-+]?\d{1,3}(?: \d{3})+(?:\.\d+)?$")
_SPACES_RE = re.compile(r"\s+")
# What a model writes before the value it means: "? roughly 7", "\approx 3.5", "= 12", "\sim 40".
_LEAD_IN_RE = re.compile(
    r"^(?:\?+\s*)?(?:(?:roughly|about|approximately|approx\.?|around|nearly|almost|exactly)\s+)?"
    r"(?:=|\\approx(?![a-zA-Z])|\\sim(?![a-zA-Z])|\\simeq(?![a-zA-Z])|\\doteq(?![a-zA-Z]))?\s*(?=\S)",
    re.IGNORECASE,
)
# The imaginary unit as sympy prints it (I), where it cannot be an identity matrix: a matrix entry,
# or a number whose only letter it is (1 + 2I).
_CAPITAL_I_RE = re.compile(r"(?<![a-zA-Z\\])I(?![a-zA-Z])")
_LETTER_RE = re.compile(r"[a-zA-Z]")
_COMMAND_RE = re.compile(r"\\[a-zA-Z]+")
_DOUBLE_ESCAPE_RE = re.compile(r"\\\\(?=[a-zA-Z])")


# A matrix environment inside brackets: [\begin{array}{cc}...\end{array}] is just the matrix.
_BRACKETED_MATRIX_RE = re.compile(
    r"^[\[(]\s*(\\begin\{([a-zA-Z]*matrix|array)\}.*\\end\{\2\})\s*[\])]$", re.DOTALL
)


def _strip_wrappers(s: str) -> str:
    """Remove math delimiters, a whole-answer box and trailing punctuation, repeatedly."""
    for _ in range(4):
        before = s
        s = s.strip()
        if s.startswith(("\\boxed", "\\fbox")):
            inner = last_boxed(s)
            if inner is not None and s.endswith("}"):
                s = inner
        for a, b in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
            if s.startswith(a) and s.endswith(b) and len(s) >= len(a) + len(b):
                s = s[len(a) : len(s) - len(b)]
        s = s.strip().rstrip(".").rstrip()
        if s.endswith(",") or s.endswith(";"):
            s = s[:-1]
        s = s.rstrip("\\").rstrip()  # a stray trailing backslash or row break ends no answer
        if s == before:
            break
    return s


def _brace_set(s: str) -> str:
    """``{1, 2, 3}``: a whole answer in plain braces with commas is a set (``\\{1, 2, 3\\}``)."""
    if not (s.startswith("{") and s.endswith("}")) or "," not in s:
        return s
    depth = 0
    for i, c in enumerate(s):
        depth += (c == "{") - (c == "}")
        if depth == 0 and i < len(s) - 1:
            return s  # {a}{b}: two groups, not one set
    return "\\{" + s[1:-1] + "\\}"


def _imaginary_unit(s: str) -> str:
    """``I`` as ``i`` where it can only be the imaginary unit (see ``_CAPITAL_I_RE``)."""
    if "I" not in s:
        return s
    if "\\begin{" in s:
        return _CAPITAL_I_RE.sub("i", s)
    letters = set(_LETTER_RE.findall(_COMMAND_RE.sub("", s)))
    if letters == {"I"} and any(c.isdigit() for c in s):
        return _CAPITAL_I_RE.sub("i", s)
    return s


def _drop_units(s: str) -> str:
    for _ in range(2):
        t = _TEXT_UNIT_RE.sub("", s)
        if t == s:
            break
        s = t.rstrip()
    return s


def _drop_word_units(s: str) -> str:
    m = _WORD_UNIT_RE.match(s)
    if m is None:
        return s
    unit = m.group(2).lower()
    words = unit.replace(".", " ").replace("/", " ").split()
    # A single letter is a variable ("5 x", "2 x/y"), unless it is a unit letter in a rate ("m/s").
    if any(w in _MATH_WORDS or (len(w) < 2 and ("/" not in unit or w not in "mshgl")) for w in words):
        return s
    return m.group(1).rstrip()


def normalize(answer: str) -> str:
    """Canonical spelling of an answer (still LaTeX-ish; single spaces)."""
    # Whitespace runs are collapsed first and after every step that makes spaces: several patterns
    # below start with \s*, which is quadratic on a long run of spaces.
    s = _SPACES_RE.sub(" ", _UNICODE_RE.sub(lambda m: _UNICODE[m.group(0)], answer))
    s = _strip_wrappers(s)
    s = _LEAD_IN_RE.sub("", s, count=1)
    if "\\begin" not in s:  # outside a matrix, \\le is a command escaped twice, not a row break
        s = _DOUBLE_ESCAPE_RE.sub(r"\\", s)
    s = _THIN_THOUSANDS_RE.sub("", s)
    s = _DROP_RE.sub("", s)
    s = _SPACES_RE.sub(" ", _SPACE_CMD_RE.sub(" ", s))
    for pat, rep in _RENAME:
        s = pat.sub(rep, s)
    s = _DOLLAR_RE.sub("", s)
    s = _PERCENT_RE.sub("%", s)
    s = _DEGREE_RE.sub("°", s)
    s = _TRIG_DEGREES_RE.sub(r"\1\\frac{\2\\pi}{180}", s)
    s = _INFTY_RE.sub(r"\\infty", s)
    s = _TEXT_CONNECTOR_RE.sub(", ", s)
    s = _brace_set(s)
    s = _drop_units(s.strip())
    s = _SPACES_RE.sub(" ", _TEXT_RE.sub(lambda m: " " + m.group(1).strip() + " ", s))
    for pat, rep in _PLAIN_FIX_RE + _FIX_FRAC_RE:
        s = pat.sub(rep, s)
    s = _SLASH_FRAC_RE.sub(r"\\frac{\1}{\2}", s)
    s = _SPACES_RE.sub(" ", s).strip()
    s = _strip_wrappers(s)
    s = _drop_word_units(s)
    m = _BRACKETED_MATRIX_RE.match(s)
    if m:
        s = m.group(1)
    if _THOUSANDS_RE.match(s):
        s = s.replace(",", "")
    elif _SPACE_THOUSANDS_RE.match(s):
        s = s.replace(" ", "")
    if s.startswith("+") and len(s) > 1:
        s = s[1:]
    return _imaginary_unit(s)


def compact(s: str) -> str:
    """``s`` without any whitespace: a key for the cheap "same spelling" test."""
    return _SPACES_RE.sub("", s)
