"""The public entry points: ``is_equivalent``, ``grade`` and ``GradeResult``.

Two paths: an exact in-process check for answers that are bounded by construction (same spelling,
plain numbers, text, choice letters, and tuples/sets/intervals of those), and the sympy check in a
worker subprocess for everything else, under a hard deadline. Nothing here raises on bad input.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .compare import balanced, compare_answers
from .extract import MAX_ANSWER_CHARS, extract_answer
from .gold import gold_answer
from .leaves import fast_leaf_equal
from .pool import WorkerTimeout, get_pool
from .structure import NeedSymbolic

DEFAULT_TIMEOUT = 2.0
REASONS = ("match", "mismatch", "no_answer", "timeout", "error")


@dataclass(frozen=True)
class GradeResult:
    correct: bool
    extracted: str | None
    reason: str  # one of REASONS


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


def check(pred: str, gold: str, timeout: float = DEFAULT_TIMEOUT) -> tuple[bool, str]:
    """``(equal, reason)`` with reason in match / mismatch / timeout / error."""
    start = time.monotonic()
    try:
        _prestart()
        pred, gold = _as_text(pred), _as_text(gold)
        if pred is None or gold is None:
            return False, "error"
        gold = gold_answer(gold)
        if not pred.strip() or not gold.strip():
            return False, "mismatch"
        if len(pred) > MAX_ANSWER_CHARS or len(gold) > MAX_ANSWER_CHARS:
            return (pred.strip() == gold.strip()), ("match" if pred.strip() == gold.strip() else "mismatch")
        try:
            eq = compare_answers(pred, gold, fast_leaf_equal)
            return eq, "match" if eq else "mismatch"
        except NeedSymbolic:
            pass
        except RecursionError:
            pass
        if not (balanced(pred) and balanced(gold)):
            return False, "mismatch"  # cut-off LaTeX: not worth a parser's time, never equal
        deadline = start + max(0.0, DEFAULT_TIMEOUT if timeout is None else float(timeout))
        resp = get_pool().call({"pred": pred, "gold": gold}, deadline)
        if "eq" in resp:
            return bool(resp["eq"]), "match" if resp["eq"] else "mismatch"
        return False, "error"
    except WorkerTimeout:
        return False, "timeout"
    except Exception:  # WorkerError, or anything unexpected: grading never raises
        return False, "error"


def is_equivalent(pred: str, gold: str, *, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Whether answer ``pred`` means the same as ``gold``; returns within ``timeout`` seconds."""
    return check(pred, gold, timeout)[0]


def grade(output: str, gold: str, *, timeout: float = DEFAULT_TIMEOUT, fallback: bool = False) -> GradeResult:
    """Extract the final answer from a model ``output`` and compare it with ``gold``."""
    try:
        extracted = extract_answer(output, fallback=fallback)
    except Exception:
        return GradeResult(False, None, "error")
    if extracted is None:
        return GradeResult(False, None, "no_answer")
    eq, reason = check(extracted, gold, timeout)
    return GradeResult(eq, extracted, reason)


def warmup(timeout: float = 60.0, workers: int = 1) -> bool:
    """Start ``workers`` workers now and wait for them (a fresh one needs about a second)."""
    try:
        return get_pool().warmup(timeout, workers)
    except Exception:
        return False
