"""One chunk of problems through the method: rollouts -> selection -> hinted teacher -> kept records
-> their stored targets.

Each generation phase is a method of `Curator` that takes and returns named jobs, so the chunk
loop reads as the method does; `ChunkResult` collects the rows, every problem's outcome and the
phase timings. The target pass (`add_targets`) is a function of its own: it needs the scoring
model, not the generation backend, so it can run after that backend is shut down or in another
process (curate.pipeline, curate.on_ray).
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ssb_plugin.curate.backends.contract import Generation, Request, derive_seed
from ssb_plugin.curate.config import CurateConfig
from ssb_plugin.curate.problems import BadRow, Problem
from ssb_plugin.curate.select import Choice, Rollout, choose, teacher_outcome
from ssb_plugin.curate.targets import TargetSpec, score_rows
from ssb_plugin.prompts import leaks_hint, student_messages, teacher_messages
from ssb_plugin.record import NESTED_COLUMNS, Outcome, chat_prompt_ids, kept_record


@dataclass
class ChunkResult:
    rows: list[dict[str, Any]]
    counts: Counter = field(default_factory=Counter)
    timings: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    stats: Counter = field(default_factory=Counter)
    outcomes: dict[str, str] = field(default_factory=dict)  # problem id -> outcome (audit trail)
    scoring: list[tuple[list[int], list[int]]] = field(default_factory=list)  # per row: prompt, response ids
    scored: bool = False  # the rows carry their target columns

    def to_json(self) -> str:
        """A generated, not yet scored chunk (the rows hold only JSON values until scored)."""
        assert not self.scored
        fields = ("rows", "counts", "timings", "stats", "outcomes", "scoring")
        return json.dumps({f: getattr(self, f) for f in fields})

    @classmethod
    def from_json(cls, text: str) -> ChunkResult:
        d = json.loads(text)
        return cls(
            rows=d["rows"],
            counts=Counter(d["counts"]),
            timings=defaultdict(float, d["timings"]),
            stats=Counter(d["stats"]),
            outcomes=d["outcomes"],
            scoring=[(list(p), list(r)) for p, r in d["scoring"]],
        )

    def info(self) -> dict[str, Any]:
        """What the progress file and the manifest keep of a finished chunk."""
        return {
            "counts": dict(self.counts),
            "timings": dict(self.timings),
            "stats": dict(self.stats),
            "outcomes": self.outcomes,
        }

    def mark(self, problem_id: str, outcome: Outcome) -> None:
        """Record a problem's outcome: counted and kept in the audit trail together."""
        self.counts[outcome] += 1
        self.outcomes[problem_id] = outcome

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.timings[phase] += time.perf_counter() - t


@dataclass(frozen=True)
class StudentJob:
    """A problem whose bare-question prompt fits: it gets K rollouts."""

    problem: Problem
    messages: list[dict[str, str]]
    prompt_ids: list[int]
    budget: int


@dataclass(frozen=True)
class TeacherJob:
    """A problem with a correct and a wrong rollout: the hinted teacher writes its solution."""

    student: StudentJob
    messages: list[dict[str, str]]
    prompt_ids: list[int]
    rollouts: list[Rollout]
    choice: Choice
    budget: int


def target_spec(cfg: CurateConfig) -> TargetSpec:
    return TargetSpec(cfg.stored_topk, cfg.tail_samples, tuple(float(t) for t in cfg.target_temperatures))


def empty_target() -> dict[str, np.ndarray]:
    """The target columns of a record in a set for the online teacher only: no rows ([0, 0] each)."""
    return {c.name: np.zeros((0, 0), np.dtype(c.dtype)) for c in NESTED_COLUMNS}


class Curator:
    """Runs chunks through one backend; the backend can be shared (tests, benchmarks)."""

    def __init__(self, cfg: CurateConfig, backend):
        from ssb_plugin.grading import grade, is_equivalent

        self.cfg = cfg
        self.is_equivalent = is_equivalent
        self.backend = backend
        self.tok = backend.tokenizer
        self.grade = grade
        self.max_len = getattr(backend, "max_model_len", None)

    def _decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=True)

    def same_answer(self, a: str, b: str) -> bool:
        """The grader's equivalence ("18" and "18.0" agree): how wrong answers are grouped."""
        return a == b or self.is_equivalent(a, b, timeout=self.cfg.grade_timeout)

    def _grade(self, text: str, gold: str):
        # strict: a rollout counts only with the answer format the prompt asks for (docs/grading.md)
        return self.grade(
            text, gold, timeout=self.cfg.grade_timeout, fallback=self.cfg.answer_fallback, mode="strict"
        )

    def _budget(self, prompt_len: int, max_tokens: int) -> int | None:
        """Tokens left for the answer, or None when the prompt alone does not fit the context."""
        if not self.max_len:
            return max_tokens
        left = self.max_len - prompt_len
        return min(max_tokens, left) if left >= 1 else None

    def run_chunk(self, items: list[Problem | BadRow]) -> ChunkResult:
        """Generate and score a chunk with this backend's own model (the transformers backend)."""
        res = self.generate_chunk(items)
        add_targets(self.cfg, res, self.backend.scoring_model)
        return res

    def generate_chunk(self, items: list[Problem | BadRow]) -> ChunkResult:
        """Every phase up to the kept rows; their target columns come from `add_targets`."""
        res = ChunkResult(rows=[])
        with res.timed("prepare_s"):
            students = self._student_jobs(items, res)
        with res.timed("rollout_generate_s"):
            gens = self._generate(self._rollout_requests(students), "rollouts")
        with res.timed("grading_s"):
            teachers = self._teacher_jobs(students, gens, res)
        with res.timed("teacher_generate_s"):
            tgens = self._generate(self._teacher_requests(teachers), "teacher")
        with res.timed("grading_s"):
            res.scoring = self._keep(teachers, tgens, res)
        return res

    def _student_jobs(self, items: list[Problem | BadRow], res: ChunkResult) -> list[StudentJob]:
        jobs = []
        for it in items:
            if isinstance(it, BadRow):
                res.mark(it.id, Outcome.BAD_INPUT)
                continue
            msgs = student_messages(it.question, self.cfg.system_prompt)
            ids = chat_prompt_ids(self.tok, msgs)
            budget = self._budget(len(ids), self.cfg.rollout_max_tokens)
            if budget is None:
                res.mark(it.id, Outcome.TOO_LONG)
                continue
            jobs.append(StudentJob(it, msgs, ids, budget))
        return jobs

    def _generate(self, requests: list[Request], desc: str) -> list[Generation]:
        return self.backend.generate(requests, desc=desc) if requests else []

    def _requests(self, specs, temperature: float, top_k: int) -> list[Request]:
        """One seeded request per (prompt ids, token budget, seed key): a problem's samples are the
        same whatever batch it lands in."""
        return [
            Request(tuple(ids), temperature, top_k, budget, derive_seed(self.cfg.seed, *key))
            for ids, budget, key in specs
        ]

    def _rollout_requests(self, jobs: list[StudentJob]) -> list[Request]:
        """K rollouts per problem, on the bare question."""
        specs = [
            (j.prompt_ids, j.budget, (j.problem.id, "rollout", r))
            for j in jobs
            for r in range(self.cfg.num_rollouts)
        ]
        return self._requests(specs, self.cfg.rollout_temperature, self.cfg.rollout_top_k)

    def _teacher_requests(self, jobs: list[TeacherJob]) -> list[Request]:
        """`teacher_attempts` answers per problem, on the hinted prompt (attempt 0's seed is the
        one a single-attempt run uses, so raising the setting only adds answers)."""
        specs = [
            (j.prompt_ids, j.budget, (j.student.problem.id, "teacher", a))
            for j in jobs
            for a in range(self.cfg.teacher_attempts)
        ]
        return self._requests(specs, self.cfg.teacher_temperature, self.cfg.teacher_top_k)

    def _rollouts(self, gens: list[Generation], gold: str, res: ChunkResult) -> list[Rollout]:
        rollouts = []
        for g in gens:
            text = self._decode(g.token_ids)
            r = self._grade(text, gold)
            rollouts.append(Rollout(text, r.extracted, r.correct, g.finish_reason, r.reason))
            res.stats["rollouts"] += 1
            res.stats["rollout_tokens"] += len(g.token_ids)
            res.stats["rollouts_correct"] += int(r.correct)
            res.stats["rollouts_no_answer"] += int(r.extracted is None)
            res.stats["grader_timeouts"] += int(r.reason in ("timeout", "error"))
        return rollouts

    def _teacher_jobs(
        self, students: list[StudentJob], gens: list[Generation], res: ChunkResult
    ) -> list[TeacherJob]:
        """Grade each problem's K rollouts, pick a correct and a wrong one, build the hinted prompt."""
        k = self.cfg.num_rollouts
        jobs = []
        for n, s in enumerate(students):
            rollouts = self._rollouts(gens[n * k : (n + 1) * k], s.problem.gold, res)
            outcome, choice = choose(rollouts, same_answer=self.same_answer)
            if outcome:
                res.mark(s.problem.id, outcome)
                continue
            assert choice is not None  # choose() returns a choice exactly when the problem is not dropped
            tmsgs = teacher_messages(
                s.problem.question,
                rollouts[choice.correct_index].text,
                rollouts[choice.wrong_index].text,
                self.cfg.system_prompt,
            )
            tids = chat_prompt_ids(self.tok, tmsgs)
            budget = self._budget(len(tids), self.cfg.teacher_max_tokens)
            if budget is None:
                res.mark(s.problem.id, Outcome.TOO_LONG)
                continue
            jobs.append(TeacherJob(s, tmsgs, tids, rollouts, choice, budget))
        return jobs

    def _keep(self, jobs: list[TeacherJob], gens: list[Generation], res: ChunkResult) -> list:
        """Grade the teacher's answers; a problem's first kept answer becomes its row. A problem with
        none takes its first answer's outcome (what a one-attempt run reports). Returns the rows'
        (prompt, response) ids."""
        n = self.cfg.teacher_attempts
        scoring = []  # (teacher prompt ids, response ids) of the kept records, in row order
        for i, j in enumerate(jobs):
            p = j.student.problem
            answers = gens[i * n : (i + 1) * n]
            res.stats["teacher_answers"] += len(answers)
            res.stats["teacher_tokens"] += sum(len(g.token_ids) for g in answers)
            outcomes = []
            for g in answers:
                text = self._decode(g.token_ids)
                graded = self._grade(text, p.gold) if g.finish_reason == "stop" else None
                outcome = teacher_outcome(
                    g.finish_reason,
                    bool(graded and graded.correct),
                    self.cfg.leak_filter and leaks_hint(text, p.question),
                )
                res.stats[f"teacher_answers_{outcome.value}"] += 1  # graded ones
                outcomes.append(outcome)
                if outcome == Outcome.KEPT:
                    break  # later attempts are not graded: the record is the first kept answer
            res.mark(p.id, outcome if outcome == Outcome.KEPT else outcomes[0])
            if outcome != Outcome.KEPT:
                continue
            res.stats[f"kept_at_teacher_attempt_{len(outcomes) - 1}"] += 1  # what more attempts bought
            res.stats["kept_tokens"] += len(g.token_ids)
            scoring.append((j.prompt_ids, g.token_ids))
            res.rows.append(
                kept_record(
                    id=p.id,
                    question=p.question,
                    gold=p.gold,
                    student_messages=j.student.messages,
                    teacher_messages=j.messages,
                    response_text=text,
                    response_ids=g.token_ids,
                    rollouts=[r.as_record() for r in j.rollouts],
                    choice=j.choice,
                )
            )
        return scoring


def add_targets(cfg: CurateConfig, res: ChunkResult, scoring_model) -> None:
    """The stored teacher target of each kept row, from one teacher-forced pass over its ids.

    `scoring_model` is called only when there is something to score (a chunk with no kept row, or
    a set without stored targets, never loads it)."""
    with res.timed("target_scoring_s"):
        if res.rows and not cfg.stored_target:  # --no-stored-target: no scoring pass, empty columns
            for row in res.rows:
                row.update(empty_target())
        elif res.rows:
            seeds = [derive_seed(cfg.seed, row["id"], "target-tail") for row in res.rows]
            fields = score_rows(scoring_model(), res.scoring, target_spec(cfg), seeds=seeds)
            for row, f in zip(res.rows, fields, strict=True):
                row.update(f)
    res.scored = True
