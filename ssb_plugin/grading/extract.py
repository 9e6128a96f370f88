"""Find the final answer in a model's output.

Order of preference: the last ``\\boxed{}`` / ``\\fbox{}`` (``\\boxed 5`` too), then the last answer
phrase ("final answer is", "the answer is", "Answer:", GSM8K ``#### N``), then, only when asked, the
last number; in lenient mode the rungs of ``ladder`` come between. The box scanner and the phrase
reader both modes share are in ``boxes``. Every step is a linear scan or a regex without nested
quantifiers, so megabyte inputs stay fast.
"""

from __future__ import annotations

import re

from . import ladder
from .boxes import MAX_ANSWER_CHARS, last_boxed, phrase_answer

# Extraction modes: lenient takes answers however they are written; strict only boxed or phrased.
LENIENT, STRICT = "lenient", "strict"
MODES = (LENIENT, STRICT)
_NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def last_number(text: str) -> str | None:
    """The last number in ``text`` (thousands separators kept; the normaliser removes them)."""
    last = None
    for m in _NUMBER_RE.finditer(text):
        last = m
    return None if last is None else last.group(0).rstrip(",")


def extract_answer(text: str, *, fallback: bool = False, mode: str = LENIENT) -> str | None:
    """The final answer written in ``text``, or ``None`` when there is none.

    ``mode="lenient"`` (the default, for grading and evaluation) takes answers however they are
    handed over: boxed, after an answer phrase, a bare answer, or the last math environment (see
    ``ladder``). ``mode="strict"`` (curation) takes only the boxed answer or the answer phrase.
    ``fallback=True`` adds the last number in the text as a final resort in either mode.
    """
    if mode not in MODES:
        raise ValueError(f"unknown extraction mode {mode!r}; expected one of {MODES}")
    if not isinstance(text, str) or not text:
        return None
    ans = None
    if mode == LENIENT:
        ans = ladder.named_boxes(text) or ladder.phrase_after_box(text)
    if ans is None:
        ans = last_boxed(text)
    if ans is None:
        ans = phrase_answer(text)
        if ans is not None and mode == LENIENT:
            ans = ladder.refine_phrased(ans)
    if ans is None and mode == LENIENT:
        ans = ladder.lenient_answer(text)
    if ans is None and fallback:
        ans = last_number(text)
    if ans is None or len(ans) > MAX_ANSWER_CHARS:
        return None
    return ans
