"""The lenient rungs of the extraction ladder: answers written without ``\\boxed``.

Used by ``extract_answer(mode="lenient")`` (the default for grading and evaluation) after the boxed
answer and the answer phrase, which both modes share:

1. several boxes that each state a different named quantity (``\\boxed{m = 12} ... \\boxed{n = 5}``)
   answer together;
2. a bare answer: the whole text is an answer (``41``, ``(2,5]``, ``y = 4``, ``35 percent``,
   ``\\text{B}``, ``Evelyn``), not a sentence;
3. the last LaTeX math environment (``$...$``, ``$$...$$``, ``\\(...\\)``, ``\\[...\\]``) or, when a
   plain number comes after it, that number ("it is 2,500.75€ in total"). A computation chain
   (``2 + 3 = 5``) ends in its value.

Every scan is linear in the text.
"""

from __future__ import annotations

import re

from .boxes import MAX_ANSWER_CHARS, PHRASE_RE, box_spans, phrase_answer

# Words a bare answer may contain besides its value: units, connectors, number words.
_ANSWER_WORDS = frozenset(
    """and or percent percentage pct degree degrees dollar dollars cent cents euro euros unit units
    square cubic cm mm km meter meters metre metres inch inches foot feet ft yard yards mile miles
    second seconds sec min mins minute minutes hour hours hr hrs day days week weeks month months
    year years gram grams kg pound pounds lb lbs ounce ounces liter liters litre litres ml mph kph
    ways people students sq radians rad""".split()
)
_MATH_NAMES = frozenset(
    "sin cos tan cot sec csc arcsin arccos arctan sinh cosh tanh log ln lg exp sqrt pi infty max min "
    "gcd lcm det mod deg cis".split()
)
_WHOLE_TEXT_RE = re.compile(r"^\$?\\(?:text|textbf|mathrm|mbox)\{[^{}]*\}\$?$")
_CMD_RE = re.compile(r"\\[a-zA-Z]+")
_ENV_RE = re.compile(r"\\(?:begin|end)\{[^{}]*\}")
_DIGIT_OR_MATH_RE = re.compile(r"\d|\$|\\[(\[]")
_TEXT_GROUP_RE = re.compile(r"\\text\{[^{}]*\}")
_SENTENCE_END_RE = re.compile(r"[.?]\s|(?<=[a-zA-Z])!\s")  # 5! is a factorial, not an exclamation
_EXCLAIMED_RE = re.compile(r"[a-zA-Z]!$")
_BARE_MAX_CHARS = 200
_NAMED_BOX_RE = re.compile(r"^\s*([A-Za-z](?:_\{?\w+\}?)?'*|\\[a-zA-Z]+)\s*=(?!=)")
_NAMED_BOX_WINDOW = 400  # named boxes further apart than this are separate statements
_NUMBER_RE = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?(?:\s*%|€)?")
_DELIMITER_RE = re.compile(r"\\\$|\\[(\[]|\$\$|\$")
_TAIL_CHARS = 2 * MAX_ANSWER_CHARS
# A math opener left unclosed after the last complete environment ($5 is a price, $\frac is maths).
_OPEN_MATH_RE = re.compile(r"(?<!\\)\$\$?\s*\\|\\[(\[]")
_SPECIAL_TOKEN_RE = re.compile(r"<\|[^|>]{1,40}\|>")
_HOPE_RE = re.compile(r"i hope it is correct\.?", re.IGNORECASE)
_CHAIN_LHS_RE = re.compile(r"^[\d\s+\-*/^().,{}\\]*$|\\(?:frac|cdot|times|sqrt)")


def named_boxes(text: str) -> str | None:
    """``m = 12, n = 5`` from boxes that each name a different quantity (last box first)."""
    spans = box_spans(text, limit=10)
    if len(spans) < 2:
        return None
    names: list[str] = []
    parts: list[str] = []
    prev_start = None
    for start, end, content in reversed(spans):
        m = _NAMED_BOX_RE.match(content)
        if m is None or m.group(1) in names:
            break
        if prev_start is not None and prev_start - end > _NAMED_BOX_WINDOW:
            break
        names.append(m.group(1))
        parts.insert(0, content)
        prev_start = start
    return ", ".join(parts) if len(parts) >= 2 else None


def _words(text: str, shortest: int) -> list[str]:
    """Words of at least ``shortest`` letters that are neither answer words nor LaTeX commands."""
    bare = _CMD_RE.sub(" ", _ENV_RE.sub(" ", text))
    return [
        w
        for w in re.findall(rf"(?<![\\a-zA-Z])[a-zA-Z]{{{shortest},}}", bare)
        if w.lower() not in _ANSWER_WORDS and w.lower() not in _MATH_NAMES
    ]


def bare_answer(text: str) -> str | None:
    """``text`` itself when it is only an answer: short, one line, not a sentence."""
    s = text.strip()
    if not s or len(s) > _BARE_MAX_CHARS or "\n" in s or s.count("{") != s.count("}"):
        return None
    if "\\boxed" in s or "\\fbox" in s:
        return None  # a box the box rung could not read is broken, not an answer
    if _SENTENCE_END_RE.search(s) or s.endswith("?") or _EXCLAIMED_RE.search(s):
        return None
    if _WHOLE_TEXT_RE.match(s):
        return s  # \text{all real numbers}: a text answer, however many words
    words = _words(s, 3)
    if len(words) > 1:
        return None  # "I think it's about 5": a sentence, not an answer
    if words and _DIGIT_OR_MATH_RE.search(_TEXT_GROUP_RE.sub("", s)):
        return None  # "Answer $12$", "5 apples": words around a value; the last rung finds it
    if not _DIGIT_OR_MATH_RE.search(s) and len(_words(s, 2)) > 1:
        return None  # "no idea": two words and no value
    return s


def phrase_after_box(text: str) -> str | None:
    """An answer phrase written after the last box ("... The final answer is $10,455$."): a revision.

    Only a value counts (digits or maths): "The answer is correct." after a box revises nothing.
    """
    spans = box_spans(text, 1)
    if not spans:
        return None
    found = list(PHRASE_RE.finditer(text, max(spans[-1][1], len(text) - _TAIL_CHARS)))
    if not found:
        return None
    ans = phrase_answer(text[found[-1].start() :])
    if ans is None or not (_DIGIT_OR_MATH_RE.search(ans) or "\\" in ans):
        return None
    if '"' in ans or "$" in ans:
        return None  # a quoted or half-delimited restatement, not a cleaner answer than the box
    return ans


def is_sentence(text: str) -> bool:
    """Prose (two or more words that are not units or maths) rather than an answer."""
    return bare_answer(text) is None and len(_words(text, 3)) > 1


def refine_phrased(ans: str) -> str:
    """A phrased answer that is a sentence ("Jane started 3 hours ago"): the value it states."""
    if not is_sentence(ans):
        return ans
    return last_math_or_number(ans) or ans


def _math_envs(text: str) -> list[tuple[int, int, str]]:
    """``(start, end, content)`` of the LaTeX math environments, in order (escaped ``\\$`` skipped)."""
    out, i, n = [], 0, len(text)
    while i < n:
        m = _DELIMITER_RE.search(text, i)
        if m is None:
            break
        i, tok = m.start(), m.group(0)
        if tok == "\\$":
            i += 2
        elif tok in ("\\(", "\\["):
            closer = "\\)" if tok == "\\(" else "\\]"
            close = text.find(closer, i + 2)
            if close < 0:
                break
            out.append((i, close + 2, text[i + 2 : close]))
            i = close + 2
        else:
            opener = len(tok)
            close = _dollar_close(text, i + opener, tok)
            if close < 0:
                i += opener
                continue
            content = text[i + opener : close]
            if opener == 2 or "\n" not in content:  # an inline span does not cross a line
                out.append((i, close + opener, content))
                i = close + opener
            else:
                i += opener
    return out


def _dollar_close(text: str, start: int, closer: str) -> int:
    close = text.find(closer, start)
    while close > 0 and text[close - 1] == "\\":  # \$ is a dollar sign
        close = text.find(closer, close + 1)
    return close


def _chain_value(content: str) -> str:
    """``\\frac{-8}{-4} + 1 = 2 + 1 = 3`` -> ``3``: a computation written out ends in its value.

    Only when every left part is arithmetic without letters: ``y = 2x`` and ``2x - 4y = 8`` stay.
    """
    parts = [p.strip() for p in content.split("=")]
    if len(parts) < 2 or not all(parts):
        return content
    if any(re.search(r"[a-zA-Z]", _CMD_RE.sub("", p)) for p in parts[:-1]):
        return content
    if not all(_CHAIN_LHS_RE.search(p) for p in parts[:-1]):
        return content
    return parts[-1]


def last_math_or_number(text: str) -> str | None:
    """The last math environment's content, or a plain number written after it."""
    # The final answer is near the end: a bounded tail keeps megabyte outputs fast.
    text = _HOPE_RE.sub("", _SPECIAL_TOKEN_RE.sub("", text[-_TAIL_CHARS:]))
    envs = _math_envs(text)
    env_end = envs[-1][1] if envs else 0
    if _OPEN_MATH_RE.search(text, env_end):
        return None  # the text stops inside a formula ("... $\\tan A = \\fra"): cut off, no answer
    number = None
    for m in _NUMBER_RE.finditer(text, env_end):
        number = m
    if number is not None:
        return number.group(0).strip()
    for _, _, content in reversed(envs):
        content = content.strip().rstrip(".,;").strip()
        if content and len(content) <= MAX_ANSWER_CHARS:
            return _chain_value(content)
    return None


def lenient_answer(text: str) -> str | None:
    """The rungs after the box and the answer phrase (see the module docstring)."""
    return bare_answer(text) or last_math_or_number(text)
