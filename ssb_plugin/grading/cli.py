"""``ssb-grade``: grade a JSONL file of model outputs against gold answers.

Each output row is the input row plus ``correct`` (bool), ``extracted`` (the answer found, or null)
and ``grade_reason``. A summary goes to stderr. Rows are graded by a thread pool whose threads share
a pool of worker subprocesses of the same size, so the sympy work spreads over the cores.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from ssb_plugin.jsonl import JsonlError, read_json_objects

from . import api, pool


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="ssb-grade", description=__doc__.split("\n\n")[0])
    ap.add_argument("input", help="JSONL file, one object per line ('-' reads stdin)")
    ap.add_argument("--pred-field", default="pred", help="field with the model output (default: pred)")
    ap.add_argument("--gold-field", default="gold", help="field with the gold answer (default: gold)")
    ap.add_argument("--output", "-o", help="write graded rows here (JSONL); default: stdout")
    ap.add_argument("--timeout", type=float, default=api.DEFAULT_TIMEOUT, help="seconds per case (default 2)")
    ap.add_argument("--fallback", action="store_true", help="use the last number when no answer is marked")
    ap.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 1, help="parallel graders")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    return ap.parse_args(argv)


def _read_rows(path: str) -> list[dict]:
    stream = sys.stdin if path == "-" else open(path, encoding="utf-8")  # noqa: SIM115
    with stream:
        try:
            return read_json_objects(stream, path)
        except JsonlError as exc:
            raise SystemExit(f"ssb-grade: {exc}") from None


def _grade_row(row: dict, args: argparse.Namespace) -> tuple[dict, float]:
    start = time.perf_counter()
    pred, gold = row.get(args.pred_field), row.get(args.gold_field)
    if pred is None or gold is None:
        result = api.GradeResult(False, None, "error")
    else:
        result = api.grade(str(pred), str(gold), timeout=args.timeout, fallback=args.fallback)
    out = dict(row)
    out.update(correct=result.correct, extracted=result.extracted, grade_reason=result.reason)
    return out, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        rows = _read_rows(args.input)
    except OSError as exc:
        print(f"ssb-grade: cannot read {args.input}: {exc.strerror}", file=sys.stderr)
        return 2
    if rows and args.pred_field not in rows[0] and args.gold_field not in rows[0]:
        print(
            f"ssb-grade: fields {args.pred_field!r}/{args.gold_field!r} not in the first row "
            f"(has {sorted(rows[0])}); set --pred-field/--gold-field",
            file=sys.stderr,
        )
        return 2
    jobs = max(1, min(args.jobs, len(rows) or 1))
    pool.resize(jobs)
    api.warmup(workers=jobs)
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=len(rows), desc="grading", unit="case", file=sys.stderr)
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=jobs) as ex:
        results = []
        for res in ex.map(lambda r: _grade_row(r, args), rows):
            results.append(res)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    wall = time.perf_counter() - start
    out = sys.stdout if not args.output else open(args.output, "w", encoding="utf-8")  # noqa: SIM115
    with out if args.output else contextlib.nullcontext():
        for row, _ in results:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    n = len(results)
    reasons = Counter(r["grade_reason"] for r, _ in results)
    correct = sum(r["correct"] for r, _ in results)
    times = [t for _, t in results] or [0.0]
    print(
        f"ssb-grade: {n} cases, accuracy {correct / n if n else 0:.4f} ({correct}/{n}), "
        f"timeouts {reasons['timeout']}, no answer {reasons['no_answer']}, errors {reasons['error']}, "
        f"median {statistics.median(times) * 1e3:.2f} ms/case, wall {wall:.1f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
