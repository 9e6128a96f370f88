"""The teacher target at the training temperature T, built from a curated record's stored fields.

Output per answer position: ids, weights w (summing to 1), the teacher's log-probs log p_T at
those ids and which slots are tail samples; the loss is sum_j w_j (log p_j - log q_j)
(ssb_plugin.train.loss.sparse_kl_sums), its gradient taken with the student's own tail as a control
variate where slots are sampled.

- "topk+tail" sets (ssb_plugin.curate.targets): top-k ids with their exact p_T (from the stored
  log-normaliser), and the sampled tail ids sharing the exact tail mass 1 - sum_topk p_T. At the
  sampling temperature T_s each tail sample weighs (tail mass) / m (unbiased); at another carried T
  the samples are importance-weighted by p_T / p_T_s and normalised to the tail mass (consistent).
  With the student equal to the teacher every log p_j equals log q_j: the estimate is exactly 0.
- top-k-only sets (no log-normaliser, no `target` in the manifest): the stored top-k renormalised at
  T; this drops the tail mass (see `tail_share`), so such sets are read but warned about.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ssb_plugin.record import StoredTarget, TargetError, TargetKind

TOPK_TAIL, RENORMALISED = TargetKind.TOPK_TAIL, TargetKind.RENORMALISED
# What the manifest says about a set's stored target, as training reads it (StoredTarget.from_manifest).
TargetInfo = StoredTarget

__all__ = ["RENORMALISED", "TOPK_TAIL", "Target", "TargetError", "TargetInfo", "build_target", "tail_share"]


class Target(NamedTuple):
    """One record's training target at T, [R answer positions, W slots]."""

    ids: np.ndarray  # int64 teacher ids
    weights: np.ndarray  # float32, summing to 1 per position
    logprobs: np.ndarray  # float32 teacher log p_T at the ids
    sampled: np.ndarray  # uint8: 1 at a tail sample (the top-k slots come first), 0 at an exact p_T


def build_target(row: dict, info: TargetInfo, temperature: float) -> Target:
    """The training target of one record at `temperature`."""
    top_ids = np.asarray(row["teacher_topk_ids"], dtype=np.int64)
    top_lp = np.asarray(row["teacher_topk_logprobs"], dtype=np.float64)
    if info.kind != TOPK_TAIL:
        return _renormalised(top_ids, top_lp, temperature)
    log_norm = np.asarray(row["teacher_log_norm"], dtype=np.float64)
    lz = log_norm[:, info.index(temperature)][:, None]
    lp_top = top_lp / temperature - lz
    w_top = np.exp(lp_top)
    rest = np.clip(1.0 - w_top.sum(-1, keepdims=True), 0.0, None)
    tail_ids = np.asarray(row["teacher_tail_ids"], dtype=np.int64).reshape(len(top_ids), -1)
    tail_raw = np.asarray(row["teacher_tail_logprobs"], dtype=np.float64).reshape(len(top_ids), -1)
    lp_tail = tail_raw / temperature - lz
    if tail_ids.shape[1]:
        ts = info.sampling_temperature
        lz_s = log_norm[:, info.index(ts)][:, None]
        ratio = lp_tail - (tail_raw / ts - lz_s)  # log p_T / p_T_s per sample (0 at T = T_s)
        ratio -= ratio.max(-1, keepdims=True)
        w_tail = rest * np.exp(ratio) / np.exp(ratio).sum(-1, keepdims=True)
    else:
        w_tail = np.zeros_like(lp_tail)
    ids = np.concatenate([top_ids, tail_ids], axis=1)
    weights = np.concatenate([w_top, w_tail], axis=1)
    logprobs = np.concatenate([lp_top, lp_tail], axis=1)
    sampled = np.concatenate([np.zeros(top_ids.shape, np.uint8), np.ones(tail_ids.shape, np.uint8)], axis=1)
    return Target(ids, weights.astype(np.float32), logprobs.astype(np.float32), sampled)


def _renormalised(top_ids, top_lp, temperature) -> Target:
    z = top_lp / temperature
    log_p = z - np.logaddexp.reduce(z, axis=-1, keepdims=True)
    sampled = np.zeros(top_ids.shape, np.uint8)
    return Target(top_ids, np.exp(log_p).astype(np.float32), log_p.astype(np.float32), sampled)


def tail_share(rows, info: TargetInfo, temperature: float) -> float | None:
    """Mean teacher probability at T outside the stored top-k, over the rows' answer tokens.
    Exact for "topk+tail" sets at a carried T; for top-k-only sets known only at T = 1 (None otherwise)."""
    shares = []
    for row in rows:
        lp = np.asarray(row["teacher_topk_logprobs"], dtype=np.float64)
        if info.kind == TOPK_TAIL:
            lz = np.asarray(row["teacher_log_norm"], dtype=np.float64)[:, info.index(temperature)][:, None]
            shares.append(1.0 - np.exp(lp / temperature - lz).sum(-1))
        elif abs(temperature - 1.0) <= 1e-6:
            shares.append(1.0 - np.exp(lp).sum(-1))
        else:
            return None
    return float(np.concatenate(shares).mean()) if shares else None
