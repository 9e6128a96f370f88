"""A generator scripted to keep every problem (rollouts alternate right and wrong, the teacher is
right), over a real tiny model's tokenizer and weights: the pipeline's bookkeeping and target
pass run for real on records that are kept."""

from __future__ import annotations

import re

from ssb_plugin.curate.backends import Generation


class ScriptedGenerator:
    """Rollouts alternate right/wrong answers, the teacher answers right. No scoring model of its own,
    as the vLLM backend: a run with it goes in two phases (generate all, close, score with a
    transformers copy)."""

    name = "scripted"

    def __init__(self, model_dir):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.max_model_len = None
        self.calls = 0
        self.closed = False

    def info(self):
        return {"backend": self.name}

    def generate(self, requests, desc=""):
        out = []
        for i, r in enumerate(requests):
            a, b = map(int, re.findall(r"What is (\d+) \+ (\d+)\?", self.tokenizer.decode(r.prompt_ids))[-1])
            answer = a + b if desc == "teacher" or i % 2 == 0 else a + b + 1
            ids = self.tokenizer(f"{a} + {b} = {answer}. \\boxed{{{answer}}}")["input_ids"]
            out.append(Generation(token_ids=ids + [self.tokenizer.eos_token_id], finish_reason="stop"))
        self.calls += 1
        return out

    def close(self):
        self.closed = True


class ScriptedBackend(ScriptedGenerator):
    """The same generator, scoring with its own (real) model: one chunk at a time."""

    def scoring_model(self):
        return self.model
