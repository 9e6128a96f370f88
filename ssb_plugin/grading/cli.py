"""``ssb-grade``: grade a JSONL file of model outputs against gold answers.

Each output row is the input row plus ``correct`` (bool), ``extracted`` (the answer found, or null)
and ``grade_reason``. A summary goes to stderr. Rows whose prediction or gold is missing, null or
not a string (a number for the gold) are refused before any grading (exit 2, naming the lines; the
policy of ``ssb_plugin.fields``). Rows are graded by a thread pool whose threads share
a pool of worker subprocesses of the same size, so the sympy work spreads over the cores.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ssb_plugin.atomic import atomic_open
from ssb_plugin.fields import ANSWER, TEXT, row_problems, summarise
from ssb_plugin.jsonl import JsonlError, read_jsonl

from . import api, pool


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="ssb-grade", description=__doc__.split("\n\n")[0])
    ap.add_argument("input", help="JSONL file, one object per line ('-' reads stdin)")
    ap.add_argument("--pred-field", default="pred", help="field with the model output (default: pred)")
    ap.add_argument("--gold-field", default="gold", help="field with the gold answer (default: gold)")
    ap.add_argument(
        "--output", "-o", help="write graded rows here (JSONL, replaced atomically); default: stdout"
    )
    ap.add_argument(
        "--timeout", type=_seconds, default=api.DEFAULT_TIMEOUT, help="seconds per case (default 2)"
    )
    ap.add_argument("--fallback", action="store_true", help="use the last number when no answer is marked")
    ap.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 1, help="parallel graders")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    return ap.parse_args(argv)


class InputError(Exception):
    """Refused before any grading (exit 2); the message names the file, line or field."""


def _check_output(args: argparse.Namespace) -> None:
    """Before grading: the output directory exists and the output is not the input."""
    if not args.output:
        return
    out = Path(args.output)
    if out.is_dir():
        raise InputError(f"--output {out} is a directory; give a file name")
    if not out.parent.is_dir():
        raise InputError(f"--output {out}: directory {out.parent} does not exist")
    if args.input != "-" and out.exists() and os.path.samefile(out, args.input):
        raise InputError(f"--output {out} is the input file; write the graded rows to another file")


def _read_rows(args: argparse.Namespace) -> list[tuple[int, dict]]:
    try:
        rows = read_jsonl(args.input)
    except OSError as exc:
        raise InputError(f"cannot read {args.input}: {exc.strerror}") from None
    except JsonlError as exc:
        raise InputError(str(exc)) from None
    specs = {args.pred_field: TEXT, args.gold_field: ANSWER}
    bad = row_problems(((f"{args.input} line {n}", row) for n, row in rows), specs)
    if bad:
        hint = " (set --pred-field/--gold-field)" if all("field" in b for b in bad) else ""
        raise InputError(summarise(bad) + hint)
    return rows


def _grade_row(row: dict, args: argparse.Namespace) -> tuple[dict, float]:
    start = time.perf_counter()
    result = api.grade(
        row[args.pred_field], row[args.gold_field], timeout=args.timeout, fallback=args.fallback
    )
    out = dict(row)
    out.update(correct=result.correct, extracted=result.extracted, grade_reason=result.reason)
    return out, time.perf_counter() - start


def _grade_all(rows: list[dict], args: argparse.Namespace, sink) -> list[tuple[dict, float]]:
    """Grade in parallel, writing each graded row to `sink` in input order as soon as it is ready."""
    jobs = max(1, min(args.jobs, len(rows) or 1))
    pool.resize(jobs)
    api.warmup(workers=jobs)
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=len(rows), desc="grading", unit="case", file=sys.stderr)
    ex = ThreadPoolExecutor(max_workers=jobs)
    results = []
    try:
        for res in ex.map(lambda r: _grade_row(r, args), rows):
            results.append(res)
            sink.write(json.dumps(res[0], ensure_ascii=False) + "\n")
            if bar is not None:
                bar.update(1)
    finally:  # Ctrl-C: drop the queued rows instead of grading them all before exiting
        ex.shutdown(wait=False, cancel_futures=True)
        if bar is not None:
            bar.close()
    return results


def _summary(results: list[tuple[dict, float]], wall: float) -> str:
    n = len(results)
    reasons = Counter(r["grade_reason"] for r, _ in results)
    correct = sum(r["correct"] for r, _ in results)
    times = [t for _, t in results] or [0.0]
    return (
        f"ssb-grade: {n} cases, accuracy {correct / n if n else 0:.4f} ({correct}/{n}), "
        f"timeouts {reasons[api.Reason.TIMEOUT]}, no answer {reasons[api.Reason.NO_ANSWER]}, "
        f"errors {reasons[api.Reason.ERROR]}, "
        f"median {statistics.median(times) * 1e3:.2f} ms/case, wall {wall:.1f} s"
    )


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        _check_output(args)
        rows = [row for _, row in _read_rows(args)]
    except InputError as exc:
        print(f"ssb-grade: error: {exc}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    # The output file is replaced only once every row is written (ssb_plugin.atomic): an interrupted
    # run leaves the previous file, or none, never a shorter one that looks complete.
    try:
        with atomic_open(args.output) if args.output else contextlib.nullcontext(sys.stdout) as sink:
            results = _grade_all(rows, args, sink)
    except KeyboardInterrupt:
        where = f"{args.output} is unchanged" if args.output else "stdout holds the rows graded so far"
        print(f"\nssb-grade: interrupted; {where}", file=sys.stderr)
        return 130
    print(_summary(results, time.perf_counter() - start), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
