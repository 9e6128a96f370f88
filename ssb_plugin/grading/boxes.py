"""The two rungs both extraction modes share: the last box and the answer phrase.

``last_boxed`` finds the last complete ``\\boxed{}`` / ``\\fbox{}`` (``\\boxed 5`` too) and joins
boxes written as parts of one answer; ``phrase_answer`` reads what follows the last "final answer
is" / "the answer is" / "Answer:" / GSM8K ``####``. Every scan is linear in the text.
"""

from __future__ import annotations

import re

_BOX_COMMANDS = ("\\boxed", "\\fbox")
# How many trailing box candidates to try when the last ones are unbalanced (truncated output):
# bounds the work at O(_MAX_BOX_TRIES * len(text)).
_MAX_BOX_TRIES = 8
# Boxes separated only by this are one answer written as several boxes.
_SPACING = r"(?:\s|\$|\\[,;:! ()\[\]]|\\\\|\\q?quad(?![a-zA-Z])|~)*"
_JOIN_GAP_RE = re.compile(
    rf"{_SPACING}(?:,|;|&|\\&|\||\band\b|\bor\b|\\text\{{\s*(?:and|or|,)\s*\}})?{_SPACING}\Z"
)
# Boxes with a short clause between them ("\boxed{(2,5)} for the first part and \boxed{(4,1)}")
# are the parts of one answer, unless the clause ends a sentence, computes, or takes a box back.
_MAX_CLAUSE_GAP = 80
_CLAUSE_BREAK_RE = re.compile(
    r"[.!?](?:\s|\$|\Z)|\n\s*\n|[=+*/^<>]|\\(?:cdot|times|div|approx|Rightarrow|implies|to)(?![a-zA-Z])"
    r"|\b(?:not|no|wrong|incorrect|mistake|instead|rather|actually|correct|wait|but|so|thus|hence"
    r"|therefore|then|gives?|giving|means|which|yields?|equals?|total|final|answer|because|since"
    r"|finally|later|now|again|after|afterwards|new|updated|revised|error|check|redo|recheck"
    r"|recompute|oops|sorry|hmm|really)\b",
    re.IGNORECASE,
)
_MAX_JOINED_BOXES = 10
_MAX_JOIN_GAP = 200  # a longer gap is prose, and a bounded gap keeps the join regex cheap
# An answer longer than this is not an answer (and would only slow the equivalence check).
MAX_ANSWER_CHARS = 10_000

PHRASE_RE = re.compile(
    r"(?:final\s+answer\**\s*(?:is\b|:)|\banswer\**\s+is\b|\banswer\**\s*:|####)[ \t]*:?",
    re.IGNORECASE,
)
_PROSE_RE = re.compile(r"(?<![\\a-zA-Z])[a-zA-Z]{3,}")
_LEADING_NUMBER_RE = re.compile(r"\s*\\?\$?\s*(-?\d+(?:,\d{3})*(?:\.\d+)?(?:/\d+)?)(?=[\s,;:)]|$)")
_HOPE = "i hope it is correct"
_MATH_OPENERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))


def _balanced_group(text: str, open_pos: int) -> int | None:
    """Index of the ``}`` closing the ``{`` at ``open_pos``; escaped ``\\{``/``\\}`` don't count."""
    depth = 0
    i = open_pos
    n = min(len(text), open_pos + MAX_ANSWER_CHARS + 2)  # a longer box is not an answer
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def _box_argument(text: str, cmd_end: int) -> str | None:
    """The argument of a box command ending at ``cmd_end``: ``{...}`` or a bare token (``\\boxed 5``)."""
    n = len(text)
    i = cmd_end
    if i < n and text[i].isalpha():  # \boxedx is another command, not a box
        return None
    while i < n and text[i] in " \t":
        i += 1
    if i >= n:
        return None
    if text[i] == "{":
        close = _balanced_group(text, i)
        return None if close is None else text[i + 1 : close]
    j = i
    while j < n and not text[j].isspace() and text[j] not in "$}":
        j += 1
    return text[i:j] if j > i else None


def _last_box_span(text: str, end: int) -> tuple[int, str] | None:
    """``(start, content)`` of the last complete box command starting before ``end``."""
    for _ in range(_MAX_BOX_TRIES):
        pos, cmd = max((text.rfind(c, 0, end), c) for c in _BOX_COMMANDS)
        if pos < 0:
            return None
        arg = _box_argument(text, pos + len(cmd))
        if arg is not None and arg.strip():
            return pos, arg.strip()
        end = pos
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last complete ``\\boxed``/``\\fbox`` in ``text``.

    Boxes written side by side as one answer (``\\boxed{1}, \\boxed{2}``, ``\\boxed{1} and
    \\boxed{2}``, ``\\boxed{1} \\& \\boxed{2}``, or with a short clause between them that does not
    end a sentence: ``\\boxed{1} for part (a) and \\boxed{2}``) are joined into the list ``1, 2``.
    """
    found = _last_box_span(text, len(text))
    if found is None:
        return None
    start, content = found
    parts = [content]
    for _ in range(_MAX_JOINED_BOXES):
        prev = _last_box_span(text, start)
        if prev is None:
            break
        gap_start = _box_end(text, prev[0])
        if gap_start is None or not _joins(text, gap_start, start):
            break
        start = prev[0]
        if prev[1] != parts[0]:
            parts.insert(0, prev[1])
    return ", ".join(parts)


def _joins(text: str, gap_start: int, gap_end: int) -> bool:
    """Whether the text between two boxes makes them the parts of one answer."""
    if gap_end - gap_start > _MAX_JOIN_GAP:
        return False
    if _JOIN_GAP_RE.match(text, gap_start, gap_end):
        return True
    gap = text[gap_start:gap_end]
    return len(gap) <= _MAX_CLAUSE_GAP and _CLAUSE_BREAK_RE.search(gap) is None


def box_spans(text: str, limit: int) -> list[tuple[int, int, str]]:
    """``(start, end, content)`` of up to ``limit`` last complete braced boxes, in text order."""
    spans: list[tuple[int, int, str]] = []
    end = len(text)
    while len(spans) < limit:
        found = _last_box_span(text, end)
        if found is None:
            break
        stop = _box_end(text, found[0])
        if stop is not None:
            spans.insert(0, (found[0], stop, found[1]))
        end = found[0]
    return spans


def _box_end(text: str, box_start: int) -> int | None:
    """Index just past the box command starting at ``box_start`` (braced form only)."""
    brace = text.find("{", box_start)
    if brace < 0 or brace - box_start > 8:
        return None
    close = _balanced_group(text, brace)
    return None if close is None else close + 1


def _math_span(rest: str) -> str | None:
    """If ``rest`` opens a math environment, its content (up to the matching closer)."""
    for opener, closer in _MATH_OPENERS:
        if rest.startswith(opener):
            close = rest.find(closer, len(opener))
            while close > 0 and closer == "$" and rest[close - 1] == "\\":  # \$ is a dollar sign
                close = rest.find(closer, close + 1)
            if close > len(opener):
                return rest[len(opener) : close]
            return None
    return None


def _phrase_answer(rest: str) -> str | None:
    """The answer following an answer phrase: a math span, or the rest of the sentence."""
    rest = rest.lstrip(" \t*:")
    if rest.startswith("\n"):
        rest = rest.lstrip()
    math = _math_span(rest)
    if math is not None:
        ans = math
    else:
        line_end = rest.find("\n")
        line = rest if line_end < 0 else rest[:line_end]
        hope = line.lower().find(_HOPE)  # a plain find: a \s*-led regex is quadratic on spaces
        line = line if hope < 0 else line[:hope]
        # A sentence ends at ". " (a decimal point is followed by a digit, not a space).
        stop = line.find(". ")
        ans = line if stop < 0 else line[:stop]
    ans = ans.strip().strip("*").strip().rstrip(".").rstrip().strip("*").strip()  # **5**.
    if math is None and _PROSE_RE.search(ans):
        # "The largest $n$ is 34": in a sentence, the answer is what follows the last " is ".
        if " is " in ans:
            ans = ans.rsplit(" is ", 1)[1].strip()
        # "15, since 3 + 12 = 15": a leading number followed by prose is the answer.
        lead = _LEADING_NUMBER_RE.match(ans)
        if lead and _PROSE_RE.search(ans[lead.end() :]):
            ans = lead.group(1)
        ans = ans.rstrip(".").rstrip()
        inner = _math_span(ans)
        if inner is not None and ans.endswith("$") and ans.count("$") == 2:
            ans = inner.strip()
    if len(ans) >= 2 and ans[0] == "$" and ans[-1] == "$":
        ans = ans.strip("$").strip()
    return ans or None


def phrase_answer(text: str) -> str | None:
    """Answer after the last "final answer is" / "the answer is" / "Answer:" / ``####``."""
    last = None
    for m in PHRASE_RE.finditer(text):
        last = m
    if last is None:
        return None
    rest = text[last.end() : last.end() + MAX_ANSWER_CHARS]
    boxed = last_boxed(rest)
    if boxed is not None:
        return boxed
    return _phrase_answer(rest)
