"""The stored teacher target, computed from the teacher's full logits at every answer position.

Per answer position (docs/training.md, "The objective"), from l = log_softmax(teacher logits):
- the top `stored_topk` ids and their raw (temperature-1) log-probs l_i;
- log_norm[T] = logsumexp(l / T) over the whole vocabulary, for every temperature T the set carries:
  with it, log p_T(i) = l_i / T - log_norm[T] is exact for any stored id, and so is the tail mass
  1 - sum_topk p_T(i);
- `tail_samples` ids drawn from the teacher's T_s-distribution restricted to the tail (outside the
  top-k), T_s = the largest carried temperature, by systematic sampling (one uniform offset, m evenly
  spaced points on the tail's CDF: each draw is marginally a tail sample, with far less variance
  than m independent draws), and their raw log-probs. Training weighs them to carry the exact tail
  mass (ssb_plugin.train.targets), an unbiased estimate of the tail's share of the KL at T_s and a
  self-normalised (consistent) one at lower T.

The scoring pass (`score_rows`) runs the teacher once, teacher-forced, over prompt + response ids:
the same positions and weights for both backends, chunked so only `chunk` x V logits exist at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ssb_plugin.curate.config import DEFAULT_STORED_TOPK, DEFAULT_TAIL_SAMPLES, DEFAULT_TARGET_TEMPERATURES
from ssb_plugin.record import StoredTarget, TargetKind


@dataclass(frozen=True)
class TargetSpec:
    stored_topk: int = DEFAULT_STORED_TOPK  # teacher log-probs stored per answer token (the top ones)
    tail_samples: int = DEFAULT_TAIL_SAMPLES  # tail ids sampled per answer token
    temperatures: tuple[float, ...] = DEFAULT_TARGET_TEMPERATURES  # log-normalisers stored for these T

    @property
    def tail_temperature(self) -> float:
        return max(self.temperatures)

    def manifest(self) -> StoredTarget:
        """The manifest's `target` entry: what training needs to read the fields."""
        return StoredTarget(
            kind=TargetKind.TOPK_TAIL,
            temperatures=tuple(float(t) for t in self.temperatures),
            tail_temperature=float(self.tail_temperature),
            stored_topk=self.stored_topk,
            tail_samples=self.tail_samples,
            tail_sampling="systematic, from the teacher's tail at tail_temperature",
            logprobs="raw (temperature 1), from a teacher-forced scoring pass",
        )

    def bytes_per_token(self) -> int:
        return 8 * self.stored_topk + 8 * self.tail_samples + 4 * len(self.temperatures)


def targets_from_logprobs(lp, spec: TargetSpec, generator) -> dict[str, np.ndarray]:
    """lp [R, V] fp32 raw log-probs -> the stored fields (numpy) for R answer positions."""
    import torch

    vocab = lp.shape[-1]
    k = min(spec.stored_topk, vocab)
    top = lp.topk(k, dim=-1)
    # float64: an fp32 sum over ~50k-150k terms is off by ~1e-5, which would be the identity's error
    lp64 = lp.double()
    log_norm = torch.stack([torch.logsumexp(lp64 / t, dim=-1) for t in spec.temperatures], dim=-1)
    m = spec.tail_samples if k < vocab else 0
    tail_ids = torch.zeros((lp.shape[0], m), dtype=torch.long)
    if m:
        tail_ids = _systematic_tail(lp, top.indices, spec.tail_temperature, m, generator)
    return {
        "teacher_topk_ids": top.indices.to(torch.int32).cpu().numpy(),
        "teacher_topk_logprobs": top.values.float().cpu().numpy(),
        "teacher_log_norm": log_norm.float().cpu().numpy(),
        "teacher_tail_ids": tail_ids.to(torch.int32).cpu().numpy(),
        "teacher_tail_logprobs": lp.gather(-1, tail_ids.to(lp.device)).float().cpu().numpy(),
    }


def _systematic_tail(lp, top_ids, temperature: float, m: int, generator):
    """[R, m] ids from softmax(lp / T) with the top-k removed: m evenly spaced points on its CDF."""
    import torch

    z = (lp / temperature).double()
    z.scatter_(-1, top_ids, float("-inf"))
    cdf = torch.softmax(z, dim=-1).cumsum_(-1)
    offset = 1.0 - torch.rand((lp.shape[0], 1), generator=generator, dtype=torch.float64)  # (0, 1]
    u = (torch.arange(m, dtype=torch.float64) + offset.cpu()).to(cdf.device) / m
    u = u * cdf[:, -1:]  # exactly inside the CDF despite rounding; u > 0 never lands on a zero-mass id
    return torch.searchsorted(cdf, u).clamp_(max=lp.shape[-1] - 1)


def score_rows(model, jobs, spec: TargetSpec, *, seeds, chunk: int = 256) -> list[dict[str, np.ndarray]]:
    """Teacher-forced pass per job (prompt ids, response ids): the stored fields of each response.

    Position P-1+j of prompt + response predicts response token j (the alignment contract).
    Logits are formed `chunk` positions at a time from the final hidden states.
    """
    import torch

    head = model.get_output_embeddings()  # a plain transformers model: the teacher's own lm_head
    w32 = head.weight.detach().float()
    b32 = None if getattr(head, "bias", None) is None else head.bias.detach().float()
    out = []
    for (prompt, response), seed in zip(jobs, seeds, strict=True):
        ids = torch.tensor([list(prompt) + list(response)], device=model.device)
        with torch.inference_mode():
            hidden = model(ids, output_hidden_states=True, logits_to_keep=1).hidden_states[-1][0]
            p, r = len(prompt), len(response)
            h = hidden[p - 1 : p - 1 + r]
            gen = torch.Generator().manual_seed(int(seed))
            parts = []
            for s in range(0, r, chunk):
                z = h[s : s + chunk].float() @ w32.t()
                if b32 is not None:
                    z = z + b32
                parts.append(targets_from_logprobs(torch.log_softmax(z, dim=-1), spec, gen))
        out.append({key: np.concatenate([part[key] for part in parts]) for key in parts[0]})
    return out
