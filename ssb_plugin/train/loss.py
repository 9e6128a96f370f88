"""The SSB distillation loss: top-k forward KL at temperature T over answer positions, chunked.

For answer position t with teacher top-k ids i_1..i_k and raw log-probs l_1..l_k:
    p_j = softmax(l / T)_j over the k entries,  log q_j = log_softmax(z_t / T)[i_j] over the full vocab,
    KL_t = sum_j p_j (log p_j - log q_j).
`topk_distill_sums` returns kd_coef * sum_t KL_t + ce_coef * sum_t CE_t (plus the two raw sums for
logging); the trainer divides by the step's answer-token count. docs/design.md, "The loss".

Memory: the caller passes only the answer rows of the final hidden states ([N, H]); logits exist
one chunk ([chunk, V], fp32) at a time. The gradient w.r.t. the chunk's logits is formed right away
(closed form: (softmax(z/T) - p) / T for KD, softmax(z) - onehot for CE) and pushed through the
lm_head, so no chunk's logits are kept for backward: backward is a scalar multiply.
"""

from __future__ import annotations

import torch

PAD_ID = -1  # a padded top-k slot (rows narrower than the widest k, or positions without a target)
IDS, LOGPROBS = "ssb_topk_ids", "ssb_topk_logprobs"  # the batch keys of the teacher targets


def _logits_fp32(
    h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, cache: dict
) -> torch.Tensor:
    """h @ W^T (+ b) with an fp32 result. Half-precision W: CUDA's mm with out_dtype (fp32 accumulate
    and output, no fp32 copy of W); elsewhere one fp32 copy of W per loss call, kept in `cache`."""
    if weight.dtype == torch.float32:
        z = h.float() @ weight.t()
    else:
        z = None
        if "w32" not in cache and weight.is_cuda:
            try:
                z = torch.mm(h.to(weight.dtype), weight.t(), out_dtype=torch.float32)
            except (RuntimeError, TypeError, NotImplementedError):
                z = None
        if z is None:
            if "w32" not in cache:
                cache["w32"] = weight.float()
            z = h.float() @ cache["w32"].t()
    if bias is not None:
        z = z + bias.float()
    return z


class _TopKDistill(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx, hidden, weight, bias, topk_ids, topk_logprobs, labels, temperature, kd_coef, ce_coef, chunk
    ):
        n = hidden.shape[0]
        want_h, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        want_b = bias is not None and ctx.needs_input_grad[2]
        grad_h = torch.zeros_like(hidden) if want_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if want_w else None
        grad_b = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if want_b else None
        kd_sum = torch.zeros((), dtype=torch.float32, device=hidden.device)
        ce_sum = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grads = want_h or want_w or want_b
        inv_t = 1.0 / temperature
        cache: dict = {}
        for s in range(0, n, chunk):
            e = min(s + chunk, n)
            h = hidden[s:e]
            z = _logits_fp32(
                h, weight, bias, cache
            )  # [c, V] fp32, the only vocab-sized buffer (two with CE grads)
            ids = topk_ids[s:e].long()
            valid = ids != PAD_ID
            safe_ids = ids.clamp_min(0)
            # Teacher: renormalise its k raw log-probs at temperature T (padded slots get p = 0).
            t_logits = (topk_logprobs[s:e].float() * inv_t).masked_fill(~valid, float("-inf"))
            log_p = torch.log_softmax(t_logits, dim=-1)
            p = log_p.exp().nan_to_num(0.0)  # a row with no valid slot (all padded) weighs nothing
            log_p = log_p.masked_fill(~valid, 0.0).nan_to_num(0.0)
            # CE (always computed for logging; its gradient only when weighted).
            lse1 = torch.logsumexp(z, dim=-1)
            if labels is not None:
                y = labels[s:e].long().unsqueeze(-1)
                ce_sum += (lse1 - z.gather(-1, y).squeeze(-1)).sum()
            g_ce = None
            if grads and ce_coef and labels is not None:
                g_ce = torch.exp(z - lse1.unsqueeze(-1))
                g_ce.scatter_add_(-1, y, torch.full_like(y, -1.0, dtype=g_ce.dtype))
                g_ce.mul_(ce_coef)
            # Student at temperature T, in place on z to keep one [c, V] buffer.
            z.mul_(inv_t)
            lse = torch.logsumexp(z, dim=-1, keepdim=True)
            log_q = z.gather(-1, safe_ids) - lse
            kd_sum += (p * (log_p - log_q)).sum()
            if not grads:
                continue
            # dKL/dz = (sum_j p_j * softmax(z/T) - p) / T   (sum_j p_j is 1, or 0 for an empty row)
            scale = kd_coef * inv_t
            g = z.sub_(lse).exp_().mul_(p.sum(-1, keepdim=True) * scale)  # one pass: softmax * sum(p) * scale
            g.scatter_add_(-1, safe_ids, p * -scale)
            if g_ce is not None:
                g.add_(g_ce)
                del g_ce
            if want_h:
                grad_h[s:e] = (g.to(weight.dtype) @ weight).to(hidden.dtype)
            if want_w:
                grad_w.addmm_(g.t(), h.float())
            if want_b:
                grad_b += g.sum(0)
            del g, z
        total = kd_coef * kd_sum + (ce_coef * ce_sum if ce_coef else 0.0)
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        ctx.has = (want_h, want_w, want_b)
        ctx.weight_dtype = weight.dtype
        ctx.mark_non_differentiable(kd_sum, ce_sum)
        return total, kd_sum, ce_sum

    @staticmethod
    def backward(ctx, grad_total, _g_kd, _g_ce):
        grad_h, grad_w, grad_b = ctx.saved_tensors
        want_h, want_w, want_b = ctx.has
        out_h = grad_h * grad_total.to(grad_h.dtype) if want_h else None
        out_w = (grad_w * grad_total).to(ctx.weight_dtype) if want_w else None
        out_b = (grad_b * grad_total).to(ctx.weight_dtype) if want_b else None
        return out_h, out_w, out_b, None, None, None, None, None, None, None


def topk_distill_sums(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    topk_ids: torch.Tensor,
    topk_logprobs: torch.Tensor,
    *,
    labels: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    temperature: float = 2.0,
    kd_weight: float = 1.0,
    ce_weight: float = 0.0,
    chunk_size: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss_sum, kd_sum, ce_sum) over N answer rows; divide loss_sum by the step's answer-token count.

    hidden [N, H] (final, post-norm hidden states at the positions predicting answer tokens),
    weight [V, H] / bias [V] of the lm_head, topk_ids [N, k] (PAD_ID = padded slot),
    topk_logprobs [N, k] raw teacher log-probs, labels [N] the answer tokens (for CE; optional).
    loss_sum = kd_weight * T^2 * kd_sum + ce_weight * ce_sum; kd_sum = sum_t KL_t; ce_sum = sum_t CE_t.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be > 0, got {chunk_size}")
    if topk_ids.shape != topk_logprobs.shape or topk_ids.shape[0] != hidden.shape[0]:
        raise ValueError(
            f"shape mismatch: hidden {tuple(hidden.shape)}, topk_ids {tuple(topk_ids.shape)}, "
            f"topk_logprobs {tuple(topk_logprobs.shape)}"
        )
    if ce_weight and labels is None:
        raise ValueError("ce_weight > 0 needs labels")
    kd_coef = float(kd_weight) * float(temperature) ** 2
    return _TopKDistill.apply(
        hidden,
        weight,
        bias,
        topk_ids,
        topk_logprobs,
        labels,
        float(temperature),
        kd_coef,
        float(ce_weight),
        int(chunk_size),
    )


# ----------------------------------------------------------------------------------------------
# Model -> loss (used by the trainer and the benchmark; no Axolotl import)


def resolve_lm_head(model: torch.nn.Module) -> torch.nn.Module:
    """The output projection module (PEFT, DDP and multimodal wrappers unwrapped)."""
    base = model
    for attr in ("module", "_orig_mod"):  # DDP / torch.compile
        base = getattr(base, attr, base)
    if hasattr(base, "get_base_model"):
        base = base.get_base_model()
    emb = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if emb is not None:
        return emb
    if hasattr(base, "lm_head"):
        return base.lm_head
    raise AttributeError(f"no lm_head / output embeddings found on {type(model).__name__}")


def lm_head_params(head: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight, bias) of the lm_head; a LoRA-wrapped head is not supported (its delta would be ignored)."""
    if hasattr(head, "base_layer") and hasattr(head, "lora_A"):
        raise NotImplementedError(
            "a LoRA adapter on lm_head is not supported by the SSB loss (it reads the head's weight directly); "
            "drop lm_head from lora_target_modules"
        )
    return head.weight, getattr(head, "bias", None)


def ssb_forward(model, inputs: dict, *, temperature, kd_weight, ce_weight, chunk_size):
    """Run the model and return (loss_sum, kd_sum, ce_sum, n_answer_tokens, outputs). `inputs` is consumed."""
    t_ids = inputs.pop(IDS)
    t_lps = inputs.pop(LOGPROBS)
    labels = inputs.pop("labels")
    for stray in ("num_items_in_batch", "length"):  # loss kwarg / packing bookkeeping, not forward inputs
        inputs.pop(stray, None)
    outputs = model(**inputs, output_hidden_states=True, logits_to_keep=1, use_cache=False, return_dict=True)
    hidden = outputs.hidden_states[-1]  # post-norm final hidden states, [B, S, H]
    mask = labels[:, 1:] != -100  # position t predicts labels[t+1]
    h = hidden[:, :-1][mask]
    ids = t_ids[:, :-1][mask]
    lps = t_lps[:, :-1][mask]
    targets = labels[:, 1:][mask]
    if ids.numel() and not bool((ids != PAD_ID).any(-1).all()):
        raise ValueError(
            "an answer position has no teacher target: labels and ssb_topk_* are misaligned "
            "(was the batch built by ssb_plugin.train.collator.SSBDataCollator?)"
        )
    weight, bias = lm_head_params(resolve_lm_head(model))
    loss_sum, kd_sum, ce_sum = topk_distill_sums(
        h,
        weight,
        ids,
        lps,
        labels=targets,
        bias=bias,
        temperature=temperature,
        kd_weight=kd_weight,
        ce_weight=ce_weight,
        chunk_size=chunk_size,
    )
    if h.shape[0] == 0:  # all-masked batch: a zero that still reaches every parameter (DDP-safe), no NaN
        loss_sum = loss_sum + hidden.sum() * 0.0
    return loss_sum, kd_sum, ce_sum, int(mask.sum()), outputs
