"""Selection: label rollouts, decide a problem's outcome, pick the correct and the wrong trace.

Pure functions of the graded rollouts, deterministic (no random choice anywhere), so the unit
tests pin every rule down.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ssb_plugin.record import Outcome


@dataclass(frozen=True)
class Rollout:
    text: str
    answer: str | None  # extracted final answer (None: none found)
    correct: bool
    finish_reason: str
    reason: str = "match"  # grader reason: match / mismatch / no_answer / timeout / error

    @property
    def graded(self) -> bool:
        """An answer the grader could decide on: a timeout or error is neither correct nor wrong."""
        return self.answer is not None and self.reason in ("match", "mismatch")

    def as_record(self) -> dict:
        return {
            "text": self.text,
            "answer": self.answer or "",
            "correct": self.correct,
            "finish_reason": self.finish_reason,
        }


@dataclass(frozen=True)
class Choice:
    correct_index: int
    wrong_index: int
    wrong_answer: str
    wrong_count: int  # rollouts carrying the chosen wrong answer (equivalent forms grouped)


def choose(
    rollouts: list[Rollout], same_answer: Callable[[str, str], bool] | None = None
) -> tuple[Outcome | None, Choice | None]:
    """(outcome, None) when the problem is dropped, else (None, Choice).

    Outcomes: `no_boxed_answer` (no rollout has an extracted answer), `no_correct`, `no_wrong`.
    A rollout without an answer (or one the grader timed out on) is neither correct nor wrong. The correct trace is the first correct
    rollout; the wrong answer is the most common one (ties: the one seen first), grouping answers
    that `same_answer` calls equal ("18" and "18.0"), and its trace is its first rollout.
    """
    if all(r.answer is None for r in rollouts):
        return Outcome.NO_BOXED_ANSWER, None
    answer = {i: r.answer for i, r in enumerate(rollouts) if r.graded and r.answer is not None}
    answered = list(answer)  # graded implies an answer; the check above is what mypy sees
    correct = [i for i in answered if rollouts[i].correct]
    wrong = [i for i in answered if not rollouts[i].correct]
    if not correct:
        return Outcome.NO_CORRECT, None
    if not wrong:
        return Outcome.NO_WRONG, None
    same = same_answer or (lambda a, b: a == b)
    groups: list[list[int]] = []  # in order of first appearance
    for i in wrong:
        for g in groups:
            if same(answer[g[0]], answer[i]):
                g.append(i)
                break
        else:
            groups.append([i])
    best = max(groups, key=len)  # max() keeps the first of equal-length groups
    return None, Choice(correct[0], best[0], answer[best[0]], len(best))


def teacher_outcome(finish_reason: str, correct: bool, leaks: bool) -> Outcome:
    """The outcome of a teacher answer: too_long (no EOS within the budget), teacher_wrong,
    leak_filtered (it mentions the attempts it was shown), else kept."""
    if finish_reason != "stop":
        return Outcome.TOO_LONG
    if not correct:
        return Outcome.TEACHER_WRONG
    if leaks:
        return Outcome.LEAK_FILTERED
    return Outcome.KEPT
