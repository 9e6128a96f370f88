"""The alignment/identity check of a curated record: the one home (used by the self-check and tests).

Feed the model a record's prompt + the stored response ids (ids, never re-tokenised text). With a
prompt of P tokens, position P-1+j predicts response token j (ssb_plugin.record). On the teacher's
prompt, the curating model must reproduce its own stored log-probs there, and the stored target at
the training temperature must be at KL ~0 from it; read one position late (`shift=1`) it must not.
On the student's prompt the same KL is what training starts from.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ssb_plugin.record import chat_prompt_ids
from ssb_plugin.train.targets import TargetInfo, build_target

VIEWS = {"teacher": "teacher_messages", "student": "student_messages"}


def view_logits(model, tokenizer, row: dict[str, Any], view: str = "teacher", shift: int = 0):
    """fp32 logits [R', V] of the positions predicting the response (P-1+j, or `shift` later), on the
    teacher's or student's prompt; R' = R - shift."""
    import torch

    prompt = chat_prompt_ids(tokenizer, row[VIEWS[view]])
    response = list(row["response_ids"])
    ids = torch.tensor([prompt + response], device=model.device)
    with torch.inference_mode():
        logits = model(ids).logits[0].float().cpu()
    p, r = len(prompt), len(response)
    return logits[p - 1 + shift : p - 1 + r]


def target_kl(logits, row: dict[str, Any], info: TargetInfo, temperature: float, shift: int = 0):
    """Per position: the stored target's KL estimate sum_j w_j (log p_j - log q_j) at `temperature`,
    q = softmax(logits / T) (what the loss computes, here on one row without gradients).

    log q is taken in float64: the stored log-normaliser is summed in float64, and an fp32
    logsumexp over the vocabulary is off by ~1e-5 nats (more on AVX2-only kernels), which at T = 1
    would show as an identity KL of that size that says nothing about the stored target."""
    import torch

    ids, weights, logprobs = (
        torch.as_tensor(a[: len(a) - shift]) for a in build_target(row, info, temperature)[:3]
    )
    log_q = torch.log_softmax(logits.double() / temperature, dim=-1).gather(-1, ids.clamp_min(0))
    valid = ids >= 0
    return (weights * (logprobs - log_q)).masked_fill(~valid, 0.0).sum(-1)


def check_row(model, tokenizer, row: dict[str, Any], info: TargetInfo, temperature: float) -> dict[str, Any]:
    """Alignment (|stored - recomputed| raw log-probs), identity KL at T, one-off KL, student-side KL."""
    import torch

    top_ids = torch.as_tensor(np.asarray(row["teacher_topk_ids"], dtype=np.int64))
    stored = torch.as_tensor(np.asarray(row["teacher_topk_logprobs"], dtype=np.float32))
    teacher = view_logits(model, tokenizer, row, "teacher")
    diff = (torch.log_softmax(teacher, -1).gather(-1, top_ids) - stored).abs()
    stats = {
        "id": row["id"],
        "answer_tokens": len(row["response_ids"]),
        "aligned_mean_abs": diff.mean().item(),
        "aligned_max_abs": diff.max().item(),
        "identity_kl": target_kl(teacher, row, info, temperature).mean().item(),
    }
    if len(row["response_ids"]) > 1:
        late = view_logits(model, tokenizer, row, "teacher", shift=1)
        stats["shifted_kl"] = target_kl(late, row, info, temperature, shift=1).mean().item()
    student = view_logits(model, tokenizer, row, "student")
    stats["student_kd_per_token"] = temperature**2 * target_kl(student, row, info, temperature).mean().item()
    return stats
