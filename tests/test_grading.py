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

REPO = Path(__file__).resolve().parents[1]


def load_rows(path: Path) -> list[tuple[str, dict]]:
    """``(file:line, row)`` of a JSONL case file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [(f"{path.name}:{i}", json.loads(line)) for i, line in enumerate(lines, 1) if line.strip()]


def report(wrong: list[str], total: int) -> str:
    return f"{len(wrong)} of {total} rows wrong:\n" + "\n".join(wrong)


# One row per text: "lenient" / "strict" (when present) is what that mode must extract (null: none).
# A boxed or phrased answer is found the same way in both modes; strict (curation) takes nothing else.
EXTRACTION = load_rows(REPO / "tests" / "grading_cases" / "extraction.jsonl")


def test_extraction_table():
    wrong, checked = [], 0
    for where, row in EXTRACTION:
        for mode in ("lenient", "strict"):
            if mode in row:
                checked += 1
                got = extract_answer(row["text"], mode=mode)
                if got != row[mode]:
                    wrong.append(f"{where} {mode}: text={row['text']!r} expected={row[mode]!r} got={got!r}")
    assert checked >= 90 and {"lenient", "strict"} <= {k for _, r in EXTRACTION for k in r}
    assert not wrong, report(wrong, checked)


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
# write them against MATH-style golds. "symmetric": true rows must also hold with the sides swapped
# (false marks the one-way conventions).
CONVENTIONS = REPO / "benchmarks" / "grading_cases" / "conventions"
TABLES = {p.stem: load_rows(p) for p in sorted(CONVENTIONS.glob("*.jsonl"))}
_OTHERS = ("near_misses", "model_spellings")


def test_convention_tables_cover_their_families():
    assert len(TABLES) >= 20 and all(TABLES.values())
    assert all(r["equal"] for fam, rows in TABLES.items() if fam not in _OTHERS for _, r in rows)
    assert all(
        r.get("symmetric") is not None for fam, rows in TABLES.items() if fam not in _OTHERS for _, r in rows
    )
    assert not any(r["equal"] for _, r in TABLES["near_misses"])
    assert {r["equal"] for _, r in TABLES["model_spellings"]} == {True, False}


@pytest.mark.parametrize("family", sorted(TABLES))
def test_convention_table(family):
    """Every row of one convention file: ``is_equivalent(pred, gold) is equal``, and the same with the
    sides swapped where the row is symmetric; the failure lists every wrong row."""
    wrong, checked = [], 0
    for where, r in TABLES[family]:
        pairs = [(r["pred"], r["gold"])] + ([(r["gold"], r["pred"])] if r.get("symmetric") else [])
        for pred, gold in pairs:
            checked += 1
            got = is_equivalent(pred, gold)
            if got is not r["equal"]:
                wrong.append(f"{where}: pred={pred!r} gold={gold!r} expected={r['equal']} got={got}")
    assert not wrong, report(wrong, checked)


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
