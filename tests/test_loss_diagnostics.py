"""The kernel's distillation diagnostics (ssb_plugin.train.loss, `stats`) against numpy written from
their definitions, for a stored target (its exact slots are the teacher's top-k) and the online
(dense) teacher (its DIAGNOSTIC_TOPK most likely ids)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ssb_plugin.curate.targets import TargetSpec, targets_from_logprobs
from ssb_plugin.train.loss import DIAGNOSTIC_TOPK, full_vocab_kl_sums, sparse_kl_sums
from ssb_plugin.train.options import LossOptions
from ssb_plugin.train.targets import TOPK_TAIL, TargetInfo, build_target

T = 2.0


def _case(n=7, h_dim=10, vocab=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(vocab, h_dim, generator=g) * 0.7
    teacher_h = torch.randn(n, h_dim, generator=g)
    return w, teacher_h, teacher_h + 0.5 * torch.randn(n, h_dim, generator=g)


def _expected(p, q, top_ids, kl_rows):
    k = top_ids.shape[1]
    student_top = np.argsort(-q, axis=-1)[:, :k]
    overlap = [len(set(a) & set(b)) / k for a, b in zip(top_ids, student_top, strict=True)]
    return {
        "teacher_topk_mass": np.take_along_axis(p, top_ids, -1).sum(-1).sum(),
        "student_topk_mass": np.take_along_axis(q, top_ids, -1).sum(-1).sum(),
        "topk_overlap": sum(overlap),
        "kl_sum": kl_rows.sum(),
        "kl_max": kl_rows.max(),
    }


def _check(stats, want, n):
    assert stats["rows"] == n
    for key, value in want.items():
        assert float(stats[key]) == pytest.approx(float(value), rel=1e-4, abs=1e-5), key


@pytest.mark.parametrize("chunk", [3, 100])
def test_stored_target_diagnostics(chunk):
    w, teacher_h, student_h = _case()
    k, m = 6, 9
    lp = torch.log_softmax(teacher_h @ w.t(), -1)
    fields = targets_from_logprobs(
        lp, TargetSpec(stored_topk=k, tail_samples=m), torch.Generator().manual_seed(0)
    )
    info = TargetInfo(TOPK_TAIL, (1.0, 2.0), 2.0)
    ids, weights, logprobs, sampled = (torch.as_tensor(a) for a in build_target(fields, info, T))
    stats: dict = {}
    _, kd, _ = sparse_kl_sums(
        student_h, w, ids, weights, logprobs, target_sampled=sampled, options=LossOptions(T, chunk_size=chunk),
        stats=stats,
    )  # fmt: skip
    p = torch.softmax(lp.double() / T, -1).numpy()
    log_q = torch.log_softmax(student_h.double() @ w.double().t() / T, -1)
    kl_rows = (weights.double() * (logprobs.double() - log_q.gather(-1, ids))).sum(-1).numpy()
    _check(
        stats,
        _expected(p, log_q.exp().numpy(), fields["teacher_topk_ids"].astype(np.int64), kl_rows),
        len(ids),
    )
    assert float(stats["kl_sum"]) == pytest.approx(kd.item(), rel=1e-6)


@pytest.mark.parametrize("chunk", [2, 100])
def test_online_teacher_diagnostics(chunk):
    w, teacher_h, student_h = _case()
    stats: dict = {}
    full_vocab_kl_sums(student_h, w, teacher_h, options=LossOptions(T, chunk_size=chunk), stats=stats)
    log_p = torch.log_softmax(teacher_h.double() @ w.double().t() / T, -1)
    log_q = torch.log_softmax(student_h.double() @ w.double().t() / T, -1)
    kl_rows = (log_p.exp() * (log_p - log_q)).sum(-1).numpy()
    top = log_p.topk(DIAGNOSTIC_TOPK, -1).indices.numpy()
    _check(stats, _expected(log_p.exp().numpy(), log_q.exp().numpy(), top, kl_rows), len(teacher_h))


def test_stats_accumulate_over_calls():
    w, teacher_h, student_h = _case()
    stats: dict = {}
    for _ in range(2):
        full_vocab_kl_sums(student_h, w, teacher_h, options=LossOptions(T), stats=stats)
    once: dict = {}
    full_vocab_kl_sums(student_h, w, teacher_h, options=LossOptions(T), stats=once)
    assert stats["rows"] == 2 * once["rows"] and float(stats["kl_sum"]) == pytest.approx(
        2 * float(once["kl_sum"])
    )
    assert float(stats["kl_max"]) == pytest.approx(float(once["kl_max"]))
