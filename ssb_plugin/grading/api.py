"""The public entry points: ``is_equivalent``, ``grade`` and ``GradeResult``.

Two paths: an exact in-process check for answers that are bounded by construction (same spelling,
plain numbers, text, choice letters, and tuples/sets/intervals of those), and the sympy check in a
worker subprocess for everything else, under a hard deadline. Nothing here raises on bad answer
text; arguments of the wrong type (None, a list) or a non-positive timeout raise at the entry.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from enum import StrEnum

from ssb_plugin.fields import ANSWER, TEXT, value_problem

from .boxes import MAX_ANSWER_CHARS
from .compare import balanced, compare_answers
from .extract import LENIENT, MODES, extract_answer
from .gold import gold_answer
from .leaves import fast_leaf_equal
from .pool import WorkerTimeout, get_pool
from .structure import NeedSymbolic

DEFAULT_TIMEOUT = 2.0


class Reason(StrEnum):
    """Why a grade came out as it did; the values are what ``ssb-grade`` writes as ``grade_reason``."""

    MATCH = "match"
    MISMATCH = "mismatch"
    NO_ANSWER = "no_answer"  # nothing to extract
    TIMEOUT = "timeout"  # the symbolic check ran out of time: graded False
    ERROR = "error"  # bad input or a worker failure: graded False

    __repr__ = str.__repr__  # GradeResult prints as reason='match'


REASONS = tuple(Reason)


def _verdict(eq: bool) -> Reason:
    return Reason.MATCH if eq else Reason.MISMATCH


@dataclass(frozen=True)
class GradeResult:
    correct: bool
    extracted: str | None
    reason: Reason


def _as_text(value) -> str | None:
    """Answers arrive as strings, or as numbers from JSON (AIME golds are ints)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _prestart() -> None:
    # The first grading call (in each process) starts a worker in the background, so that the first
    # answer needing sympy rarely pays the worker's start-up (about a second) inside its own bound.
    get_pool().prestart()


def check(pred: str, gold: str, timeout: float | None = DEFAULT_TIMEOUT) -> tuple[bool, Reason]:
    """``(equal, reason)`` with reason in match / mismatch / timeout / error."""
    start = time.monotonic()
    try:
        _prestart()
        pred_text, gold_text = _as_text(pred), _as_text(gold)
        if pred_text is None or gold_text is None:
            return False, Reason.ERROR
        gold_text = gold_answer(gold_text)
        if not pred_text.strip() or not gold_text.strip():
            return False, Reason.MISMATCH
        if len(pred_text) > MAX_ANSWER_CHARS or len(gold_text) > MAX_ANSWER_CHARS:
            same = pred_text.strip() == gold_text.strip()
            return same, _verdict(same)
        try:
            eq = compare_answers(pred_text, gold_text, fast_leaf_equal)
            return eq, _verdict(eq)
        except NeedSymbolic:
            pass
        except RecursionError:
            pass
        if not (balanced(pred_text) and balanced(gold_text)):
            return False, Reason.MISMATCH  # cut-off LaTeX: not worth a parser's time, never equal
        deadline = start + max(0.0, DEFAULT_TIMEOUT if timeout is None else float(timeout))
        resp = get_pool().call({"pred": pred_text, "gold": gold_text}, deadline)
        if "eq" in resp:
            return bool(resp["eq"]), _verdict(bool(resp["eq"]))
        return False, Reason.ERROR
    except WorkerTimeout:
        return False, Reason.TIMEOUT
    except Exception:  # WorkerError, or anything unexpected: grading never raises
        return False, Reason.ERROR


def _check_call(text, text_name: str, text_kind: str, gold, timeout) -> None:
    """Entry validation (``ssb_plugin.fields``): unusable arguments are the caller's error, never a
    wrong answer, and nothing is stringified. TypeError/ValueError naming the argument."""
    problem = value_problem(text, text_name, text_kind) or value_problem(gold, "gold", ANSWER)
    if problem:
        raise TypeError(problem)
    if timeout is not None and not (
        isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0
    ):
        raise ValueError(f"timeout must be a positive number of seconds (or None), got {timeout!r}")


def is_equivalent(pred: str, gold: str, *, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Whether answer ``pred`` means the same as ``gold``; returns within ``timeout`` seconds."""
    _check_call(pred, "pred", ANSWER, gold, timeout)
    return check(pred, gold, timeout)[0]


def grade(
    output: str, gold: str, *, timeout: float = DEFAULT_TIMEOUT, fallback: bool = False, mode: str = LENIENT
) -> GradeResult:
    """Extract the final answer from a model ``output`` and compare it with ``gold``.

    ``mode``: ``"lenient"`` (default; outputs, bare answers and LaTeX snippets alike) or
    ``"strict"`` (only a boxed or phrased answer counts: curation), see ``extract_answer``.
    """
    if mode not in MODES:
        raise ValueError(f"unknown extraction mode {mode!r}; expected one of {MODES}")
    _check_call(output, "output", TEXT, gold, timeout)
    try:
        extracted = extract_answer(output, fallback=fallback, mode=mode)
    except Exception:
        return GradeResult(False, None, Reason.ERROR)
    if extracted is None:
        return GradeResult(False, None, Reason.NO_ANSWER)
    eq, reason = check(extracted, gold, timeout)
    return GradeResult(eq, extracted, reason)


def warmup(timeout: float = 60.0, workers: int = 1) -> bool:
    """Start ``workers`` workers now and wait for them (a fresh one needs about a second)."""
    try:
        return get_pool().warmup(timeout, workers)
    except Exception:
        return False
