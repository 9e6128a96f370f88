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


# Real GSM8K train problems (openai/gsm8k, main) whose own wording trips the leak pattern.
GSM8K_STUDENT_PROBLEMS = [
    (
        "There are 40 students in a class. If 1/10 are absent, 3/4 of the students who are present are in "
        "the classroom, and the rest are in the canteen, how many students are in the canteen?",
        "Out of the 40, 40 x 1/10 = 4 students are absent. So, 40 - 4 = 36 students are present in school. "
        "Out of the 36, 36 x 3/4 = 27 students are in the classroom. This means, 36 - 27 = 9 students are in "
        "the canteen. The answer is \\boxed{9}.",
    ),
    (
        "12 archeology students and 4 teachers went on a field trip to a dinosaur museum. Student tickets "
        "cost $1 each, and adult tickets cost $3 each. How much did the museum tickets cost in all?",
        "The cost of the 12 student tickets is 12 * $1 = $12. The cost of the 4 teacher tickets is "
        "4 * $3 = $12. Together the museum tickets cost \\boxed{24} dollars.",
    ),
    (
        "Travis wants to fly to Australia. The regular tickets cost about $2000. As Travis is a student, he "
        "will get a 30% discount on this price. How much does he need to pay for his ticket?",
        "Since Travis is a student, his discount is 30/100 * 2000 = 600, so he pays \\boxed{1400}.",
    ),
]


@pytest.mark.parametrize("question, answer", GSM8K_STUDENT_PROBLEMS)
def test_leak_filter_keeps_the_problems_own_students(question, answer):
    assert leaks_hint(answer)  # the bare pattern matches: it is the question that makes it legitimate
    assert not leaks_hint(answer, question)


@pytest.mark.parametrize("question, answer", GSM8K_STUDENT_PROBLEMS)
def test_leak_filter_still_flags_references_to_the_hint(question, answer):
    for leak in (
        " Unlike the incorrect solution, we subtract first.",
        " The second attempt forgot the discount.",
        " The automatic checker only compares the boxed answer.",
    ):
        assert leaks_hint(answer + leak, question), leak
