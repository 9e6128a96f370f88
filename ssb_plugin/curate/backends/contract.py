"""What a backend takes and returns: requests, generations and their seeds.

Its own module: the backends (hf, vllm) import these from here, not from the package that builds
them, so the package and its backends never import each other.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Request:
    prompt_ids: tuple[int, ...]
    temperature: float
    top_k: int  # 0 = no top-k filter
    max_tokens: int
    seed: int
    logprobs: int = 0  # top-k entries to record per position (0 = none)


@dataclass
class Generation:
    token_ids: list[int]  # includes the end-of-turn token when finish_reason == "stop"
    finish_reason: str  # "stop" (an EOS token was generated) or "length"
    topk_ids: np.ndarray | None = None  # (len(token_ids), k) int32
    topk_logprobs: np.ndarray | None = None  # (len(token_ids), k) float32


def derive_seed(seed: int, problem_id: str, role: str, index: int = 0) -> int:
    """A per-request seed from (global seed, problem id, role, sample index): stable across runs,
    batch compositions and resumes."""
    digest = hashlib.sha256(f"{seed}\x00{problem_id}\x00{role}\x00{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFFFFFF
