"""The published baselines' strict scoring, kept apart from the real grader for comparisons.

MATH-500: the literal ``\\boxed{gold}`` must occur in the output; AIME: the gold must occur in the
output as a substring. Both are what the SSB paper's baselines counted; neither normalises anything.
"""

from __future__ import annotations

PROTOCOLS = ("math500", "aime")


def paper_match(output: str, gold: str, protocol: str) -> bool:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    if not isinstance(output, str) or gold is None:
        return False
    gold = str(gold)
    if not gold:
        return False
    if protocol == "math500":
        return ("\\boxed{" + gold + "}") in output
    return gold in output
