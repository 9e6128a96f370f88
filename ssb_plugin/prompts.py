"""The prompts of both roles. Curation (student + teacher side) and the lm-eval tasks import these,
so the student is evaluated in exactly the format it is trained on."""

from __future__ import annotations

import re

# The reference code's "expert math tutor" prompt, written without the stray indentation and
# trailing newline its teacher copy carried (docs/design.md, "Prompts").
SYSTEM_PROMPT = (
    "You are an expert math tutor. Solve the problem with detailed step-by-step reasoning, "
    "without skipping steps. At the end, write the final answer in \\boxed{}."
)

# The teacher sees its own two attempts; it must write a standalone solution that never mentions them.
TEACHER_TEMPLATE = """Below are a math problem and two solutions written by students. An automatic checker, which only compares the final boxed answer, marked the first solution correct and the second one incorrect.

Problem:
{question}

Correct solution:
{correct}

Incorrect solution:
{wrong}

Write a detailed, standalone, step-by-step solution to the problem. Explain each step, and warn about the mistakes a solver is likely to make on this problem, such as the one that leads to the wrong answer. Do not mention the solutions above, students, attempts, or any checker: write as if you were solving the problem from scratch. End with the final answer in \\boxed{{}}, matching the correct answer."""

# Teacher outputs that talk about the hint leak information the student never sees; they are dropped.
# A phrase the question itself uses ("There are 30 students in the class") is the problem's own
# wording, not a reference to the hint: `leaks_hint` ignores those (GSM8K is full of students).
LEAK_PATTERN = re.compile(
    r"\bstudents?\b"
    r"|\b(auto(matic)?[- ]?)?(checker|evaluator)\b"
    r"|\b(the|first|second|previous|earlier|given|provided|above|both|two|other|their|each|"
    r"correct|incorrect|wrong) (attempts?|responses?|solutions? (above|shown|given|provided))\b"
    r"|\b(the|this|that) (incorrect|wrong|flawed|correct) solution\b",
    re.IGNORECASE,
)


def student_messages(question: str, system_prompt: str = SYSTEM_PROMPT) -> list[dict[str, str]]:
    """The chat the student sees: system prompt + the bare question."""
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": question.strip()}]


def teacher_messages(
    question: str, correct: str, wrong: str, system_prompt: str = SYSTEM_PROMPT
) -> list[dict[str, str]]:
    """The hinted chat the teacher sees: the problem with one correct and one wrong own attempt."""
    user = TEACHER_TEMPLATE.format(question=question.strip(), correct=correct.strip(), wrong=wrong.strip())
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": user}]


def _phrase(match: str) -> str:
    """A matched phrase, lower-case, each word without a plural s: "Students" and "student" agree."""
    return " ".join(w.removesuffix("s") for w in match.lower().split())


def leaks_hint(text: str, question: str = "") -> bool:
    """True if a teacher solution refers to the attempts it was shown: a LEAK_PATTERN phrase that the
    question itself does not contain."""
    own = {_phrase(m.group(0)) for m in LEAK_PATTERN.finditer(question)}
    return any(_phrase(m.group(0)) not in own for m in LEAK_PATTERN.finditer(text))
