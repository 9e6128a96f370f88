"""On-policy rollouts (`ssb_rollouts: student`): the loss is taken on the student's own samples.

Each step, before the loss, the student (the model with its adapter on, eval mode, no gradient)
samples an answer to each row's bare question, its student prompt, with HF `generate`; the batch
is then rebuilt on those answers: the student's view is student prompt + sample and the teacher's
is teacher prompt (the hinted one) + the same sample, so the live teacher (ssb_plugin.train.online:
the base model with the adapter off) scores every token the student wrote, and the loss is the
chunked full-vocabulary divergence at T over them (OPSD, arXiv 2601.18734; TRL's GKD with lambda = 1).
The curated teacher answer is not used, only the prompts of both views.

A sample ends at the model's EOS (kept, and trained on, as the curated answers' end is) or after
`max_new_tokens`. With `ssb_rollout_engine: vllm_server` the samples come from a vLLM server that
serves the current adapter (ssb_plugin.train.vllm_server); the rest is the same. Rows are right-padded (pad id, label -100, attention 0), as the collator leaves them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ssb_plugin.train.batch_keys import TEACHER_INPUT_IDS, TEACHER_LABELS, TEACHER_PREFIX
from ssb_plugin.train.online import peft_model


def _prompts(ids: torch.Tensor, labels: torch.Tensor, attention: torch.Tensor | None) -> list[list[int]]:
    """Per row: the tokens before its first label (the prompt), padding removed."""
    out = []
    for b in range(ids.shape[0]):
        keep = attention[b].bool() if attention is not None else torch.ones_like(ids[b], dtype=torch.bool)
        row_ids, row_labels = ids[b][keep], labels[b][keep]
        first = torch.nonzero(row_labels != -100)
        if not len(first):
            raise ValueError(f"batch row {b} has no answer label: its prompt cannot be told from its answer")
        out.append(row_ids[: int(first[0])].tolist())
    return out


def sample_answers(
    model: torch.nn.Module, prompts: list[list[int]], *, max_new_tokens: int, temperature: float, pad_id: int,
    eos_id: int | list[int],
) -> list[list[int]]:  # fmt: skip
    """The student's sampled answers (adapter on, eval mode, no gradient), each up to and with its EOS."""
    core = peft_model(model)
    device = next(core.parameters()).device
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros_like(ids)
    for b, p in enumerate(prompts):  # left-padded: every sample starts right after its prompt
        ids[b, width - len(p) :] = torch.tensor(p, device=device)
        mask[b, width - len(p) :] = 1
    was_training = core.training
    core.eval()
    try:
        with torch.no_grad():
            out = core.generate(  # type: ignore[operator]  # PEFT's, via Module.__getattr__
                input_ids=ids, attention_mask=mask, do_sample=True, temperature=temperature, top_k=0, top_p=1.0,
                max_new_tokens=max_new_tokens, pad_token_id=pad_id, eos_token_id=eos_id, use_cache=True,
            )  # fmt: skip
    finally:
        core.train(was_training)
    eos = set(eos_id if isinstance(eos_id, list) else [eos_id])
    answers = []
    for row in out[:, width:].tolist():
        end = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
        answers.append(row[:end])
    return answers


def _pad(rows: list[list[int]], labels: list[list[int]], pad_id: int, device) -> dict[str, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    lab = torch.full((len(rows), width), -100, dtype=torch.long)
    att = torch.zeros((len(rows), width), dtype=torch.long)
    for b, (r, lb) in enumerate(zip(rows, labels, strict=True)):
        ids[b, : len(r)], lab[b, : len(r)], att[b, : len(r)] = torch.tensor(r), torch.tensor(lb), 1
    pos = torch.arange(width).expand(len(rows), width).clone()
    return {
        k: v.to(device)
        for k, v in {"input_ids": ids, "labels": lab, "attention_mask": att, "position_ids": pos}.items()
    }


def on_policy_batch(
    model: torch.nn.Module, inputs: dict, *, max_new_tokens: int, temperature: float, pad_id: int,
    eos_id: int | list[int], sample: Callable[[list[list[int]]], list[list[int]]] | None = None,
) -> tuple[dict, dict]:  # fmt: skip
    """(the batch rebuilt on the student's samples, what was sampled: rows, tokens, ended at EOS).
    `sample`: prompts -> answers from elsewhere (a vLLM server, ssb_plugin.train.vllm_server);
    None: HF `generate` on `model`."""
    if TEACHER_INPUT_IDS not in inputs:
        raise KeyError(
            "ssb_rollouts: student needs the teacher's view in the batch (rows tokenised for ssb_teacher: online)"
        )
    device = inputs["input_ids"].device
    s_prompts = _prompts(inputs["input_ids"], inputs["labels"], inputs.get("attention_mask"))
    t_prompts = _prompts(
        inputs[TEACHER_INPUT_IDS], inputs[TEACHER_LABELS], inputs.get(TEACHER_PREFIX + "attention_mask")
    )
    if sample is not None:
        answers = sample(s_prompts)
    else:
        answers = sample_answers(
            model,
            s_prompts,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            pad_id=pad_id,
            eos_id=eos_id,
        )
    empty = [b for b, a in enumerate(answers) if not a]
    if empty:
        raise ValueError(f"the student sampled no token for batch rows {empty}")
    student = _pad([p + a for p, a in zip(s_prompts, answers, strict=True)],
                   [[-100] * len(p) + a for p, a in zip(s_prompts, answers, strict=True)], pad_id, device)  # fmt: skip
    teacher = _pad([p + a for p, a in zip(t_prompts, answers, strict=True)],
                   [[-100] * len(p) + a for p, a in zip(t_prompts, answers, strict=True)], pad_id, device)  # fmt: skip
    rebuilt = {k: v for k, v in inputs.items() if not k.startswith(TEACHER_PREFIX) and k not in student}
    rebuilt.update(student)
    if "position_ids" not in inputs:
        rebuilt.pop("position_ids")
    rebuilt.update({TEACHER_PREFIX + k: v for k, v in teacher.items() if k != "position_ids"})
    eos = set(eos_id if isinstance(eos_id, list) else [eos_id])
    sampled = {
        "rows": len(answers),
        "tokens": sum(map(len, answers)),
        "ended": sum(a[-1] in eos for a in answers),
    }
    return rebuilt, sampled
