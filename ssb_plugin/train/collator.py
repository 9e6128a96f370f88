"""Batch SSB rows: Axolotl's own collators pad ids/labels/positions; the teacher rows are placed here.

Each dataset row carries its R teacher rows in response order. They go to the positions t with
labels[t+1] != -100 (the positions predicting the answer tokens) of the *padded or packed* row, so
the trainer's target mask is simply `labels[:, 1:] != -100`. Packed bins (lists of rows from the
multipack sampler) are concatenated in order; each sample's prompt keeps the first position of the
next sample target-free, and position_ids restart per sample (Axolotl's batch-sampler collator).
Output: ssb_topk_ids [B, S, k] int64 (PAD_ID where no target), ssb_topk_logprobs [B, S, k] float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from axolotl.utils.collators.batching import DataCollatorForSeq2Seq, V2BatchSamplerDataCollatorForSeq2Seq

from ssb_plugin.train.dataset import IDS, LOGPROBS
from ssb_plugin.train.loss import PAD_ID


def target_positions(labels) -> np.ndarray:
    """Positions t whose next token is a trained label: where the logits predict an answer token."""
    lab = np.asarray(labels)
    return np.nonzero(lab[1:] != -100)[0]


@dataclass
class SSBDataCollator:
    tokenizer: Any
    model: Any = None
    padding: Any = True
    max_length: int | None = None
    pad_to_multiple_of: int | None = None
    label_pad_token_id: int = -100
    position_pad_token_id: int = 0
    return_tensors: str = "pt"

    def _base(self, packed: bool):
        cls = V2BatchSamplerDataCollatorForSeq2Seq if packed else DataCollatorForSeq2Seq
        return cls(
            self.tokenizer,
            model=self.model,
            padding=self.padding,
            max_length=self.max_length,
            pad_to_multiple_of=self.pad_to_multiple_of,
            label_pad_token_id=self.label_pad_token_id,
            position_pad_token_id=self.position_pad_token_id,
            return_tensors="pt",
        )

    def __call__(self, features, return_tensors=None):
        packed = isinstance(features[0], list)
        groups = features if packed else [[f] for f in features]
        placed = []  # per output row: (positions in the unpadded row, ids rows, logprob rows, row length)
        clean_groups = []
        for g, group in enumerate(groups):
            offset, pos, t_ids, t_lps, clean = 0, [], [], [], []
            for f in group:
                f = dict(f)
                if IDS not in f or LOGPROBS not in f:
                    raise KeyError(
                        f"batch row {g} has no {IDS}/{LOGPROBS}: every dataset must be `type: ssb_plugin.dataset` "
                        f"(keys: {sorted(f)})"
                    )
                rows_i, rows_l = f.pop(IDS), f.pop(LOGPROBS)
                p = target_positions(f["labels"])
                if len(p) != len(rows_i):
                    raise ValueError(
                        f"batch row {g}: {len(p)} answer positions but {len(rows_i)} teacher rows; the dataset "
                        f"was tokenised differently (clear dataset_prepared_path and re-run preprocessing)"
                    )
                pos.append(p + offset)
                t_ids.extend(list(r) for r in rows_i)
                t_lps.extend(list(r) for r in rows_l)
                offset += len(f["labels"])
                clean.append(f)
            placed.append((np.concatenate(pos) if pos else np.zeros(0, dtype=np.int64), t_ids, t_lps, offset))
            clean_groups.append(clean)
        batch = self._base(packed)(clean_groups if packed else [c[0] for c in clean_groups])
        bsz, seq = batch["labels"].shape
        k = max((len(r) for _, rows, _, _ in placed for r in rows), default=1)
        out_ids = torch.full((bsz, seq, k), PAD_ID, dtype=torch.long)
        out_lps = torch.zeros((bsz, seq, k), dtype=torch.float32)
        left = getattr(self.tokenizer, "padding_side", "right") == "left"
        for b, (pos, rows_i, rows_l, length) in enumerate(placed):
            if not rows_i:
                continue
            shift = seq - length if left else 0
            ids_arr = np.full((len(rows_i), k), PAD_ID, dtype=np.int64)
            lps_arr = np.zeros((len(rows_i), k), dtype=np.float32)
            for j, (ri, rl) in enumerate(zip(rows_i, rows_l, strict=True)):
                ids_arr[j, : len(ri)] = ri
                lps_arr[j, : len(rl)] = rl
            out_ids[b, torch.from_numpy(pos + shift)] = torch.from_numpy(ids_arr)
            out_lps[b, torch.from_numpy(pos + shift)] = torch.from_numpy(lps_arr)
        batch[IDS] = out_ids
        batch[LOGPROBS] = out_lps
        return batch
