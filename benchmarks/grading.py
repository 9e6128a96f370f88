"""This grader against Math-Verify 0.9.0, side by side in one run, per answer family.

Two sets:
- the per-family case files in ``benchmarks/grading_cases/*.jsonl`` (``pred``, ``gold``, ``equal``;
  where each family comes from is in ``grading_cases/SOURCES.md``), scored in two forms:
  ``as given`` (the rows as they are: bare answers, LaTeX snippets, whole outputs, as
  ``ssb-grade FILE`` sees them) and ``in output`` (each bare answer put at the end of a short
  worked solution in one of several usual templates; rows that are whole outputs stay as they are);
- the unit tests' convention tables (``grading_cases/conventions/``), as given: written alongside
  the grader, so only a regression check;
- the built set from public golds (``grading_builtset.py``: MATH-500, GSM8K test, AIME), when
  ``--data`` points at the reference data.

Both graders see the same text and do their own extraction; each case is timed end to end.
Math-Verify is called as its README shows: ``verify(parse(gold), parse(output))``, the gold wrapped
in ``$...$``.

Usage: .venv/bin/python benchmarks/grading.py [--data DIR] [--errors] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASES_DIR = REPO / "benchmarks" / "grading_cases"
OUTPUT_TEMPLATES = [
    "We work through the problem step by step.\n\nTherefore, the final answer is $\\boxed{{{ans}}}$.",
    "Combining the two cases above gives the result.\n\nThe answer is ${ans}$.",
    "Checking each condition in turn, only one value remains.\n\nAnswer: {ans}",
    "After simplifying, we obtain\n\\[{ans}\\]",
    "Final Answer: The final answer is ${ans}$. I hope it is correct.",
]


def load_families(cases_dir: Path) -> dict[str, list[dict]]:
    families = {}
    for path in sorted(cases_dir.glob("*.jsonl")):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        for i, r in enumerate(rows):
            if not {"pred", "gold", "equal"} <= set(r):
                raise SystemExit(f"{path} line {i + 1}: needs pred, gold and equal")
        families[path.stem] = rows
    return families


def is_whole_output(pred: str) -> bool:
    """A row that is already a model output (a box, a math environment or a sentence)."""
    return "\\boxed" in pred or "$" in pred or "\\[" in pred or "\\(" in pred or pred.count(" ") >= 4


def in_output(rows: list[dict]) -> list[dict]:
    out = []
    for i, r in enumerate(rows):
        text = r["pred"]
        if not is_whole_output(text):
            k = i % len(OUTPUT_TEMPLATES)
            if k == 0 and text.endswith("\\"):
                k = 1  # inside \boxed{...} a trailing backslash would escape the closing brace
            text = OUTPUT_TEMPLATES[k].format(ans=text)
        out.append(dict(r, output=text))
    return out


def as_given(rows: list[dict]) -> list[dict]:
    return [dict(r, output=r["pred"]) for r in rows]


def run_ours(cases: list[dict]) -> tuple[list[bool], list[float]]:
    from ssb_plugin.grading import grade, warmup

    warmup()
    grade("\\boxed{\\sqrt{2}}", "\\sqrt2")
    verdicts, times = [], []
    for c in cases:
        t = time.perf_counter()
        verdicts.append(grade(c["output"], str(c["gold"])).correct)
        times.append(time.perf_counter() - t)
    return verdicts, times


def run_math_verify(cases: list[dict]) -> tuple[list[bool], list[float]]:
    from math_verify import parse, verify

    verify(parse("$\\sqrt{2}$"), parse("$\\boxed{\\sqrt2}$"))
    verdicts, times = [], []
    for c in cases:
        t = time.perf_counter()
        try:
            ok = bool(verify(parse("$" + str(c["gold"]) + "$"), parse(c["output"])))
        except Exception:
            ok = False
        times.append(time.perf_counter() - t)
        verdicts.append(ok)
    return verdicts, times


def _label(c: dict) -> bool:
    return bool(c["equal"] if "equal" in c else c["label"])


def _acc(cases: list[dict], verdicts: list[bool]) -> float:
    return sum(v == _label(c) for v, c in zip(verdicts, cases, strict=True)) / max(1, len(cases))


def _false_positives(cases: list[dict], verdicts: list[bool]) -> int:
    return sum(v and not _label(c) for v, c in zip(verdicts, cases, strict=True))


def _negatives(cases: list[dict]) -> int:
    return sum(not _label(c) for c in cases)


def _times(ts: list[float]) -> str:
    s = sorted(ts) or [0.0]
    return f"median {statistics.median(s) * 1e3:7.2f} ms  max {s[-1] * 1e3:8.1f} ms"


def score(name: str, groups: dict[str, list[dict]], errors: bool, slowest: int = 0) -> dict:
    """Score every group with both graders; print per-group accuracy and the overall line."""
    cases = [c for rows in groups.values() for c in rows]
    ours, t_ours = run_ours(cases)
    mv, t_mv = run_math_verify(cases)
    print(f"\n== {name}: {len(cases)} cases ({sum(map(_label, cases))} equivalent)")
    # fp: not-equal rows (the near-misses) graded equal, out of how many there are.
    print(f"{'family':<22}{'n':>6}{'ssb':>9}{'math-verify':>13}{'fp ssb':>9}{'fp mv':>7}{'of':>5}")
    i, result = 0, {}
    for fam, rows in groups.items():
        k = len(rows)
        a, b = _acc(rows, ours[i : i + k]), _acc(rows, mv[i : i + k])
        fa, fb, neg = (
            _false_positives(rows, ours[i : i + k]),
            _false_positives(rows, mv[i : i + k]),
            _negatives(rows),
        )
        result[fam] = (a, b)
        print(f"{fam:<22}{k:>6}{a:>9.4f}{b:>13.4f}{fa:>9}{fb:>7}{neg:>5}")
        i += k
    a, b = _acc(cases, ours), _acc(cases, mv)
    result["overall"] = (a, b)
    fa, fb, neg = _false_positives(cases, ours), _false_positives(cases, mv), _negatives(cases)
    print(f"{'overall':<22}{len(cases):>6}{a:>9.4f}{b:>13.4f}{fa:>9}{fb:>7}{neg:>5}")
    print(f"ssb grader   {_times(t_ours)}\nmath-verify  {_times(t_mv)}")
    for t, c in sorted(zip(t_ours, cases, strict=True), key=lambda tc: -tc[0])[:slowest]:
        print(f"  slow {t * 1e3:8.1f} ms  gold={c['gold']!r} output={c['output'][-80:]!r}")
    if errors:
        for c, v, w in zip(cases, ours, mv, strict=True):
            if v != _label(c):
                print(
                    f"  SSB WRONG label={_label(c)} gold={c['gold']!r} output={c['output'][-120:]!r} mv={w}"
                )
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=Path, default=CASES_DIR, help="folder of per-family case files")
    ap.add_argument(
        "--data",
        type=Path,
        help="data folder (math500.jsonl, ...) for the built set (default: the packaged data)",
    )
    ap.add_argument("--no-built", action="store_true", help="skip the built set")
    ap.add_argument("--limit", type=int, help="first N cases of the built set")
    ap.add_argument("--errors", action="store_true", help="list the cases this grader gets wrong")
    ap.add_argument("--slowest", type=int, default=0, help="list this grader's N slowest cases per set")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    families = load_families(args.cases)
    score("families, as given", {f: as_given(r) for f, r in families.items()}, args.errors, args.slowest)
    score("families, in output", {f: in_output(r) for f, r in families.items()}, args.errors, args.slowest)
    conventions = load_families(args.cases / "conventions")
    if conventions:  # the unit tests' tables: written with the grader, so a regression check only
        score(
            "convention tables (tests' own, tuned on)",
            {f: as_given(r) for f, r in conventions.items()},
            args.errors,
        )
    if not args.no_built:
        from grading_builtset import build_cases

        from ssb_plugin.data import PACKAGED_DIR

        args.data = args.data or PACKAGED_DIR

        built = defaultdict(list)
        for c in build_cases(args.data, args.limit):
            built[c["src"]].append(c)
        score("built set from public golds", dict(built), args.errors, args.slowest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
