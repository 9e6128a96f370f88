"""The control-variate gradient of the stored target (ssb_plugin.train.loss._tail_cv_grad), against
independent dense code: it is the gradient of -sum_v p^_v log q_v for the p^ written out over the
whole vocabulary, unbiased for the dense KL's gradient, exactly 0 at student = teacher, and closer
to the dense gradient than the plain estimate on a heavy tail."""

from __future__ import annotations

import pytest
import torch

from ssb_plugin.curate.targets import TargetSpec, targets_from_logprobs
from ssb_plugin.train.loss import full_vocab_kl_sums, sparse_kl_sums
from ssb_plugin.train.options import LossOptions
from ssb_plugin.train.targets import TOPK_TAIL, TargetInfo, build_target

K, M, T_S = 4, 6, 2.0


def _heavy_tail(n=5, h_dim=12, vocab=300, seed=0):
    """Teacher and student hidden states through one lm_head; most of p_T outside the top-k."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(vocab, h_dim, generator=g, dtype=torch.float64) * 0.6
    teacher_h = torch.randn(n, h_dim, generator=g, dtype=torch.float64)
    student_h = teacher_h + 0.3 * torch.randn(n, h_dim, generator=g, dtype=torch.float64)
    return w, teacher_h, student_h


def _stored(teacher_h, w, temperature, seed):
    """The stored fields as curation writes them, and the target as training builds it at T."""
    lp = torch.log_softmax((teacher_h @ w.t()).float(), -1)
    spec = TargetSpec(stored_topk=K, tail_samples=M, temperatures=(1.0, T_S))
    fields = targets_from_logprobs(lp, spec, torch.Generator().manual_seed(seed))
    info = TargetInfo(TOPK_TAIL, spec.temperatures, spec.tail_temperature)
    ids, weights, logprobs, sampled = (torch.as_tensor(a) for a in build_target(fields, info, temperature))
    assert sampled.tolist() == [[0] * K + [1] * M] * len(ids)  # the top-k first, then the tail samples
    return ids, weights, logprobs, sampled


def _grad(student_h, w, target, temperature, cv=True):
    h = student_h.float().clone().requires_grad_()
    ids, weights, logprobs, sampled = target
    loss, kd, _ = sparse_kl_sums(
        h, w.float(), ids, weights, logprobs, target_sampled=sampled if cv else None,
        options=LossOptions(temperature),
    )  # fmt: skip
    return torch.autograd.grad(loss, h)[0].double(), kd


def _dense_grad(student_h, w, teacher_h, temperature):
    h = student_h.float().clone().requires_grad_()
    loss, _, _ = full_vocab_kl_sums(h, w.float(), teacher_h.float(), options=LossOptions(temperature))
    return torch.autograd.grad(loss, h)[0].double()


def _explicit_p_hat(student_h, w, target, temperature):
    """p^ over the whole vocabulary, written from its definition (no code shared with the loss)."""
    ids, weights, logprobs, sampled = (t.double() if t.is_floating_point() else t for t in target)
    q = torch.softmax(student_h @ w.t() / temperature, -1)
    p_hat = torch.zeros_like(q)
    for r in range(q.shape[0]):
        top = [int(i) for i, s in zip(ids[r], sampled[r], strict=True) if not s]
        tail = torch.ones(q.shape[1], dtype=torch.bool)
        tail[top] = False
        p_tail = sum(float(weights[r, j]) for j in range(ids.shape[1]) if sampled[r, j])
        a = p_tail / float(q[r, tail].sum())
        p_hat[r, tail] = a * q[r, tail]
        for j in range(ids.shape[1]):
            i = int(ids[r, j])
            if sampled[r, j]:
                p_hat[r, i] += weights[r, j] * (1 - a * q[r, i] / logprobs[r, j].exp())
            else:
                p_hat[r, i] += weights[r, j]
    return p_hat


@pytest.mark.parametrize("temperature", [2.0, 1.0])
def test_the_gradient_is_that_of_the_control_variate_target_written_out(temperature):
    w, teacher_h, student_h = _heavy_tail()
    target = _stored(teacher_h, w, temperature, seed=3)
    got, kd = _grad(student_h, w, target, temperature)
    p_hat = _explicit_p_hat(student_h, w, target, temperature)
    h = student_h.clone().requires_grad_()
    ce = -(p_hat * torch.log_softmax(h @ w.t() / temperature, -1)).sum() * temperature**2
    (ref,) = torch.autograd.grad(ce, h)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
    _, kd_plain = _grad(student_h, w, target, temperature, cv=False)
    assert kd.item() == kd_plain.item()  # the logged KL is the plain estimate's


def test_the_gradient_is_unbiased_for_the_dense_kl():
    """Mean over sampling seeds -> the dense gradient (at the sampling temperature, where the tail
    weights are exact); a broken correction (e.g. its sign) leaves an error that does not shrink."""
    w, teacher_h, student_h = _heavy_tail(n=3)
    dense = _dense_grad(student_h, w, teacher_h, T_S)
    mean = sum(_grad(student_h, w, _stored(teacher_h, w, T_S, seed), T_S)[0] for seed in range(400)) / 400
    one = (
        sum((_grad(student_h, w, _stored(teacher_h, w, T_S, s), T_S)[0] - dense).norm() for s in range(20))
        / 20
    )
    # the noise of a mean of 400 falls as 1/sqrt(400) = 0.05 of one draw's; a bias would not
    assert (mean - dense).norm() < 0.1 * one


def test_student_equal_to_teacher_gives_a_zero_gradient():
    w, teacher_h, _ = _heavy_tail()
    for temperature in (1.0, 2.0):
        got, kd = _grad(teacher_h, w, _stored(teacher_h, w, temperature, seed=1), temperature)
        assert abs(kd.item()) < 1e-5
        assert got.abs().max().item() < 1e-5


def test_it_is_closer_to_the_dense_gradient_than_the_plain_estimate_on_a_heavy_tail():
    w, teacher_h, student_h = _heavy_tail(n=8)
    q = torch.softmax(teacher_h @ w.t() / T_S, -1)
    assert (1 - q.topk(K, -1).values.sum(-1)).mean() > 0.6  # a heavy tail indeed
    dense = _dense_grad(student_h, w, teacher_h, T_S)
    err = {True: 0.0, False: 0.0}
    for seed in range(20):
        target = _stored(teacher_h, w, T_S, seed)
        for cv in err:
            err[cv] += ((_grad(student_h, w, target, T_S, cv)[0] - dense).norm() / dense.norm()).item() / 20
    assert err[True] < 0.5 * err[False], err
