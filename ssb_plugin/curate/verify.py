"""The self-distillation identity check on a curated record.

Feed the model the teacher's prompt + the stored response ids (ids, never re-tokenised text) and
recompute log-probs at the stored top-k ids: with the prompt of P tokens, position P-1+j predicts
response token j, so the recomputed values must equal the stored ones (fp32: |diff| < 1e-4, KL ~ 0).
`shift=1` reads one position late, which must break it (the check can fail).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ssb_plugin.record import chat_prompt_ids


def identity_check(model, tokenizer, row: dict[str, Any], shift: int = 0) -> dict[str, float]:
    """max |stored - recomputed| log-prob and mean KL(stored top-k || recomputed top-k), renormalised."""
    import torch

    prompt = chat_prompt_ids(tokenizer, row["teacher_messages"])
    response = list(row["response_ids"])
    ids = torch.tensor([prompt + response], device=model.device)
    with torch.inference_mode():
        logp = torch.log_softmax(model(ids).logits[0].float(), dim=-1)
    P, R = len(prompt), len(response)
    top_ids = torch.as_tensor(np.asarray(row["teacher_topk_ids"], dtype=np.int64), device=logp.device)
    stored = torch.as_tensor(np.asarray(row["teacher_topk_logprobs"], dtype=np.float32), device=logp.device)
    rows = torch.arange(P - 1 + shift, P - 1 + R).clamp(max=logp.shape[0] - 1)
    n = len(rows)
    recomputed = logp[rows].gather(1, top_ids[:n])
    stored = stored[:n]
    p = torch.softmax(stored, dim=-1)
    kl = (p * (torch.log_softmax(stored, -1) - torch.log_softmax(recomputed, -1))).sum(-1)
    return {
        "max_abs_diff": float((stored - recomputed).abs().max()),
        "mean_kl": float(kl.mean()),
        "positions": n,
    }
