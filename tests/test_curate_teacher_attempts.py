"""`teacher_attempts`: a problem's hinted teacher answers N times; its first kept answer is the record,
attempt 0 is the single-attempt run's answer (same seed), and a problem with no kept answer reports
its first answer's outcome, so the counts stay comparable with a one-attempt run."""

from __future__ import annotations

import re

import pytest
from support.scripted_backend import ScriptedBackend

from ssb_plugin.curate.backends import Generation, derive_seed


class TeacherByAttempt(ScriptedBackend):
    """Rollouts as ScriptedBackend (one right, one wrong); the teacher's answer depends on which
    attempt its seed is: `plan[a]` for attempt a is 'ramble' (no EOS), 'wrong' or 'right'."""

    def __init__(self, model_dir, plan, seed, attempts=4):
        super().__init__(model_dir)
        self.plan, self.seed, self.attempts = plan, seed, attempts
        self.teacher_seeds: list[int] = []

    def _attempt(self, problem_id, seed):
        matches = [
            a for a in range(self.attempts) if derive_seed(self.seed, problem_id, "teacher", a) == seed
        ]
        assert len(matches) == 1, "every teacher request carries one attempt's seed"
        return matches[0]

    def generate(self, requests, desc=""):
        if desc != "teacher":
            return super().generate(requests, desc=desc)
        out = []
        for r in requests:
            self.teacher_seeds.append(r.seed)
            text = self.tokenizer.decode(r.prompt_ids)
            a, b = map(int, re.findall(r"What is (\d+) \+ (\d+)\?", text)[-1])
            pid = next(p for p, q in self.problems.items() if q == (a, b))
            kind = self.plan[self._attempt(pid, r.seed)]
            if kind == "ramble":
                ids = self.tokenizer(" and so on" * 8)["input_ids"][: r.max_tokens]
                out.append(Generation(token_ids=ids, finish_reason="length"))
                continue
            answer = a + b if kind == "right" else a + b + 2
            ids = self.tokenizer(f"{a} + {b} = {answer}. \\boxed{{{answer}}}")["input_ids"]
            out.append(Generation(token_ids=ids + [self.tokenizer.eos_token_id], finish_reason="stop"))
        return out


def _run(tmp_path, tiny_model_dir, plan, attempts, out):
    from ssb_plugin.curate.config import CurateConfig
    from ssb_plugin.curate.pipeline import curate
    from ssb_plugin.demo.easy import write_easy

    data = write_easy(tmp_path / "easy.jsonl", n=4, seed=0)
    cfg = CurateConfig.build(
        out=str(tmp_path / out), model=str(tiny_model_dir), data=str(data), backend="transformers",
        chunk_size=2, progress=False, stored_topk=4, tail_samples=2, teacher_attempts=attempts,
    )  # fmt: skip
    from ssb_plugin.curate.problems import load_problems

    backend = TeacherByAttempt(tiny_model_dir, plan, cfg.seed, attempts=max(attempts, len(plan)))
    backend.problems = {
        p.id: tuple(map(int, re.findall(r"(\d+) \+ (\d+)", p.question)[0])) for p in load_problems(cfg)
    }
    return curate(cfg, backend=backend), backend, cfg


def test_the_first_kept_answer_is_the_record(tmp_path, tiny_model_dir):
    from datasets import load_dataset

    m, backend, cfg = _run(tmp_path, tiny_model_dir, ["ramble", "wrong", "right", "right"], 4, "four")
    assert m.counts["kept"] == 4 and m.counts["too_long"] == 0
    assert m.sampling["teacher"]["n"] == 4
    stats = m.extra["stats"]
    # four answers sampled per problem; grading stops at the first kept one (attempt 2)
    assert stats["teacher_answers"] == 16
    assert (stats["teacher_answers_too_long"], stats["teacher_answers_teacher_wrong"]) == (4, 4)
    assert stats["teacher_answers_kept"] == stats["kept_at_teacher_attempt_2"] == 4
    for row in load_dataset(str(tmp_path / "four"), split="train"):
        a, b = map(int, re.findall(r"(\d+) \+ (\d+)", row["question"])[0])
        assert row["response_text"].endswith(f"\\boxed{{{a + b}}}")
    # attempt 0's seed is the one a single-attempt run gives its teacher request
    for pid in backend.problems:
        assert derive_seed(cfg.seed, pid, "teacher") in backend.teacher_seeds


@pytest.mark.parametrize(
    "plan, attempts, outcome",
    [
        (["ramble", "right"], 1, "too_long"),  # one attempt: the rambling answer decides
        (["ramble", "wrong", "ramble"], 3, "too_long"),  # none kept: the first answer's outcome
        (["wrong", "ramble", "ramble"], 3, "teacher_wrong"),
    ],
)
def test_a_problem_without_a_kept_answer_reports_its_first_answers_outcome(
    tmp_path, tiny_model_dir, plan, attempts, outcome
):
    m, _, _ = _run(tmp_path, tiny_model_dir, plan, attempts, "out")
    assert m.counts["kept"] == 0 and m.counts[outcome] == 4
    assert m.extra["stats"]["teacher_answers"] == 4 * attempts


def test_teacher_attempts_is_a_result_setting(tmp_path):
    from ssb_plugin.curate.config import RESULT_KEYS, ConfigError, CurateConfig

    assert "teacher_attempts" in RESULT_KEYS  # a resume or a merge must agree on it
    with pytest.raises(ConfigError, match="teacher_attempts"):
        CurateConfig.build(out=str(tmp_path / "o"), data="x/y", teacher_attempts=0)


def test_a_run_recorded_before_the_setting_resumes_as_one_attempt(tmp_path):
    import json

    from ssb_plugin.curate.config import ConfigError, CurateConfig
    from ssb_plugin.curate.writer import OutputDir

    def settings(**kw):
        return {**CurateConfig(out=str(tmp_path / "o"), **kw).result_settings(), "shard": "0/1"}

    out = OutputDir(tmp_path / "o")
    out.prepare(settings())
    run = next((tmp_path / "o").rglob("run.json"))
    old = json.loads(run.read_text())
    del old["teacher_attempts"]  # what a run started before the setting existed recorded
    run.write_text(json.dumps(old))
    out.prepare(settings())  # the default: the same records, so the resume goes on
    with pytest.raises(ConfigError, match="teacher_attempts"):
        out.prepare(settings(teacher_attempts=2))
