import pytest

from ssb_plugin.prompts import SYSTEM_PROMPT, leaks_hint, student_messages, teacher_messages


def test_student_sees_only_the_question():
    msgs = student_messages("  What is 2 + 3?\n")
    assert msgs == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "What is 2 + 3?"},
    ]
    assert "\\boxed{}" in SYSTEM_PROMPT


def test_teacher_prompt_carries_both_attempts_without_indentation():
    user = teacher_messages("Q?", "right work \\boxed{5}", "wrong work \\boxed{6}")[1]["content"]
    assert "Q?" in user and "\\boxed{5}" in user and "\\boxed{6}" in user
    assert user.index("\\boxed{5}") < user.index("\\boxed{6}")
    assert not any(line.startswith(" ") for line in user.splitlines())


@pytest.mark.parametrize(
    "text",
    [
        "The student forgot to carry.",
        "In the first attempt we add.",
        "the solutions above are wrong",
        "Unlike the incorrect solution, we multiply.",
        "The automatic checker marked it.",
    ],
)
def test_leaks_are_caught(text):
    assert leaks_hint(text)


@pytest.mark.parametrize(
    "text",
    [
        "Let us attempt to factor.",
        "A common mistake is to add instead of multiply.",
        "The solution is x = 3.",
        "The correct answer is \\boxed{5}.",
    ],
)
def test_ordinary_solutions_are_not_flagged(text):
    assert not leaks_hint(text)
