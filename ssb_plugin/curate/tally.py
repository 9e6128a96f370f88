"""Summing outcome counts, timings and stats over parts (chunks of a run, or the runs of a merge).

One function for both, so a run's manifest and a merged manifest add up the same way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from ssb_plugin.record import OUTCOMES


def tally(parts: Iterable[dict[str, Any]]) -> tuple[dict[str, int], Counter, Counter]:
    """(counts per outcome, every outcome listed; timings; stats) summed over parts, each a dict
    with "counts", "timings" and "stats"."""
    counts = {str(o): 0 for o in OUTCOMES}
    timings: Counter = Counter()
    stats: Counter = Counter()
    for part in parts:
        for k, v in part.get("counts", {}).items():
            counts[k] = counts.get(k, 0) + v
        timings.update(part.get("timings", {}))
        stats.update(part.get("stats", {}))
    return counts, timings, stats
