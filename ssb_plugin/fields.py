"""The one input policy of every grading entry point (ssb-grade, grade(), lm-eval tasks, ssb-curate).

A field that is missing, null or of the wrong type means the wrong file or the wrong column, not a
wrong answer: it is refused before any work, naming the row (ssb-grade: exit 2; `grade()`:
TypeError; the lm-eval task loader and ssb-curate: an error). Values are never stringified (a list
is not its printout). A field that is present with the right type but carries no answer (no box,
no `####`, empty text) is graded or counted as such (`no_answer`, `bad_input`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

TEXT = "a string"
ANSWER = "a string or a number"


def is_answer(value: Any) -> bool:
    """A gold answer: a string or a finite number (AIME golds are ints), never a bool."""
    if isinstance(value, str):
        return True
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _json_type(value: Any) -> str:
    for types, name in (
        (bool, "a boolean"),
        (int | float, "a number"),
        (str, "a string"),
        (list | tuple, "a list"),
        (dict, "an object"),
    ):
        if isinstance(value, types):
            return name
    return type(value).__name__


def value_problem(value: Any, name: str, expect: str) -> str | None:
    """Why `value` cannot be used as field `name` (None when it can)."""
    if value is None:
        return f"{name!r} is null"
    ok = isinstance(value, str) if expect == TEXT else is_answer(value)
    return None if ok else f"{name!r} is {_json_type(value)}, expected {expect}"


def field_problem(row: dict, name: str, expect: str) -> str | None:
    """Why row[name] cannot be used (missing, null, wrong type), or None."""
    if name not in row:
        return f"no {name!r} field"
    return value_problem(row[name], name, expect)


def summarise(problems: list[str], limit: int = 5) -> str:
    """'3 rows with bad fields: a; b; c' (the first `limit` named)."""
    head = "; ".join(problems[:limit])
    more = f"; ... and {len(problems) - limit} more" if len(problems) > limit else ""
    return f"{len(problems)} row(s) with unusable fields: {head}{more}"


def row_problems(rows: Iterable[tuple[str, dict]], specs: dict[str, str]) -> list[str]:
    """'LABEL: problem' for every (label, row) whose fields in `specs` ({name: expect}) are unusable;
    labels name the row for a person ('in.jsonl line 3')."""
    out = []
    for label, row in rows:
        for name, expect in specs.items():
            p = field_problem(row, name, expect)
            if p:
                out.append(f"{label}: {p}")
    return out
