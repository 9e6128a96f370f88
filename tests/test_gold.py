"""GSM8K's `#### N` gold convention lives in one place (ssb_plugin.grading.gold); every reader of
golds (curation, the lm-eval task, GRPO prep, the grader) must agree with it."""

from __future__ import annotations

import pytest

from ssb_plugin.curate.problems import parse_gold
from ssb_plugin.grading import check
from ssb_plugin.grading.gold import gold_answer, gsm8k_gold
from ssb_plugin.train.grpo import gold_of

WORKED = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n48+24 = <<48+24=72>>72\n#### 1,072"


@pytest.mark.parametrize(
    "text, gold",
    [
        (WORKED, "1,072"),
        ("a #### 3 then #### 4 ", "4"),  # the last mark wins
        ("#### -5\n", "-5"),
        ("no mark here: 7", None),
    ],
)
def test_gsm8k_gold(text, gold):
    assert gsm8k_gold(text) == gold


def test_gold_answer_falls_back_to_the_last_box_then_the_text():
    assert gold_answer(WORKED) == "1,072"
    assert gold_answer("so $\\boxed{2}$ then $\\boxed{\\frac{1}{2}}$") == "\\frac{1}{2}"
    assert gold_answer("42") == "42"


def test_every_gold_reader_agrees():
    import datasets

    from ssb_plugin.tasks import utils  # imports lm-eval: loaded here, not at collection

    row = {"question": "Q", "answer": WORKED}
    expected = gsm8k_gold(WORKED)
    assert parse_gold(WORKED, "gsm8k") == parse_gold(WORKED, "auto") == expected
    assert utils.process_docs_gsm8k(datasets.Dataset.from_list([row]))[0]["answer"] == expected
    assert gold_of(row) == expected
    assert check("1072", WORKED)[0] and not check("72", WORKED)[0]
    # a gold without the mark: curation refuses it, the others take the bare text
    assert parse_gold("7", "gsm8k") is None
    assert gold_of({"answer": " 7 "}) == "7"
    assert (
        utils.process_docs_gsm8k(datasets.Dataset.from_list([{"question": "Q", "answer": " 7 "}]))[0][
            "answer"
        ]
        == "7"
    )
