"""Batch SSB rows: Axolotl's own collators pad ids/labels/positions; the teacher rows are placed here.

Stored teacher (`ssb_teacher: stored`): each dataset row carries its R teacher rows in response order.
They go to the positions t with labels[t+1] != -100 (the positions predicting the answer tokens) of
the *padded or packed* row, so the trainer's target mask is simply `labels[:, 1:] != -100`. Packed
bins (lists of rows from the multipack sampler) are concatenated in order; each sample's prompt keeps
the first position of the next sample target-free, and position_ids restart per sample (Axolotl's
batch-sampler collator). Output: ssb_topk_ids [B, S, k] int64 (PAD_ID where no target),
ssb_topk_logprobs [B, S, k] float32.

Online teacher (`ssb_teacher: online`): each row carries the teacher's own view (teacher prompt +
the same response ids). It is collated by the same Axolotl collator as the student, in the same
bins and order, with the student's key set (position ids restart per sample, attention mask or
not), and returned under `ssb_teacher_*` keys. Its answer positions, read row-major, pair
one-to-one with the student's: same samples, same order, the same R answer tokens each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from axolotl.utils.collators.batching import DataCollatorForSeq2Seq, V2BatchSamplerDataCollatorForSeq2Seq

from ssb_plugin.record import TEACHER_INPUT_IDS, TEACHER_LABELS, TEACHER_PREFIX
from ssb_plugin.train.dataset import IDS, LOGPROBS
from ssb_plugin.train.loss import PAD_ID


def target_positions(labels) -> np.ndarray:
    """Positions t whose next token is a trained label: where the logits predict an answer token."""
    lab = np.asarray(labels)
    return np.nonzero(lab[1:] != -100)[0]


def _pop(feature: dict, keys: tuple[str, str], g: int):
    if any(k not in feature for k in keys):
        raise KeyError(
            f"batch row {g} has no {'/'.join(keys)}: every dataset must be `type: ssb_plugin.dataset`, "
            f"tokenised for this `ssb_teacher` mode (keys: {sorted(feature)})"
        )
    return tuple(feature.pop(k) for k in keys)


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

    def _collate(self, groups: list[list[dict]], packed: bool) -> dict:
        """Axolotl's collator: packed bins concatenated (V2 batch sampler), or rows padded."""
        cls = V2BatchSamplerDataCollatorForSeq2Seq if packed else DataCollatorForSeq2Seq
        base = cls(
            self.tokenizer,
            model=self.model,
            padding=self.padding,
            max_length=self.max_length,
            pad_to_multiple_of=self.pad_to_multiple_of,
            label_pad_token_id=self.label_pad_token_id,
            position_pad_token_id=self.position_pad_token_id,
            return_tensors="pt",
        )
        return base(groups if packed else [g[0] for g in groups])

    def __call__(self, features, return_tensors=None):
        packed = isinstance(features[0], list)
        groups = [[dict(f) for f in g] for g in (features if packed else [[f] for f in features])]
        online = TEACHER_INPUT_IDS in groups[0][0]
        teacher = self._teacher_batch(groups, packed) if online else {}
        placed = None if online else [self._pop_targets(g, group) for g, group in enumerate(groups)]
        batch = self._collate(groups, packed)
        if placed is not None:
            self._place_targets(batch, placed)
        batch.update(teacher)
        return batch

    def _teacher_batch(self, groups: list[list[dict]], packed: bool) -> dict:
        """Pop each row's teacher view and collate it like the student rows, under `ssb_teacher_*` keys."""
        t_groups = []
        for g, group in enumerate(groups):
            t_group = []
            for f in group:
                ids, labels = _pop(f, (TEACHER_INPUT_IDS, TEACHER_LABELS), g)
                n_s, n_t = len(target_positions(f["labels"])), len(target_positions(labels))
                if n_s != n_t:
                    raise ValueError(
                        f"batch row {g}: {n_s} student answer positions but {n_t} teacher ones; the dataset "
                        f"was tokenised differently (clear dataset_prepared_path and re-run preprocessing)"
                    )
                t = {"input_ids": list(ids), "labels": list(labels)}
                if "attention_mask" in f:
                    t["attention_mask"] = [1] * len(t["input_ids"])
                if "position_ids" in f:  # packing: positions restart per sample, as for the student
                    t["position_ids"] = list(range(len(t["input_ids"])))
                t_group.append(t)
            t_groups.append(t_group)
        return {TEACHER_PREFIX + k: v for k, v in self._collate(t_groups, packed).items()}

    @staticmethod
    def _pop_targets(g: int, group: list[dict]):
        """(positions in the unpacked/unpadded row, ids rows, logprob rows, row length) of one output row."""
        offset, pos, t_ids, t_lps = 0, [], [], []
        for f in group:
            rows_i, rows_l = _pop(f, (IDS, LOGPROBS), g)
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
        return (np.concatenate(pos) if pos else np.zeros(0, dtype=np.int64), t_ids, t_lps, offset)

    def _place_targets(self, batch: dict, placed: list) -> None:
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
