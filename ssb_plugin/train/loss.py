"""The SSB distillation loss: forward KL at temperature T over answer positions, chunked over the vocab.

Two target kinds share one chunked kernel (`_ChunkedKD`):
- sparse (stored targets): per answer position t a few teacher ids i_j with target weights w_j
  (summing to 1) and the teacher's exact log-probs log p_j = log softmax(teacher logits / T)[i_j];
  KL_t ~= sum_j w_j (log p_j - log q_j), log q = log_softmax(z_t / T) over the full vocabulary.
  With w = p on all V ids this is the exact full-vocabulary KL; ssb_plugin.train.targets builds w
  from the stored top-k, the exact log-normaliser and the sampled tail (an unbiased estimate).
- dense (online teacher / the reference): the teacher's final hidden states at the same positions;
  KL_t = sum_v p_v (log p_v - log q_v) over the whole vocabulary, exact.

Both return (loss_sum, kd_sum, ce_sum): loss_sum = kd_weight * T^2 * sum_t KL_t + ce_weight * sum_t CE_t;
the caller divides by the step's answer-token count. docs/training.md, "The objective".

Memory: only answer rows of the final hidden states ([N, H]) come in; logits exist one chunk
([chunk, V], fp32) at a time (dense: two or three such buffers). The gradient w.r.t. each chunk's
logits has a closed form ((sum w) softmax(z/T) - w) / T, pushed through the lm_head at once, so no
logits are kept for backward. The functions are pure in (hidden, lm_head weight, targets): they can
run wherever the output projection's parameters are gathered (e.g. inside a sharded model's forward).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

PAD_ID = -1  # a padded target slot (rows narrower than the widest, or positions without a target)


def _logits_fp32(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, cache: dict, key: str):
    """h @ W^T (+ b) with an fp32 result. Half-precision W: CUDA's mm with out_dtype (fp32 accumulate
    and output, no fp32 copy of W); elsewhere one fp32 copy of W per loss call, kept in `cache`."""
    if weight.dtype == torch.float32:
        z = h.float() @ weight.t()
    else:
        z = None
        if key not in cache and weight.is_cuda:
            try:
                z = torch.mm(h.to(weight.dtype), weight.t(), out_dtype=torch.float32)
            except (RuntimeError, TypeError, NotImplementedError):
                z = None
        if z is None:
            if key not in cache:
                cache[key] = weight.float()
            z = h.float() @ cache[key].t()
    if bias is not None:
        z = z + bias.float()
    return z


@dataclass
class SparseTarget:
    """[N, W] teacher ids (PAD_ID = empty slot), target weights, teacher log-probs at T."""

    ids: torch.Tensor
    weights: torch.Tensor
    logprobs: torch.Tensor

    def kl_and_grad(self, s, e, log_q_full, q_scaled, cache):
        """KL sum over rows s:e and, in place on q_scaled (= softmax(z/T) * scale), the logit gradient."""
        ids = self.ids[s:e].long()
        valid = ids != PAD_ID
        safe = ids.clamp_min(0)
        w = self.weights[s:e].float().masked_fill(~valid, 0.0)
        lp = self.logprobs[s:e].float().masked_fill(~valid, 0.0)
        kl = (w * (lp - log_q_full.gather(-1, safe))).sum()
        if q_scaled is None:
            return kl, None
        scale = cache["scale"]
        g = q_scaled.mul_(w.sum(-1, keepdim=True))  # (sum_j w_j) * softmax(z/T) * scale
        g.scatter_add_(-1, safe, w * -scale)
        return kl, g


@dataclass
class DenseTarget:
    """The teacher's final hidden states [N, H] at the same positions, through `weight`/`bias`
    (the student's lm_head when None: the online teacher is the base model without the adapter)."""

    hidden: torch.Tensor
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None

    def kl_and_grad(self, s, e, log_q_full, q_scaled, cache):
        w, b = cache["student_wb"] if self.weight is None else (self.weight, self.bias)
        zt = _logits_fp32(
            self.hidden[s:e].detach(), w.detach(), None if b is None else b.detach(), cache, "tw32"
        )
        log_p = torch.log_softmax(zt.mul_(cache["inv_t"]), dim=-1)
        del zt
        p = log_p.exp()
        kl = (p * (log_p - log_q_full)).sum()
        del log_p
        if q_scaled is None:
            return kl, None
        return kl, q_scaled.sub_(p.mul_(cache["scale"]))


class _ChunkedKD(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, target, labels, temperature, kd_coef, ce_coef, chunk):
        want_h, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        want_b = bias is not None and ctx.needs_input_grad[2]
        grads = want_h or want_w or want_b
        grad_h = torch.zeros_like(hidden) if want_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if want_w else None
        grad_b = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if want_b else None
        kd_sum = torch.zeros((), dtype=torch.float32, device=hidden.device)
        ce_sum = torch.zeros((), dtype=torch.float32, device=hidden.device)
        inv_t = 1.0 / temperature
        cache: dict = {"inv_t": inv_t, "scale": kd_coef * inv_t, "student_wb": (weight, bias)}
        for s in range(0, hidden.shape[0], chunk):
            e = min(s + chunk, hidden.shape[0])
            h = hidden[s:e]
            z = _logits_fp32(h, weight, bias, cache, "w32")  # [c, V] fp32
            ce, g_ce = _ce(z, None if labels is None else labels[s:e], ce_coef if grads else 0.0)
            ce_sum += ce
            log_q = torch.log_softmax(z.mul_(inv_t), dim=-1)  # student at T
            del z
            q_scaled = log_q.exp().mul_(cache["scale"]) if grads else None
            kl, g = target.kl_and_grad(s, e, log_q, q_scaled, cache)
            kd_sum += kl
            del log_q
            if not grads:
                continue
            if g_ce is not None:
                g.add_(g_ce)
                del g_ce
            if want_h:
                grad_h[s:e] = (g.to(weight.dtype) @ weight).to(hidden.dtype)
            if want_w:
                grad_w.addmm_(g.t(), h.float())
            if want_b:
                grad_b += g.sum(0)
            del g
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
        return out_h, out_w, out_b, None, None, None, None, None, None


def _ce(z: torch.Tensor, labels: torch.Tensor | None, coef: float):
    """(CE sum at T = 1, its weighted logit gradient or None). CE is always summed for logging."""
    if labels is None:
        return torch.zeros((), dtype=z.dtype, device=z.device), None
    y = labels.long().unsqueeze(-1)
    lse = torch.logsumexp(z, dim=-1)
    ce = (lse - z.gather(-1, y).squeeze(-1)).sum()
    if not coef:
        return ce, None
    g = torch.exp(z - lse.unsqueeze(-1))
    g.scatter_add_(-1, y, torch.full_like(y, -1.0, dtype=g.dtype))
    return ce, g.mul_(coef)


def _check_common(hidden, temperature, chunk_size, ce_weight, labels, n_target: int, what: str) -> None:
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be > 0, got {chunk_size}")
    if n_target != hidden.shape[0]:
        raise ValueError(f"shape mismatch: hidden has {hidden.shape[0]} rows, {what} has {n_target}")
    if ce_weight and labels is None:
        raise ValueError("ce_weight > 0 needs labels")


def sparse_kl_sums(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target_ids: torch.Tensor,
    target_weights: torch.Tensor,
    target_logprobs: torch.Tensor,
    *,
    labels: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    temperature: float = 2.0,
    kd_weight: float = 1.0,
    ce_weight: float = 0.0,
    chunk_size: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss_sum, kd_sum, ce_sum) over N answer rows against a sparse teacher target.

    hidden [N, H]: final (post-norm) hidden states at the positions predicting answer tokens;
    weight [V, H] / bias [V]: the lm_head; target_ids [N, W] (PAD_ID = empty slot); target_weights
    [N, W]: mass on each id (sums to 1 per row); target_logprobs [N, W]: the teacher's log-probs at T
    on those ids; labels [N]: the answer tokens (for CE, optional).
    """
    if not target_ids.shape == target_weights.shape == target_logprobs.shape:
        raise ValueError(
            f"shape mismatch: target_ids {tuple(target_ids.shape)}, target_weights "
            f"{tuple(target_weights.shape)}, target_logprobs {tuple(target_logprobs.shape)}"
        )
    _check_common(hidden, temperature, chunk_size, ce_weight, labels, target_ids.shape[0], "target_ids")
    target = SparseTarget(target_ids, target_weights, target_logprobs)
    return _apply(hidden, weight, bias, target, labels, temperature, kd_weight, ce_weight, chunk_size)


def full_vocab_kl_sums(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    teacher_hidden: torch.Tensor,
    *,
    teacher_weight: torch.Tensor | None = None,
    teacher_bias: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    temperature: float = 2.0,
    kd_weight: float = 1.0,
    ce_weight: float = 0.0,
    chunk_size: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss_sum, kd_sum, ce_sum): the exact full-vocabulary forward KL at T, chunked.

    teacher_hidden [N, H]: the teacher's final hidden states at the positions aligned with `hidden`
    (no gradient flows into it). The teacher's logits use teacher_weight/teacher_bias, or the
    student's lm_head when teacher_weight is None (same base model, adapter disabled).
    """
    _check_common(
        hidden, temperature, chunk_size, ce_weight, labels, teacher_hidden.shape[0], "teacher_hidden"
    )
    if teacher_weight is None and teacher_bias is not None:
        raise ValueError(
            "teacher_bias without teacher_weight: pass both, or neither to use the student's lm_head"
        )
    target = DenseTarget(teacher_hidden, teacher_weight, teacher_bias)
    return _apply(hidden, weight, bias, target, labels, temperature, kd_weight, ce_weight, chunk_size)


def _apply(hidden, weight, bias, target, labels, temperature, kd_weight, ce_weight, chunk_size):
    kd_coef = float(kd_weight) * float(temperature) ** 2
    return _ChunkedKD.apply(
        hidden, weight, bias, target, labels, float(temperature), kd_coef, float(ce_weight), int(chunk_size)
    )


# ----------------------------------------------------------------------------------------------
# Model -> loss inputs (used by the trainer, the self-check and the benchmark; no Axolotl import)


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


def answer_hidden(model, inputs: dict, labels: torch.Tensor):
    """Run the model without (B, S, V) logits; return (hidden rows [N, H] predicting answer tokens,
    the [B, S-1] mask that picked them, outputs). `inputs` must hold only forward inputs."""
    outputs = model(**inputs, output_hidden_states=True, logits_to_keep=1, use_cache=False, return_dict=True)
    hidden = outputs.hidden_states[-1]  # post-norm final hidden states, [B, S, H]
    mask = labels[:, 1:] != -100  # position t predicts labels[t+1]
    return hidden[:, :-1][mask], mask, outputs


# Batch keys of a stored target (built by ssb_plugin.train.targets, placed by the collator).
IDS, WEIGHTS, LOGPROBS = "ssb_target_ids", "ssb_target_weights", "ssb_target_logprobs"
TEMPERATURE = "ssb_target_temperature"  # [B]: the T the rows' targets were built for
TARGET_KEYS = (IDS, WEIGHTS, LOGPROBS)
NOT_FORWARD = ("num_items_in_batch", "length")  # loss kwarg / packing bookkeeping, not forward inputs


def pop_stored_target(inputs: dict, temperature: float) -> SparseTarget:
    """Take the stored target out of a batch; refuse targets built for another temperature."""
    built = inputs.pop(TEMPERATURE, None)
    if built is not None and torch.is_tensor(built) and built.numel():
        off = (built.float() - float(temperature)).abs().max().item()
        if off > 1e-6:
            raise ValueError(
                f"the batch's targets were built for T={sorted(set(built.tolist()))}, the loss runs at "
                f"T={temperature}: the prepared dataset is stale (clear dataset_prepared_path and re-run "
                f"preprocessing)"
            )
    return SparseTarget(inputs.pop(IDS), inputs.pop(WEIGHTS), inputs.pop(LOGPROBS))


def ssb_forward(model, inputs: dict, *, temperature, kd_weight, ce_weight, chunk_size):
    """Run the model on a stored-target batch; return (loss_sum, kd_sum, ce_sum, n_answer_tokens, outputs).
    `inputs` is consumed."""
    target = pop_stored_target(inputs, temperature)
    labels = inputs.pop("labels")
    for stray in NOT_FORWARD:
        inputs.pop(stray, None)
    mask = labels[:, 1:] != -100  # position t predicts labels[t+1]
    ids, weights, lps = (x[:, :-1][mask] for x in (target.ids, target.weights, target.logprobs))
    if ids.numel() and not bool((ids != PAD_ID).any(-1).all()):
        raise ValueError(
            "an answer position has no teacher target: labels and ssb_target_* are misaligned "
            "(was the batch built by ssb_plugin.train.collator.SSBDataCollator?)"
        )

    def loss_in_head(hidden, weight, bias):  # runs inside the lm_head's forward (ssb_plugin.train.sharded)
        h = hidden[:, :-1][mask]
        loss_sum, kd_sum, ce_sum = sparse_kl_sums(
            h,
            weight,
            ids,
            weights,
            lps,
            labels=labels[:, 1:][mask],
            bias=bias,
            temperature=temperature,
            kd_weight=kd_weight,
            ce_weight=ce_weight,
            chunk_size=chunk_size,
        )
        if h.shape[0] == 0:  # all-masked batch: a zero that still reaches every parameter (DDP-safe)
            loss_sum = loss_sum + hidden.sum() * 0.0
        return loss_sum, kd_sum, ce_sum

    from ssb_plugin.train.sharded import forward_with_head_loss  # imports this module

    (loss_sum, kd_sum, ce_sum), outputs = forward_with_head_loss(model, inputs, loss_in_head)
    return loss_sum, kd_sum, ce_sum, int(mask.sum()), outputs
