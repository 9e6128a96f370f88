"""The fields of an evaluation doc: which names are read, and what makes a doc unusable.

Hub and local copies spell fields differently (Maxwell-Jia/AIME_2024: Problem/Answer/ID). Shared by
the lm-eval glue (utils.py, which refuses an unusable doc before any generation) and
`ssb-tasks --check-data` (which reports every unusable line); no lm-eval import here.
"""

from __future__ import annotations

from ssb_plugin.fields import ANSWER, TEXT, value_problem

QUESTION_FIELDS = ("problem", "Problem", "question")
ANSWER_FIELDS = ("answer", "Answer")


def _first(doc: dict, names: tuple[str, ...]):
    return next((name for name in names if doc.get(name) is not None), None)


def doc_problem(doc: dict) -> str | None:
    """Why the doc cannot be evaluated (no question, no answer, a wrong-typed value), or None."""
    for names, expect in ((QUESTION_FIELDS, TEXT), (ANSWER_FIELDS, ANSWER)):
        name = _first(doc, names)
        if name is None:
            return f"none of the fields {list(names)} (keys: {sorted(doc)})"
        problem = value_problem(doc[name], name, expect)
        if problem:
            return problem
    return None


def question_answer(doc: dict, where: str) -> tuple[str, str]:
    """(question, answer as text) of a usable doc; ValueError naming `where` otherwise."""
    problem = doc_problem(doc)
    if problem:
        raise ValueError(f"{where}: {problem}")
    answer = doc[_first(doc, ANSWER_FIELDS)]
    return doc[_first(doc, QUESTION_FIELDS)].strip(), str(answer).strip()
