"""The whole lm-eval pipeline (requests, repeats, filters, aggregation, logged samples) on a scripted
model whose answers are right, wrong, or right in a form only the project grader accepts.

A random test model answers nothing correctly, so the CLI runs can only show 0 == 0; here the scores
must come out exactly as `grade()` / `paper_match()` say, per sample and in the aggregate.
"""

from __future__ import annotations

import pytest

from ssb_plugin.grading import grade, paper_match
from ssb_plugin.prompts import SYSTEM_PROMPT
from ssb_plugin.tasks import include_path

# Answer templates, cycled per request; {g} is the gold answer.
STYLES = [
    "Step 1. So the answer is \\boxed{{{g}}}.",  # right, both metrics
    "\\boxed{{0{g}}}",  # leading zero: right for the grader; literal-box protocol misses it
    "The final answer is {g}",  # unboxed answer phrase
    "\\boxed{{{g}1}}",  # wrong (but contains the gold as a substring: lenient AIME protocol counts it)
    "",  # nothing
    "I am not sure. \\boxed{{",  # truncated box
]


def scripted_lm(golds: dict[str, str]):
    """A model that answers each prompt with the next style filled with that problem's gold (lm-eval
    loads when the fixture runs, not when pytest collects this module)."""
    from lm_eval.api.model import LM

    class ScriptedLM(LM):
        def __init__(self, golds: dict[str, str]):
            super().__init__()
            self.golds = golds
            self.calls = 0
            self.prompts: list[str] = []

        def generate_until(self, requests, disable_tqdm: bool = False):
            outputs = []
            for req in requests:
                prompt = req.args[0]
                self.prompts.append(prompt)
                problem = prompt.split("\n\n", 1)[1]
                outputs.append(STYLES[self.calls % len(STYLES)].format(g=self.golds[problem]))
                self.calls += 1
            return outputs

        def loglikelihood(self, requests, disable_tqdm: bool = False):
            raise NotImplementedError

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
            raise NotImplementedError

    return ScriptedLM(golds)


@pytest.fixture(scope="module")
def scripted_run():
    """On the packaged data (no setting)."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager, get_task_dict

    tm = TaskManager(include_path=include_path())
    names = ["aime24", "ssb_math500", "ssb_gsm8k", "aime24_avg16"]
    golds = {}
    for task in get_task_dict(names, tm).values():
        golds.update({d["problem"]: d["answer"] for d in task.eval_docs})
    lm = scripted_lm(golds)
    results = simple_evaluate(model=lm, tasks=names, task_manager=tm, limit=4, log_samples=True)
    return lm, results


def test_plain_prompts_carry_the_instruction(scripted_run):
    lm, _ = scripted_run
    assert lm.calls == 3 * 4 + 4 * 16
    assert all(p.startswith(SYSTEM_PROMPT + "\n\n") for p in lm.prompts)


@pytest.mark.parametrize(
    "task,protocol", [("aime24", "aime"), ("ssb_math500", "math500"), ("ssb_gsm8k", None)]
)
def test_greedy_scores_are_the_graders(scripted_run, task, protocol):
    _, results = scripted_run
    samples = results["samples"][task]
    assert len(samples) == 4
    for s in samples:
        out, gold = s["filtered_resps"][0], s["doc"]["answer"]
        assert s["exact_match"] == float(grade(out, gold).correct)
        if protocol:
            assert s["paper_match"] == float(paper_match(out, gold, protocol))
        else:
            assert "paper_match" not in s
    em = results["results"][task]["exact_match,none"]
    assert em == pytest.approx(sum(s["exact_match"] for s in samples) / 4)
    assert 0 < em < 1  # the styles mix right and wrong answers


def test_scripted_styles_separate_the_metrics(scripted_run):
    # aime24's 4 docs get styles 0..3: right, leading zero, unboxed phrase, wrong-but-contains-gold.
    _, results = scripted_run
    by_doc = {s["doc_id"]: s for s in results["samples"]["aime24"]}
    assert [by_doc[i]["exact_match"] for i in range(4)] == [1.0, 1.0, 1.0, 0.0]
    assert [by_doc[i]["paper_match"] for i in range(4)] == [1.0, 1.0, 1.0, 1.0]  # gold substring: lenient
    # The literal-box MATH-500 protocol rejects answers the grader accepts (leading zero, no box).
    math = results["samples"]["ssb_math500"]
    assert any(s["exact_match"] == 1.0 and s["paper_match"] == 0.0 for s in math)


def test_avg_at_k_uses_all_16_samples(scripted_run):
    _, results = scripted_run
    samples = results["samples"]["aime24_avg16"]
    agg = results["results"]["aime24_avg16"]
    per_doc = []
    for s in samples:
        outs = s["filtered_resps"][0]
        assert len(outs) == 16 and len(set(outs)) > 1  # every sample, not the first one 16 times
        verdicts = [grade(o, s["doc"]["answer"]).correct for o in outs]
        assert s["avg_at_k"] == sum(verdicts) / 16
        assert s["pass_at_k"] == float(any(verdicts))
        per_doc.append(s["avg_at_k"])
    assert agg["avg_at_k,all_samples"] == pytest.approx(sum(per_doc) / len(per_doc))
    assert 0 < agg["avg_at_k,all_samples"] < 1
