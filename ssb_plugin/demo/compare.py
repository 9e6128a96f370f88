"""Before/after comparisons for the demo report, each with its standard error.

A change is compared on the same items (problems or records) before and after training: the
standard error of a change is that of the per-item differences (paired), which is what says
whether training moved a number more than chance would. Nothing here claims a gain by itself:
`verdict` states whether |change| exceeds its standard error, and nothing more.
"""

from __future__ import annotations

import json
import math
from pathlib import Path


def mean_se(xs: list[float]) -> tuple[float, float]:
    """Mean and its standard error (sample std / sqrt(n)); se is nan for fewer than two items."""
    n = len(xs)
    if n == 0:
        return math.nan, math.nan
    m = sum(xs) / n
    if n < 2:
        return m, math.nan
    var = sum((x - m) ** 2 for x in xs) / (n - 1)
    return m, math.sqrt(var / n)


def paired_change(before: dict, after: dict) -> tuple[float, float, int]:
    """(mean of after - before, its standard error, n) over the keys both sides scored."""
    keys = sorted(before.keys() & after.keys(), key=str)
    change, se = mean_se([after[k] - before[k] for k in keys])
    return change, se, len(keys)


def verdict(change: float, se: float) -> str:
    if math.isnan(change):
        return "not measured"
    if change == 0 and (se == 0 or math.isnan(se)):
        return "no change"
    if se == 0:
        return "yes: every item moved by the same amount"
    if math.isnan(se) or abs(change) <= se:
        return "no: within its standard error"
    return f"yes: {abs(change) / se:.1f} standard errors {'up' if change > 0 else 'down'}"


def lm_eval_item_scores(output_path: str | Path, task: str, metric: str) -> dict[int, float]:
    """Per-problem scores of one task from lm-eval's `--log_samples` file (the newest one)."""
    files = sorted(Path(output_path).rglob(f"samples_{task}_*.jsonl"), key=lambda p: p.stat().st_mtime)
    if not files:
        raise FileNotFoundError(
            f"no lm-eval samples_{task}_*.jsonl under {output_path} (run with --log_samples)"
        )
    out = {}
    for line in files[-1].read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            out[row["doc_id"]] = float(row[metric])
    return out


def epoch_means(history: list[dict], key: str = "loss") -> list[tuple[int, int, float]]:
    """(epoch, logged steps, mean `key`) per epoch: every epoch covers the same records, so
    these compare like with like (single steps swing with the record they saw)."""
    by_epoch: dict[int, list[float]] = {}
    for h in history:
        if key in h and h.get("epoch") is not None:
            e = max(1, math.ceil(float(h["epoch"]) - 1e-6))
            by_epoch.setdefault(e, []).append(float(h[key]))
    return [(e, len(v), sum(v) / len(v)) for e, v in sorted(by_epoch.items())]


def fmt(x: float, scale: float = 1.0, digits: int = 1) -> str:
    return "—" if math.isnan(x) else f"{scale * x:.{digits}f}"


def fmt_pm(m: float, se: float, scale: float = 1.0, digits: int = 1) -> str:
    """`m ± se` (scaled), with the sign shown when `m` is a change."""
    return f"{fmt(m, scale, digits)} ± {fmt(se, scale, digits)}"
