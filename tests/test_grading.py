"""Grader: extraction, every answer family in both directions, paper protocol, GradeResult."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ssb_plugin.grading import GradeResult, extract_answer, grade, is_equivalent, paper_match, warmup


@pytest.fixture(scope="module", autouse=True)
def _warm_worker():
    # The first symbolic check would otherwise pay the worker's start-up inside its 2 s bound.
    assert warmup(60)


# --- extraction --------------------------------------------------------------------------------------

EXTRACT = [
    ("so \\boxed{5} and finally \\boxed{7}.", "7"),
    ("nested $\\boxed{\\frac{1}{\\sqrt{2}}}$", "\\frac{1}{\\sqrt{2}}"),
    ("sets \\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
    ("\\fbox{12}", "12"),
    ("thus \\boxed 5 is it", "5"),
    ("the box $\\boxed {3}$", "3"),
    ("last complete box wins \\boxed{4} then truncated \\boxed{5", "4"),
    ("Final Answer: The final answer is $\\frac{2}{3}$. I hope it is correct.", "\\frac{2}{3}"),
    ("The final answer is 42.", "42"),
    ("Therefore the answer is 3.5.", "3.5"),
    ("the answer is: 17", "17"),
    ("**Answer:** 12", "12"),
    ("**Answer**: 12", "12"),
    ("**Final Answer**: $\\frac{1}{2}$", "\\frac{1}{2}"),
    ("The answer is **5**.", "5"),
    ("#### $18", "$18"),
    ("Answer: $x = 2$", "x = 2"),
    ("Natalia sold 48+24 = 72 clips.\n#### 72", "72"),
    ("#### 1,234", "1,234"),
    ("The answer is $\\$18.90$.", "\\$18.90"),
    ("My answer is 12.", "12"),
    # boxes side by side are one answer
    ("the roots are $\\boxed{1}$ and $\\boxed{-2}$.", "1, -2"),
    ("\\boxed{5} \\text{ or } \\boxed{6}", "5, 6"),
    ("$\\boxed{1}\\boxed{2}$", "1, 2"),
    ("Final Answer: The largest $n$ is 34.", "34"),
    ("The answer is 15, since 3+12=15.", "15"),
    ("The answer is 1,500 apples.", "1,500"),
    ("The answer is Evelyn.", "Evelyn"),
    ("first \\boxed{3}. Then much more reasoning follows here. Final \\boxed{4}", "4"),
]


@pytest.mark.parametrize("text,expected", EXTRACT)
@pytest.mark.parametrize("mode", ["strict", "lenient"])
def test_extract(text, expected, mode):
    # A boxed or phrased answer is found the same way in both modes.
    assert extract_answer(text, mode=mode) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "I think it's about 5 or 6",
        "no answer here",
        "\\boxed{",
        "\\boxed{}",
        "\\boxedx 5",
        "x = 5",
        "$3/4$",
    ],
)
def test_extract_strict_none(text):
    # Strict (curation): only the boxed answer or an answer phrase counts.
    assert extract_answer(text, mode="strict") is None


@pytest.mark.parametrize(
    "text", ["", "no answer here", "\\boxed{", "\\boxed{}", "Let me think about this problem."]
)
def test_extract_lenient_none(text):
    assert extract_answer(text) is None


def test_a_later_phrase_revises_the_box_only_in_lenient_mode():
    text = "The final answer is \\boxed{9}. The answer is 8."
    assert extract_answer(text, mode="strict") == "9"
    assert extract_answer(text) == "8"
    assert extract_answer("So \\boxed{9}. The answer is correct.") == "9"  # no value: no revision


def test_extract_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        extract_answer("\\boxed{1}", mode="loose")


def test_extract_fallback_is_explicit_in_strict_mode():
    text = "She had 3 apples, then 5 more, so 8 apples."
    assert extract_answer(text, mode="strict") is None
    assert extract_answer(text, mode="strict", fallback=True) == "8"
    assert extract_answer("total 1,250.", mode="strict", fallback=True) == "1,250"
    assert extract_answer("\\boxed{2} and 9", fallback=True) == "2"  # a marked answer beats the fallback
    assert extract_answer("nothing numeric", fallback=True) is None


def test_extract_non_string():
    assert extract_answer(None) is None  # type: ignore[arg-type]
    assert extract_answer(123) is None  # type: ignore[arg-type]


# --- equivalence: every family, both directions ------------------------------------------------------

# The equivalence tables live in data files, one per family (benchmarks/grading_cases/conventions/;
# the benchmark scores the same files): equal rows by family, the near-misses, and answers as models
# write them against MATH-style golds. "symmetric": false marks the one-way conventions.
CONVENTIONS = Path(__file__).resolve().parents[1] / "benchmarks" / "grading_cases" / "conventions"
TABLES = {
    p.stem: [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    for p in sorted(CONVENTIONS.glob("*.jsonl"))
}
_OTHERS = ("near_misses", "model_spellings")
EQUIVALENT = [(r["pred"], r["gold"]) for fam, rows in TABLES.items() if fam not in _OTHERS for r in rows]
NOT_EQUIVALENT = [(r["pred"], r["gold"]) for r in TABLES["near_misses"]]
SYMMETRIC = [
    (r["pred"], r["gold"])
    for fam, rows in TABLES.items()
    if fam not in _OTHERS
    for r in rows
    if r["symmetric"]
]
REALISTIC = [(r["pred"], r["gold"], r["equal"]) for r in TABLES["model_spellings"]]


def test_convention_tables_cover_their_families():
    assert len(TABLES) >= 20 and all(TABLES.values())
    assert all(r["equal"] for fam, rows in TABLES.items() if fam not in _OTHERS for r in rows)
    assert not any(r["equal"] for r in TABLES["near_misses"])
    assert {r["equal"] for r in TABLES["model_spellings"]} == {True, False}


@pytest.mark.parametrize("pred,gold", EQUIVALENT)
def test_equivalent(pred, gold):
    assert is_equivalent(pred, gold), (pred, gold)


@pytest.mark.parametrize("pred,gold", NOT_EQUIVALENT)
def test_not_equivalent(pred, gold):
    assert not is_equivalent(pred, gold), (pred, gold)


@pytest.mark.parametrize("pred,gold", SYMMETRIC)
def test_equivalence_symmetric_where_conventions_are(pred, gold):
    assert is_equivalent(gold, pred), (gold, pred)


@pytest.mark.parametrize("pred,gold,expected", REALISTIC)
def test_realistic_pairs(pred, gold, expected):
    assert is_equivalent(pred, gold) is expected, (pred, gold)


# --- grade() -----------------------------------------------------------------------------------------


def test_grade_result_fields():
    r = grade("We get $\\boxed{\\frac{1}{2}}$.", "0.5")
    assert r == GradeResult(correct=True, extracted="\\frac{1}{2}", reason="match")
    r = grade("The answer is 7.", "8")
    assert (r.correct, r.extracted, r.reason) == (False, "7", "mismatch")
    r = grade("I am not sure.", "8")
    assert (r.correct, r.extracted, r.reason) == (False, None, "no_answer")
    with pytest.raises(AttributeError):
        r.correct = True  # frozen


def test_grade_fallback():
    assert grade("so she has 8 apples", "8", mode="strict").reason == "no_answer"
    r = grade("so she has 8 apples", "8", mode="strict", fallback=True)
    assert r.correct and r.extracted == "8"
    r = grade("so she has 8 apples", "8")  # lenient: the number the last sentence states
    assert r.correct and r.extracted == "8"


def test_grade_refuses_unusable_arguments():
    """The input policy (ssb_plugin.fields): a missing or wrong-typed argument is the caller's error,
    never graded as a wrong answer, and never stringified."""
    for output, gold in [(None, "1"), ("\\boxed{1}", None), (b"\\boxed{1}", "1"), (["\\boxed{5}"], [5])]:
        with pytest.raises(TypeError):
            grade(output, gold)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="'gold' is a list"):
        grade("\\boxed{5}", [5])  # type: ignore[arg-type]
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="timeout"):
            grade("\\boxed{1}", "1", timeout=bad)
    assert grade("\\boxed{204}", 204).correct  # type: ignore[arg-type] - AIME golds are ints
    assert is_equivalent("0.5", 0.5)  # type: ignore[arg-type]
    assert is_equivalent("\\frac12", "0.5", timeout=None)  # type: ignore[arg-type] - None: the default
    with pytest.raises(TypeError, match="boolean"):
        is_equivalent(True, "1")  # type: ignore[arg-type]


# --- paper protocol ------------------------------------------------------------------------------------


def test_paper_match_math500_is_literal():
    out = "so $\\boxed{\\frac{1}{2}}$"
    assert paper_match(out, "\\frac{1}{2}", "math500")
    assert not paper_match(out, "\\dfrac{1}{2}", "math500")
    assert not paper_match("so $\\boxed{0.5}$", "\\frac{1}{2}", "math500")
    assert not paper_match("the answer is \\frac{1}{2}", "\\frac{1}{2}", "math500")


def test_paper_match_aime_is_substring():
    assert paper_match("I think 1204 is it", "204", "aime")  # the published protocol's false positive
    assert paper_match("\\boxed{204}", 204, "aime")  # type: ignore[arg-type]
    assert not paper_match("\\boxed{205}", "204", "aime")


def test_paper_match_rejects_unknown_protocol():
    with pytest.raises(ValueError, match="protocol"):
        paper_match("x", "1", "gsm8k")


# --- real data -------------------------------------------------------------------------------------------


def test_reference_solutions_grade_correct(packaged_data):
    # Every MATH-500 reference solution and GSM8K-test answer, graded against its own gold.
    import json

    math = [json.loads(line) for line in open(packaged_data / "math500.jsonl", encoding="utf-8")]
    wrong = [r["answer"] for r in math if not grade(r["solution"], r["answer"]).correct]
    assert wrong == []
    gsm = [json.loads(line) for line in open(packaged_data / "gsm8k_test.jsonl", encoding="utf-8")]
    assert all(grade(r["answer"], r["answer"].rsplit("####", 1)[1].strip()).correct for r in gsm)
    # and a wrong gold is wrong
    assert not any(
        grade(r["solution"], r["answer"] + "1").correct for r in math[:50] if r["answer"].isdigit()
    )
