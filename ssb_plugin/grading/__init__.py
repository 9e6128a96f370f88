"""Answer grading for maths outputs: extraction, equivalence with a hard time bound, paper protocol.

    from ssb_plugin.grading import extract_answer, is_equivalent, grade, GradeResult, paper_match

Importing this package is cheap (no sympy): the symbolic check runs in a worker subprocess that
starts on first need. See docs/grading.md for the conventions.
"""

from .api import DEFAULT_TIMEOUT, REASONS, GradeResult, Reason, check, grade, is_equivalent, warmup
from .extract import LENIENT, MODES, STRICT, extract_answer
from .paper import paper_match

__all__ = [
    "DEFAULT_TIMEOUT",
    "REASONS",
    "GradeResult",
    "LENIENT",
    "MODES",
    "STRICT",
    "Reason",
    "check",
    "extract_answer",
    "grade",
    "is_equivalent",
    "paper_match",
    "warmup",
]
