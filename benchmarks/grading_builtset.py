"""The built equivalence set (the first benchmark): answers rewritten from public golds.

The set (deterministic, no model needed): each MATH-500 gold answer is rewritten the way models
write answers (other LaTeX spellings, decimals, a/b, units and signs from the problem's wording,
reordered solution lists, inequalities for intervals, x = ..., expanded/factored expressions) and
perturbed into wrong near-misses (a digit off, a sign flipped, a tuple reversed, an interval bracket
flipped, an element dropped, a root or pi dropped, a 2-digit approximation); GSM8K-test and
AIME-2024/2025 golds get the usual integer spellings and near-misses. Each answer is put back into
the reference solution text (boxed, or after "The final answer is" / "Answer:"), so both graders
see a whole output and do their own extraction. Labels come from the construction; negatives whose
value happens not to change are dropped.

Scored by ``benchmarks/grading.py`` next to the per-family case files in ``grading_cases/``.
"""

from __future__ import annotations

import json
import random
import re
from decimal import Decimal
from pathlib import Path

UNIT_WORDS = ["inches", "feet", "cm", "meters", "miles", "units", "square units", "cents", "hours", "minutes"]
TEMPLATES = [
    "{body}\n\nTherefore, the final answer is $\\boxed{{{ans}}}$.",
    "{body}\n\nSo the answer is $\\boxed{{{ans}}}$",
    "{body}\n\nFinal Answer: The final answer is ${ans}$. I hope it is correct.",
    "{body}\n\n**Answer:** $\\boxed{{{ans}}}$",
    "{body}\n\nAnswer: ${ans}$",
]


# ---------------------------------------------------------------------------------------------------
# Value checks used only to keep labels honest (a near-miss must really change the value).


def _sympy_value(latex: str):
    from latex2sympy2_extended.latex2sympy2 import latex2sympy

    try:
        v = latex2sympy(latex)
        if getattr(v, "free_symbols", None) or not getattr(v, "is_number", False):
            return None
        return complex(v.evalf(30))
    except Exception:
        return None


def _differs(a: str, b: str) -> bool:
    va, vb = _sympy_value(a), _sympy_value(b)
    if va is None or vb is None:
        return True  # structural change (tuples, intervals, text): different by construction
    try:
        return abs(va - vb) > 1e-9 * max(1.0, abs(vb))
    except OverflowError:
        return True


# ---------------------------------------------------------------------------------------------------
# Rewrites: (answer, label, kind)

_INT = re.compile(r"^-?\d+$")
_FRAC = re.compile(r"^(-?)\\[dt]?frac\{(\d+)\}\{(\d+)\}$")
_TOP_COMMA = re.compile(r"(?<!\\),(?![^()\[\]{}]*[)\]}])")


_THOUSANDS = re.compile(r"^\\?\$?\d{1,3}(?:,(?:\\!)?\s?\d{3})+$")


def _is_bare_list(g: str) -> bool:
    if _THOUSANDS.match(g):
        return False
    return bool(_TOP_COMMA.search(g)) and not g.lstrip().startswith(("(", "[", "\\left", "\\{"))


def _style(g: str) -> str:
    s = g.replace("\\left", "").replace("\\right", "").replace("\\dfrac", "\\frac")
    if not _THOUSANDS.match(g):
        s = s.replace("\\!", "")
    s = s.replace("\\frac", "\\dfrac")
    if not _THOUSANDS.match(g):
        s = re.sub(r",\s*", ", ", s)
    return s


def _sympy_latex(g: str) -> str | None:
    import sympy
    from latex2sympy2_extended.latex2sympy2 import latex2sympy

    if "\\text" in g or "," in g or "=" in g or "\\infty" in g:
        return None
    try:
        v = latex2sympy(g)
        if not isinstance(v, sympy.Expr) or v.free_symbols:
            return None
        out = sympy.latex(sympy.nsimplify(v) if v.has(sympy.Float) else v)
    except Exception:
        return None
    return None if out.replace(" ", "") == g.replace(" ", "") else out


def _plain(g: str) -> str | None:
    """The answer as a model writes it without LaTeX: sqrt(3)/2, pi/4, 3/4."""
    m = _FRAC.match(g)
    if m:
        return f"{m.group(1)}{m.group(2)}/{m.group(3)}"
    if re.search(r"\d\s*\\[dt]?frac", g):  # a mixed number has no plain spelling
        return None
    s = re.sub(r"\\[dt]?frac\{([^{}]+)\}\{([^{}]+)\}", r"(\1)/(\2)", g)
    s = re.sub(r"\\sqrt\{([^{}]+)\}", r"sqrt(\1)", s).replace("\\pi", "pi")
    s = re.sub(r"(?<!sqrt)\((\w+)\)", r"\1", s)
    if "\\" in s or "{" in s or s == g:
        return None
    return s


def _expr_rewrite(g: str) -> str | None:
    import sympy
    from latex2sympy2_extended.latex2sympy2 import latex2sympy

    if "\\text" in g or "," in g or "=" in g or "\\le" in g or "\\ge" in g or "<" in g or ">" in g:
        return None
    try:
        v = latex2sympy(g)
        if not isinstance(v, sympy.Expr) or not v.free_symbols or len(v.free_symbols) > 3:
            return None
        for form in (sympy.expand(v), sympy.factor(v)):
            out = sympy.latex(form)
            if out.replace(" ", "") != g.replace(" ", "") and form != v:
                return out
    except Exception:
        return None
    return None


def _interval_as_inequality(g: str) -> str | None:
    s = g.replace("\\left", "").replace("\\right", "").replace(" ", "")
    m = re.fullmatch(r"([(\[])([^,()\[\]]+),([^,()\[\]]+)([)\]])", s)
    if not m or "\\cup" in s:
        return None
    lo_b, lo, hi, hi_b = m.groups()
    lo_op = "\\le" if lo_b == "[" else "<"
    hi_op = "\\le" if hi_b == "]" else "<"
    if lo == "-\\infty" and hi == "\\infty":
        return None
    if lo == "-\\infty":
        return f"x {hi_op} {hi}"
    if hi == "\\infty":
        ge = "\\ge" if lo_b == "[" else ">"
        return f"x {ge} {lo}"
    return f"{lo} {lo_op} x {hi_op} {hi}"


def positives(g: str, problem: str) -> list[tuple[str, str]]:
    out = [(g, "identity")]
    st = _style(g)
    if st != g:
        out.append((st, "latex_style"))
    sl = _sympy_latex(g)
    if sl:
        out.append((sl, "sympy_latex"))
    pl = _plain(g)
    if pl:
        out.append((pl, "plain_text"))
    m = _FRAC.match(g)
    if m:
        num, den = int(m.group(2)), int(m.group(3))
        d = den
        for f in (2, 5):
            while d % f == 0:
                d //= f
        if d == 1 and den:
            out.append((f"{m.group(1)}{Decimal(num) / Decimal(den)}", "decimal"))
    if _INT.match(g):
        n = int(g)
        if abs(n) >= 1000:
            out.append((f"{n:,}", "thousands"))
        low = problem.lower()
        if "degree" in low:
            out.append((f"{g}^\\circ", "degrees"))
        elif "percent" in low or "\\%" in problem:
            out.append((f"{g}\\%", "percent"))
        elif "dollar" in low or "\\$" in problem:
            out.append((f"\\${g}", "dollars"))
        else:
            for w in UNIT_WORDS:
                if re.search(rf"\b{w}\b", low):
                    out.append((f"{g} \\text{{ {w}}}", "unit"))
                    break
        if re.search(r"\$x\$|\bx\s*=", problem) and "x" not in g:
            out.append((f"x = {g}", "equation"))
    if _is_bare_list(g):
        parts = [p.strip() for p in _TOP_COMMA.split(g)]
        if len(set(parts)) > 1:
            out.append((", ".join(reversed(parts)), "list_reorder"))
    ineq = _interval_as_inequality(g)
    if ineq:
        out.append((ineq, "inequality"))
    er = _expr_rewrite(g)
    if er:
        out.append((er, "expr_rewrite"))
    t = re.fullmatch(r"\\text\{\(?([A-Za-z ]+)\)?\}", g)
    if t:
        out.append((t.group(1), "text_bare"))
    if m and int(m.group(2)) > int(m.group(3)) > 1:
        whole, rem = divmod(int(m.group(2)), int(m.group(3)))
        if rem:
            out.append((f"{m.group(1)}{whole}\\frac{{{rem}}}{{{m.group(3)}}}", "mixed_number"))
    if _INT.match(g) and abs(int(g)) >= 10000 and int(g) % 100 == 0:
        digits = g.lstrip("-").rstrip("0")
        exp = len(g.lstrip("-")) - 1
        mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        out.append((f"{'-' if g.startswith('-') else ''}{mant} \\times 10^{{{exp}}}", "scientific"))
    if _INT.match(g) and len(g) <= 3 and int(g) % 7 == 3:
        out.append((f"{g}.", "trailing_period"))
    if _is_bare_list(g) and "\\pm" not in g:
        out.append(("\\{" + g + "\\}", "set_braces"))
    pm = re.fullmatch(r"([^,]*?)\\pm(.*)", g)
    if pm and "," not in g:
        a, b = pm.group(1).strip(), pm.group(2).strip()
        out.append((f"{a} + {b}, {a} - {b}" if a else f"{b}, -{b}", "pm_expanded"))
    if "pmatrix" in g:
        out.append((g.replace("pmatrix", "bmatrix"), "matrix_env"))
    cx = re.fullmatch(r"(-?\d+)\s*([+-])\s*(\d*)i", g)
    if cx:
        out.append((f"{cx.group(2).replace('+', '')}{cx.group(3)}i + {cx.group(1)}", "complex_reorder"))
    return out


def _bump_last_digit(g: str) -> str | None:
    unit = re.search(r"\\(?:text|mbox)", g)  # a digit in a unit's exponent is not the value
    end = unit.start() if unit else len(g)
    idx = [i for i, c in enumerate(g[:end]) if c.isdigit()]
    if not idx:
        return None
    i = idx[-1]
    d = int(g[i])
    return g[:i] + str((d + 1) % 10 if not (d == 9 and i == idx[0] and len(idx) == 1) else 8) + g[i + 1 :]


def negatives(g: str, problem: str, rng: random.Random, text_pool: list[str]) -> list[tuple[str, str]]:
    out = []
    b = _bump_last_digit(g)
    if b and b != g and _differs(b, g):
        out.append((b, "digit_off"))
    if (_INT.match(g) or _FRAC.match(g)) and g.strip("-") not in ("0",):
        flipped = g[1:] if g.startswith("-") else "-" + g
        out.append((flipped, "sign_flip"))
    m = _FRAC.match(g)
    if m and m.group(2) != m.group(3):
        out.append((f"{m.group(1)}\\frac{{{m.group(3)}}}{{{m.group(2)}}}", "reciprocal"))
    s = g.replace("\\left", "").replace("\\right", "")
    tm = re.fullmatch(r"\s*\((.*)\)\s*", s)
    if tm and "\\cup" not in s:
        items = [p.strip() for p in _TOP_COMMA.split(tm.group(1))]
        if len(items) >= 2 and len(set(items)) == len(items):
            out.append(("(" + ", ".join(reversed(items)) + ")", "tuple_reversed"))
    im = re.fullmatch(r"\s*([(\[])(.*),(.*)([)\]])\s*", s)
    if im and "\\cup" not in s and "-\\infty" not in im.group(2):
        out.append((("[" if im.group(1) == "(" else "(") + s.strip()[1:], "bracket_flip"))
    if _is_bare_list(g):
        parts = [p.strip() for p in _TOP_COMMA.split(g)]
        out.append((", ".join(parts[:-1]), "list_drop"))
    if "\\sqrt" in g:
        dropped = re.sub(r"\\sqrt\{([^{}]+)\}", r"\1", g, count=1)
        if dropped != g and _differs(dropped, g):
            out.append((dropped, "sqrt_dropped"))
    if "\\pi" in g:
        dropped = g.replace("\\pi", "", 1).strip() or "1"
        if dropped.startswith("\\frac{}"):
            dropped = dropped.replace("\\frac{}", "\\frac{1}", 1)
        if _differs(dropped, g):
            out.append((dropped, "pi_dropped"))
    v = _sympy_value(g)
    if v is not None and abs(v.imag) < 1e-12 and not re.fullmatch(r"-?\d+(\.\d+)?", g):
        approx = f"{v.real:.2f}"
        if abs(float(approx) - v.real) > 1e-9:
            out.append((approx, "approx_2dp"))
    if "\\sqrt" in g or "\\pi" in g or re.search(r"(?<![\\a-zA-Z])[a-z](?![a-zA-Z])", g):  # expressions
        for a, b in (("+", "-"), ("-", "+")):
            i = g.find(a, 1)
            if i > 0 and g[i - 1] not in "^_{(,[" and "\\pm" not in g:
                flipped = g[:i] + b + g[i + 1 :]
                if _differs(flipped, g):
                    out.append((flipped, "op_flip"))
                break
    c = re.fullmatch(r"\\text\{\(([A-E])\)\}", g)
    if c:
        out.append((f"\\text{{({'ABCDE'[('ABCDE'.index(c.group(1)) + 1) % 5]})}}", "choice_other"))
    t = re.fullmatch(r"\\text\{([A-Za-z ]+)\}", g)
    if t:
        other = rng.choice([w for w in text_pool if w.lower() != t.group(1).lower()])
        out.append((f"\\text{{{other}}}", "text_other"))
    return out


def _body(solution: str) -> str:
    """The reference solution without its boxes (the answer is re-inserted by a template)."""
    from ssb_plugin.grading.boxes import last_boxed

    text = solution
    for _ in range(5):
        i = text.rfind("\\boxed")
        if i < 0:
            break
        inner = last_boxed(text[i:])
        if inner is None:
            break
        j = text.find(inner, i) + len(inner) + 1
        text = text[:i] + inner + text[j:]
    return text


def build_cases(data: Path, limit: int | None = None) -> list[dict]:
    rng = random.Random(20251205)
    cases: list[dict] = []
    math = [json.loads(line) for line in open(data / "math500.jsonl", encoding="utf-8")]
    text_pool = [m.group(1) for r in math if (m := re.fullmatch(r"\\text\{([A-Za-z ]+)\}", r["answer"]))]
    for i, row in enumerate(math):
        g, body = row["answer"], _body(row["solution"])
        variants = [(a, True, k) for a, k in positives(g, row["problem"])]
        variants += [(a, False, k) for a, k in negatives(g, row["problem"], rng, text_pool)]
        for j, (ans, label, kind) in enumerate(variants):
            tpl = TEMPLATES[(i + j) % len(TEMPLATES)]
            cases.append(
                dict(
                    src="math500",
                    kind=kind,
                    gold=g,
                    answer=ans,
                    label=label,
                    output=tpl.format(body=body, ans=ans),
                )
            )
        wrong = next((a for a, lab, _ in variants if not lab), None)
        if i % 5 == 0:
            # A truncated output: the working (which often states the answer) but no final answer.
            cut = body[: max(1, len(body) * 4 // 5)]
            phrase = re.search(r"answer|####", cut, re.IGNORECASE)
            cut = cut[: phrase.start()] if phrase else cut  # a stated answer is not a truncation
            cases.append(dict(src="math500", kind="truncated", gold=g, answer=None, label=False, output=cut))
        elif wrong is not None and i % 5 == 1:
            # The right value boxed mid-way, then revised to a wrong final answer.
            out = f"{body}\n\nSo far $\\boxed{{{g}}}$. Checking again, that was wrong.\n\nThe answer is $\\boxed{{{wrong}}}$."
            cases.append(
                dict(src="math500", kind="revised_wrong", gold=g, answer=wrong, label=False, output=out)
            )
    gsm = [json.loads(line) for line in open(data / "gsm8k_test.jsonl", encoding="utf-8")][:150]
    for i, row in enumerate(gsm):
        body, g = row["answer"].rsplit("####", 1)
        body, g = re.sub(r"<<[^>]*>>", "", body).strip(), g.strip().replace(",", "")
        n = int(g)
        pos = [
            (f"#### {n}", "gsm_hash"),
            (f"The answer is {n}.", "gsm_phrase"),
            (f"$\\boxed{{{n:,}}}$", "gsm_boxed"),
        ]
        pos.append(
            (f"The answer is \\${n}.00", "gsm_dollars")
            if i % 2
            else (f"\\boxed{{{n} \\text{{ dollars}}}}", "gsm_unit")
        )
        neg = [(f"#### {n + 1}", "gsm_off_by_one"), (f"The answer is {n * 10}.", "gsm_times10")]
        for j, (text, kind) in enumerate(pos + neg):
            cases.append(
                dict(
                    src="gsm8k", kind=kind, gold=g, answer=text, label=j < len(pos), output=f"{body}\n{text}"
                )
            )
    for name in ("aime24.jsonl", "aime25.jsonl"):
        for row in (json.loads(line) for line in open(data / name, encoding="utf-8")):
            g = str(int(row["answer"]))
            n = int(g)
            pos = [
                (f"\\boxed{{{n:03d}}}", "aime_leading_zeros"),
                (f"The final answer is {n}.", "aime_phrase"),
            ]
            neg = [(f"\\boxed{{{n + 1}}}", "aime_off_by_one"), (f"\\boxed{{{g[::-1]}}}", "aime_reversed")]
            if g[::-1].lstrip("0") == g:
                neg.pop()
            for j, (text, kind) in enumerate(pos + neg):
                cases.append(
                    dict(
                        src="aime",
                        kind=kind,
                        gold=g,
                        answer=text,
                        label=j < len(pos),
                        output=f"Solving.\n{text}",
                    )
                )
    return cases[:limit] if limit else cases
