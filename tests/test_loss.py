"""Numerical tests of the SSB loss (ssb_plugin.train.loss) and of the trainer's use of it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ssb_plugin.train.batch_keys import PAD_ID
from ssb_plugin.train.loss import full_vocab_kl_sums, sparse_kl_sums
from ssb_plugin.train.options import DEFAULT_LOSS, LossOptions


def _dense_reference(h, w, b, teacher_lp, labels, T, kd_w, ce_w):
    """Plain-autograd reference: full-vocab teacher, full (N, V) student logits."""
    z = h @ w.t() + (b if b is not None else 0)
    p = torch.softmax(teacher_lp / T, -1)
    kl = (p * (torch.log_softmax(teacher_lp / T, -1) - torch.log_softmax(z / T, -1))).sum()
    return kd_w * T * T * kl + ce_w * F.cross_entropy(z, labels, reduction="sum")


def _case(n=9, h_dim=16, vocab=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, h_dim, generator=g, dtype=torch.float64)
    w = torch.randn(vocab, h_dim, generator=g, dtype=torch.float64) * 0.5
    b = torch.randn(vocab, generator=g, dtype=torch.float64) * 0.1
    teacher_lp = torch.log_softmax(torch.randn(n, vocab, generator=g, dtype=torch.float64) * 3, -1)
    labels = torch.randint(0, vocab, (n,), generator=g)
    return h, w, b, teacher_lp, labels


@pytest.mark.parametrize("chunk", [1, 4, 1000])
@pytest.mark.parametrize("T,kd_w,ce_w", [(2.0, 1.0, 0.0), (1.0, 0.7, 0.3), (0.5, 1.0, 2.0)])
def test_sparse_equals_dense_reference_when_it_covers_the_vocab(chunk, T, kd_w, ce_w):
    h, w, b, teacher_lp, labels = _case()
    # every id, in a shuffled order (the loss must not assume sorted rows), weights = p_T
    perm = torch.stack([torch.randperm(w.shape[0]) for _ in range(h.shape[0])])
    lp_t = torch.log_softmax(teacher_lp / T, -1).gather(-1, perm).float()
    args = [t.float().requires_grad_() for t in (h, w, b)]
    opts = LossOptions(temperature=T, kd_weight=kd_w, ce_weight=ce_w, chunk_size=chunk)
    loss, kd, ce = sparse_kl_sums(
        args[0], args[1], perm, lp_t.exp(), lp_t, labels=labels, bias=args[2], options=opts
    )
    grads = torch.autograd.grad(loss, args)
    ref_args = [t.clone().requires_grad_() for t in (h, w, b)]
    ref = _dense_reference(*ref_args, teacher_lp, labels, T, kd_w, ce_w)
    ref_grads = torch.autograd.grad(ref, ref_args)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5, abs=1e-5)
    assert kd_w * T * T * kd.item() + ce_w * ce.item() == pytest.approx(ref.item(), rel=1e-5, abs=1e-5)
    for g, rg in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g.double(), rg, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("chunk", [1, 3, 1000])
@pytest.mark.parametrize("T,kd_w,ce_w", [(2.0, 1.0, 0.0), (1.0, 0.7, 0.3)])
def test_full_vocab_primitive_equals_dense_reference(chunk, T, kd_w, ce_w):
    h, w, b, _, labels = _case()
    teacher_h = h.roll(1, 0) * 0.7  # another model's hidden states through the same lm_head
    teacher_lp = torch.log_softmax(teacher_h @ w.t() + b, -1)
    args = [t.float().requires_grad_() for t in (h, w, b)]
    opts = LossOptions(temperature=T, kd_weight=kd_w, ce_weight=ce_w, chunk_size=chunk)
    loss, _, _ = full_vocab_kl_sums(
        args[0], args[1], teacher_h.float(), labels=labels, bias=args[2], options=opts
    )
    grads = torch.autograd.grad(loss, args)
    ref_args = [t.clone().requires_grad_() for t in (h, w, b)]
    ref = _dense_reference(*ref_args, teacher_lp, labels, T, kd_w, ce_w)
    ref_grads = torch.autograd.grad(ref, ref_args)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5, abs=1e-5)
    for g, rg in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g.double(), rg, rtol=1e-4, atol=1e-5)


def test_full_vocab_identity_is_zero():
    h, w, b, _, _ = _case()
    hf = h.float().requires_grad_()
    opts = LossOptions(temperature=2.0, chunk_size=4)
    loss, kd, _ = full_vocab_kl_sums(hf, w.float(), h.float(), bias=b.float(), options=opts)
    (gh,) = torch.autograd.grad(loss, hf)
    assert abs(kd.item()) < 1e-5 and gh.abs().max().item() < 1e-5


def test_sparse_with_padded_slots_matches_gather_reference():
    h, w, _, teacher_lp, labels = _case(n=6, vocab=30)
    k = 5
    top = torch.topk(teacher_lp, k, -1)
    ids, lps = top.indices.clone(), top.values.float().clone()
    ids[0, 3:] = PAD_ID  # a narrower row (k = 3) padded to width 5
    lps[0, 3:] = 123.0  # padded values must be ignored whatever they hold
    valid = ids != PAD_ID
    log_p = torch.log_softmax((lps / 2).masked_fill(~valid, float("-inf")), -1)  # renormalised top-k at T=2
    weights = log_p.exp().masked_fill(~valid, 77.0)  # padded weights ignored too
    hf, wf = h.float().requires_grad_(), w.float().requires_grad_()
    loss, _, _ = sparse_kl_sums(
        hf,
        wf,
        ids,
        weights,
        log_p.masked_fill(~valid, 5.0),
        options=LossOptions(temperature=2.0, chunk_size=4),
    )
    gh = torch.autograd.grad(loss, hf)[0]

    hr = h.float().clone().requires_grad_()
    log_q = torch.log_softmax(hr @ wf.detach().t() / 2, -1).gather(-1, ids.clamp_min(0))
    ref = 4 * (log_p.exp() * (log_p - log_q)).masked_fill(~valid, 0).sum()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    torch.testing.assert_close(gh, torch.autograd.grad(ref, hr)[0], rtol=1e-4, atol=1e-6)


def test_empty_input_gives_zero_not_nan():
    w = torch.randn(20, 8, requires_grad=True)
    h = torch.zeros(0, 8, requires_grad=True)
    z = torch.zeros(0, 4)
    loss, kd, ce = sparse_kl_sums(h, w, z.long(), z, z, labels=torch.zeros(0, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0 and kd.item() == 0 and ce.item() == 0
    assert h.grad is not None and h.grad.shape == (0, 8)


def test_bf16_weights_close_to_fp32():
    h, w, _, teacher_lp, labels = _case(n=8, vocab=64)
    top = torch.topk(teacher_lp, 16, -1)
    tgt = (top.indices, top.values.float().exp(), top.values.float())
    ref, _, _ = sparse_kl_sums(h.float(), w.float(), *tgt)
    got, _, _ = sparse_kl_sums(h.bfloat16(), w.bfloat16(), *tgt)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(ref.item(), rel=2e-2)


@pytest.mark.parametrize(
    "kw, msg",
    [({"temperature": 0}, "temperature"), ({"chunk_size": 0}, "chunk_size"), ({"ce_weight": 1.0}, "labels")],
)
def test_rejects_bad_arguments(kw, msg):
    with pytest.raises(ValueError, match=msg):
        z = torch.zeros(2, 3)
        sparse_kl_sums(torch.zeros(2, 4), torch.zeros(5, 4), z.long(), z, z, options=LossOptions(**kw))


@pytest.mark.parametrize(
    "target, msg",
    [
        (
            (torch.zeros(3, 2).long(), torch.zeros(3, 2), torch.zeros(3, 2)),
            "hidden has 2 rows, target_ids has 3",
        ),
        ((torch.zeros(2, 2).long(), torch.zeros(2, 3), torch.zeros(2, 2)), "target_weights \\(2, 3\\)"),
    ],
)
def test_rejects_a_target_of_another_shape(target, msg):
    with pytest.raises(ValueError, match=msg):
        sparse_kl_sums(torch.zeros(2, 4), torch.zeros(5, 4), *target)
    with pytest.raises(ValueError, match="teacher_hidden has 3"):
        full_vocab_kl_sums(torch.zeros(2, 4), torch.zeros(5, 4), torch.zeros(3, 4))


def test_loss_options_are_the_declared_ones():
    """The trainer reads a typed view of the `ssb_*` keys; unset keys take the defaults declared once, in
    LossOptions, and the kernel gets them as one LossOptions."""
    from ssb_plugin.train.args import SSBArgs, loss_options

    opts = loss_options({"ssb_temperature": 1.0, "ssb_chunk_size": None, "other_key": 3})
    assert isinstance(opts, SSBArgs) and opts.ssb_temperature == 1.0
    assert opts.ssb_chunk_size == SSBArgs.model_fields["ssb_chunk_size"].default == DEFAULT_LOSS.chunk_size
    assert loss_options({}).ssb_temperature == SSBArgs.model_fields["ssb_temperature"].default == 2.0
    assert loss_options({}).loss() == DEFAULT_LOSS == LossOptions(2.0, 1.0, 0.0, 1024)
    assert opts.loss() == LossOptions(temperature=1.0)
    custom = loss_options({"ssb_kd_weight": 0.5, "ssb_ce_weight": 0.25, "ssb_chunk_size": 8}).loss()
    assert custom == LossOptions(kd_weight=0.5, ce_weight=0.25, chunk_size=8) and custom.kd_coef == 0.5 * 4
    with pytest.raises(ValueError, match="ssb_topk was removed"):
        loss_options({"ssb_topk": 20})
