"""The SSB distillation kernel: forward KL at temperature T over answer rows, chunked over the vocab.

Tensors in, sums out; no model, no batch. Two target kinds share one chunked autograd function
(`_ChunkedKD`):
- sparse (stored targets): per answer position t a few teacher ids i_j with target weights w_j
  (summing to 1) and the teacher's exact log-probs log p_j = log softmax(teacher logits / T)[i_j];
  KL_t ~= sum_j w_j (log p_j - log q_j), log q = log_softmax(z_t / T) over the full vocabulary.
  With w = p on all V ids this is the exact full-vocabulary KL; ssb_plugin.train.targets builds w
  from the stored top-k, the exact log-normaliser and the sampled tail (an unbiased estimate).
- dense (online teacher / the reference): the teacher's final hidden states at the same positions;
  KL_t = sum_v p_v (log p_v - log q_v) over the whole vocabulary, exact; or, with
  `options.divergence`, the reverse KL(q || p) or the generalised JSD (`_student_side`).

Both return (loss_sum, kd_sum, ce_sum): loss_sum = kd_weight * T^2 * sum_t KL_t + ce_weight * sum_t CE_t;
the caller divides by the step's answer-token count. docs/training.md, "The objective". Given a
`stats` dict, the kernel also adds the distillation diagnostics of its rows to it (`DIAGNOSTICS`):
the teacher's top-k mass at T, the student's mass on those ids, the top-k overlap, the KL's max.

Memory: only answer rows of the final hidden states ([N, H]) come in; logits exist one chunk
([chunk, V], fp32) at a time (dense: two or three such buffers). The gradient w.r.t. each chunk's
logits has a closed form ((sum w) softmax(z/T) - w) / T, pushed through the lm_head at once, so no
logits are kept for backward. The functions are pure in (hidden, lm_head weight, targets): they can
run wherever the output projection's parameters are gathered (ssb_plugin.train.sharded runs them
inside the lm_head's forward; ssb_plugin.train.forward builds their inputs from a batch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Protocol

import torch

from ssb_plugin.train.batch_keys import PAD_ID
from ssb_plugin.train.options import DEFAULT_LOSS, LossOptions

__all__ = [
    "DIAGNOSTICS",
    "PAD_ID",
    "DenseTarget",
    "KLTarget",
    "SparseTarget",
    "full_vocab_kl_sums",
    "kl_sums",
    "sparse_kl_sums",
]


# Summed per answer row into `stats` (rows: the count; kl_max: a max). The teacher's top-k: a stored
# target's exact slots (its set's stored top-k), the online teacher's DIAGNOSTIC_TOPK most likely ids.
DIAGNOSTICS = ("rows", "teacher_topk_mass", "student_topk_mass", "topk_overlap", "kl_sum", "kl_max")
DIAGNOSTIC_TOPK = 32


def _diagnose(cache: dict, kl_rows, teacher_mass, student_mass, overlap) -> None:
    """Keep one chunk's per-row diagnostics (called only when `cache["diag"]` collects them)."""
    cache["diag"].append((kl_rows.detach(), teacher_mass, student_mass, overlap))


def _in_student_topk(log_q_full: torch.Tensor, log_q_at: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """[c, W] bool: is each id (its student log-prob `log_q_at`) among the student's top-k[row] ids?"""
    kmax = int(k.max().item()) if k.numel() else 1
    kth = log_q_full.topk(max(kmax, 1), dim=-1).values.gather(-1, (k.clamp_min(1) - 1).long()[:, None])
    return log_q_at >= kth


def _logits_fp32(
    h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, cache: dict, key: str
) -> torch.Tensor:
    """h @ W^T (+ b) with an fp32 result. Half-precision W: CUDA's mm with out_dtype (fp32 accumulate
    and output, no fp32 copy of W); elsewhere one fp32 copy of W per loss call, kept in `cache`."""
    z: torch.Tensor | None
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


class KLTarget(Protocol):
    """A teacher target over N answer rows: its KL sum and logit gradient, chunk by chunk."""

    name: ClassVar[str]  # what a row-count mismatch names

    @property
    def rows(self) -> int: ...

    def kl_and_grad(
        self, s: int, e: int, log_q_full: torch.Tensor, q_scaled: torch.Tensor | None, cache: dict
    ) -> tuple[torch.Tensor, torch.Tensor | None]: ...


@dataclass
class SparseTarget:
    """[N, W] teacher ids (PAD_ID = empty slot), target weights, teacher log-probs at T; optionally
    `sampled` [N, W] (nonzero: the slot is a tail sample, its weight an estimate; zero: an exact
    teacher probability), which turns on the control-variate gradient (`_tail_cv_grad`)."""

    ids: torch.Tensor
    weights: torch.Tensor
    logprobs: torch.Tensor
    sampled: torch.Tensor | None = None
    name: ClassVar[str] = "target_ids"

    def __post_init__(self) -> None:
        shapes = [self.ids.shape, self.weights.shape, self.logprobs.shape]
        if self.sampled is not None:
            shapes.append(self.sampled.shape)
        if any(s != shapes[0] for s in shapes):
            raise ValueError(
                f"shape mismatch: target_ids {tuple(self.ids.shape)}, target_weights "
                f"{tuple(self.weights.shape)}, target_logprobs {tuple(self.logprobs.shape)}"
                + ("" if self.sampled is None else f", target_sampled {tuple(self.sampled.shape)}")
            )

    @property
    def rows(self) -> int:
        return self.ids.shape[0]

    def kl_and_grad(self, s, e, log_q_full, q_scaled, cache):
        """KL sum over rows s:e and, in place on q_scaled (= softmax(z/T) * scale), the logit gradient."""
        if cache["divergence"] != "forward" or cache["clip"] is not None:
            what = f"divergence {cache['divergence']!r}" if cache["clip"] is None else "a pointwise clip"
            raise ValueError(
                f"{what} needs the teacher's whole distribution: a stored target carries only part of it "
                "(use ssb_teacher: online)"
            )
        ids = self.ids[s:e].long()
        valid = ids != PAD_ID
        safe = ids.clamp_min(0)
        w = self.weights[s:e].float().masked_fill(~valid, 0.0)
        lp = self.logprobs[s:e].float().masked_fill(~valid, 0.0)
        log_q = log_q_full.gather(-1, safe)
        kl_rows = (w * (lp - log_q)).sum(-1)
        kl = kl_rows.sum()
        if cache.get("diag") is not None:
            exact = valid if self.sampled is None else valid & (self.sampled[s:e] == 0)
            k = exact.sum(-1)
            top = exact & _in_student_topk(log_q_full, log_q, k)
            _diagnose(
                cache, kl_rows, (w * exact).sum(-1), (log_q.exp() * exact).sum(-1),
                top.sum(-1) / k.clamp_min(1),
            )  # fmt: skip
        if q_scaled is None:
            return kl, None
        scale = cache["scale"]
        if self.sampled is not None:
            sampled = (self.sampled[s:e] != 0) & valid
            if bool(sampled.any()):
                return kl, _tail_cv_grad(q_scaled, safe, w, lp, log_q, sampled, valid & ~sampled, scale)
        g = q_scaled.mul_(w.sum(-1, keepdim=True))  # (sum_j w_j) * softmax(z/T) * scale
        g.scatter_add_(-1, safe, w * -scale)
        return kl, g


def _tail_cv_grad(q_scaled, ids, w, lp, log_q, sampled, exact, scale):
    """The logit gradient scale * ((sum p^) q - p^) for the control-variate target p^ (in place).

    p^ keeps the exact top-k and replaces the tail by the student's own tail shape, scaled to the
    teacher's exact tail mass (a * q, a = P_tail / Q_tail, q detached), plus the sampled correction
    w_j (1 - a q_j / p_j) at each tail sample j: since each sample is marginally drawn from the
    teacher's tail (at T_s), E[correction] = p_tail - a q_tail and E[p^] = p, as for the plain
    estimate; but the sampling noise now scales with how far the student's tail is from the
    teacher's, not with the tail mass (0 at student = teacher). Measured: benchmarks/objective.py.
    """
    q = log_q.exp()
    p_tail = (w * sampled).sum(-1, keepdim=True)
    q_tail = (1.0 - (q * exact).sum(-1, keepdim=True)).clamp_min(1e-12)
    has_tail = sampled.any(-1, keepdim=True)
    a = torch.where(has_tail, p_tail / q_tail, torch.zeros_like(p_tail))
    ratio = torch.exp(log_q - lp).masked_fill(~sampled, 0.0)  # q_j / p_j at the tail samples
    c = (w * (1.0 - a * ratio)).masked_fill(~sampled, 0.0)
    w_exact = w.masked_fill(~exact, 0.0)
    total = w_exact.sum(-1, keepdim=True) + a * q_tail + c.sum(-1, keepdim=True)  # sum of p^
    g = q_scaled.mul_(total - a)  # (sum p^ - a) q everywhere; the exact ids get their a q back below
    g.scatter_add_(-1, ids, (a * q * exact - w_exact - c) * scale)
    return g


@dataclass
class DenseTarget:
    """The teacher's final hidden states [N, H] at the same positions, through `weight`/`bias`
    (the student's lm_head when None: the online teacher is the base model without the adapter)."""

    hidden: torch.Tensor
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    name: ClassVar[str] = "teacher_hidden"

    def __post_init__(self) -> None:
        if self.weight is None and self.bias is not None:
            raise ValueError(
                "teacher_bias without teacher_weight: pass both, or neither to use the student's lm_head"
            )

    @property
    def rows(self) -> int:
        return self.hidden.shape[0]

    def kl_and_grad(self, s, e, log_q_full, q_scaled, cache):
        w, b = cache["student_wb"] if self.weight is None else (self.weight, self.bias)
        zt = _logits_fp32(
            self.hidden[s:e].detach(), w.detach(), None if b is None else b.detach(), cache, "tw32"
        )
        log_p = torch.log_softmax(zt.mul_(cache["inv_t"]), dim=-1)
        del zt
        p = log_p.exp()
        divergence = cache["divergence"]
        if cache["clip"] is not None:
            return _clipped(cache, p, log_p, log_q_full, q_scaled)
        if divergence != "forward":
            return _student_side(cache, p, log_p, log_q_full, q_scaled)
        kl_rows = (p * (log_p - log_q_full)).sum(-1)
        kl = kl_rows.sum()
        del log_p
        _diagnose_dense(cache, kl_rows, p, log_q_full)
        if q_scaled is None:
            return kl, None
        return kl, q_scaled.sub_(p.mul_(cache["scale"]))


def _student_side(cache: dict, p, log_p, log_q, q_scaled):
    """Reverse KL(q || p) or the generalised JSD against a dense teacher: (sum over rows, logit gradient).

    Both are D = sum_v q_v g_v + const with dD/dq_v = g_v (reverse: g = log q - log p; JSD with
    m = beta p + (1 - beta) q: the beta KL(p || m) term's q-derivative cancels against the rest,
    leaving g = (1 - beta) log(q / m)); through the softmax at T, dD/dz = q (g - <q, g>) / T."""
    q = log_q.exp()
    if cache["divergence"] == "reverse":
        g = log_q - log_p
        rows = (q * g).sum(-1)
    else:
        beta = cache["jsd_beta"]
        log_m = torch.logaddexp(log_p + math.log(beta), log_q + math.log(1.0 - beta))
        rows = beta * (p * (log_p - log_m)).sum(-1) + (1.0 - beta) * (q * (log_q - log_m)).sum(-1)
        g = (1.0 - beta) * (log_q - log_m)
    _diagnose_dense(cache, rows, p, log_q)
    if q_scaled is None:
        return rows.sum(), None
    return rows.sum(), q_scaled.mul_(g - (q * g).sum(-1, keepdim=True))


def _clipped(cache: dict, p, log_p, log_q, q_scaled):
    """Any divergence with each vocabulary entry's contribution c_v capped at `clip` before the sum:
    D = sum_v min(c_v, clip) (OPSD's pointwise clip). Forward c = p log(p/q), reverse q log(q/p),
    JSD beta p log(p/m) + (1 - beta) q log(q/m). With h_v = dc_v/dq_v and u_v = [c_v < clip] (a
    capped entry is a constant), dD/dz = (a - q sum_v a_v) / T with a = u h q: forward a = -u p,
    reverse a = u q (log(q/p) + 1), JSD a = u q (1 - beta) log(q/m). The diagnostics keep the
    uncapped divergence."""
    q = log_q.exp()
    divergence = cache["divergence"]
    if divergence == "forward":
        c = p * (log_p - log_q)
    elif divergence == "reverse":
        c = q * (log_q - log_p)
    else:
        beta = cache["jsd_beta"]
        log_m = torch.logaddexp(log_p + math.log(beta), log_q + math.log(1.0 - beta))
        c = beta * (p * (log_p - log_m)) + (1.0 - beta) * (q * (log_q - log_m))
    _diagnose_dense(cache, c.sum(-1), p, log_q)
    kept = c < cache["clip"]
    value = torch.where(kept, c, cache["clip"]).sum()
    if q_scaled is None:
        return value, None
    if divergence == "forward":
        a = -(p * kept)
    elif divergence == "reverse":
        a = q * (log_q - log_p + 1.0) * kept
    else:
        a = q * ((1.0 - beta) * (log_q - log_m)) * kept
    return value, q_scaled.mul_(a.sum(-1, keepdim=True).neg_()).add_(a.mul_(cache["scale"]))


def _diagnose_dense(cache: dict, rows, p, log_q_full) -> None:
    """The diagnostics of a dense teacher's rows (its DIAGNOSTIC_TOPK most likely ids)."""
    if cache.get("diag") is None:
        return
    top = p.topk(min(DIAGNOSTIC_TOPK, p.shape[-1]), dim=-1)
    log_q_top = log_q_full.gather(-1, top.indices)
    k = torch.full((p.shape[0],), top.indices.shape[-1], device=p.device)
    overlap = _in_student_topk(log_q_full, log_q_top, k).float().mean(-1)
    _diagnose(cache, rows, top.values.sum(-1), log_q_top.exp().sum(-1), overlap)


class _ChunkedKD(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, target, labels, options: LossOptions, stats: dict | None):
        want_h, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        want_b = bias is not None and ctx.needs_input_grad[2]
        grads = want_h or want_w or want_b
        grad_h = torch.zeros_like(hidden) if want_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if want_w else None
        grad_b = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if want_b else None
        kd_sum = torch.zeros((), dtype=torch.float32, device=hidden.device)
        ce_sum = torch.zeros((), dtype=torch.float32, device=hidden.device)
        inv_t = 1.0 / float(options.temperature)
        kd_coef, ce_coef, chunk = options.kd_coef, float(options.ce_weight), int(options.chunk_size)
        cache: dict = {"inv_t": inv_t, "scale": kd_coef * inv_t, "student_wb": (weight, bias)}
        cache["diag"] = [] if stats is not None else None
        cache["divergence"], cache["jsd_beta"] = options.divergence, float(options.jsd_beta)
        cache["clip"] = None if options.pointwise_clip is None else float(options.pointwise_clip)
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
            if grad_h is not None:
                grad_h[s:e] = (g.to(weight.dtype) @ weight).to(hidden.dtype)
            if grad_w is not None:
                grad_w.addmm_(g.t(), h.float())
            if grad_b is not None:
                grad_b += g.sum(0)
            del g
        total = kd_coef * kd_sum + (ce_coef * ce_sum if ce_coef else 0.0)
        if stats is not None:
            _add_diagnostics(stats, cache["diag"], hidden.shape[0])
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
        return out_h, out_w, out_b, None, None, None, None


def _add_diagnostics(stats: dict, parts: list, rows: int) -> None:
    """Fold the chunks' per-row diagnostics into `stats` (tensors: no device sync per step)."""
    stats["rows"] = stats.get("rows", 0) + rows
    if not parts:
        return
    kl, teacher, student, overlap = (torch.cat(col).float() for col in zip(*parts, strict=True))
    sums = (
        ("teacher_topk_mass", teacher),
        ("student_topk_mass", student),
        ("topk_overlap", overlap),
        ("kl_sum", kl),
    )
    for key, v in sums:
        stats[key] = stats.get(key, 0.0) + v.sum()
    stats["kl_max"] = torch.maximum(
        torch.as_tensor(stats.get("kl_max", float("-inf"))).to(kl.device), kl.max()
    )


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


def kl_sums(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target: KLTarget,
    *,
    labels: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    options: LossOptions = DEFAULT_LOSS,
    stats: dict | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss_sum, kd_sum, ce_sum) over N answer rows `hidden` [N, H] against `target` (N rows), through
    the lm_head `weight` [V, H] / `bias` [V]; labels [N]: the answer tokens (for CE, optional);
    `stats`: a dict the rows' diagnostics (`DIAGNOSTICS`) are added to."""
    if target.rows != hidden.shape[0]:
        raise ValueError(
            f"shape mismatch: hidden has {hidden.shape[0]} rows, {target.name} has {target.rows}"
        )
    if options.ce_weight and labels is None:
        raise ValueError("ce_weight > 0 needs labels")
    return _ChunkedKD.apply(hidden, weight, bias, target, labels, options, stats)


def sparse_kl_sums(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target_ids: torch.Tensor,
    target_weights: torch.Tensor,
    target_logprobs: torch.Tensor,
    *,
    target_sampled: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    options: LossOptions = DEFAULT_LOSS,
    stats: dict | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss_sum, kd_sum, ce_sum) over N answer rows against a sparse teacher target.

    hidden [N, H]: final (post-norm) hidden states at the positions predicting answer tokens;
    weight [V, H] / bias [V]: the lm_head; target_ids [N, W] (PAD_ID = empty slot); target_weights
    [N, W]: mass on each id (sums to 1 per row); target_logprobs [N, W]: the teacher's log-probs at T
    on those ids; target_sampled [N, W]: nonzero at tail-sample slots (the control-variate
    gradient; None: the plain one); labels [N]: the answer tokens (for CE, optional).
    """
    target = SparseTarget(target_ids, target_weights, target_logprobs, target_sampled)
    return kl_sums(hidden, weight, target, labels=labels, bias=bias, options=options, stats=stats)


def full_vocab_kl_sums(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    teacher_hidden: torch.Tensor,
    *,
    teacher_weight: torch.Tensor | None = None,
    teacher_bias: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    options: LossOptions = DEFAULT_LOSS,
    stats: dict | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss_sum, kd_sum, ce_sum): the exact full-vocabulary forward KL at T, chunked.

    teacher_hidden [N, H]: the teacher's final hidden states at the positions aligned with `hidden`
    (no gradient flows into it). The teacher's logits use teacher_weight/teacher_bias, or the
    student's lm_head when teacher_weight is None (same base model, adapter disabled).
    """
    target = DenseTarget(teacher_hidden, teacher_weight, teacher_bias)
    return kl_sums(hidden, weight, target, labels=labels, bias=bias, options=options, stats=stats)
