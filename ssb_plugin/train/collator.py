"""Batch SSB rows: Axolotl's own collators pad ids/labels/positions; the teacher rows are placed here.

Each dataset row carries its R teacher target rows in response order. They go to the positions t with
labels[t+1] != -100 (the positions predicting the answer tokens) of the *padded or packed* row, so
the trainer's target mask is simply `labels[:, 1:] != -100`. Packed bins (lists of rows from the
multipack sampler) are concatenated in order; each sample's prompt keeps the first position of the
next sample target-free, and position_ids restart per sample (Axolotl's batch-sampler collator).
Output (ssb_plugin.train.batch_keys): ssb_target_ids [B, S, W] int64 (PAD_ID where no target),
ssb_target_weights / ssb_target_logprobs [B, S, W] float32, ssb_target_temperature [B * rows] (the T
each row's target was built for; the loss refuses a mismatch).

Online teacher (`ssb_teacher: online`): each row carries the teacher's own view (teacher prompt +
the same response ids) instead of a target. It is collated by the same Axolotl collator as the
student, in the same bins and order, with the student's key set (position ids restarting per sample,
attention mask or not), and returned under `ssb_teacher_*` keys. Its answer positions, read
row-major, pair one-to-one with the student's: same samples, same order, the same R answer tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from axolotl.utils.collators.batching import DataCollatorForSeq2Seq, V2BatchSamplerDataCollatorForSeq2Seq

from ssb_plugin.train.batch_keys import (
    IDS,
    LOGPROBS,
    PAD_ID,
    SAMPLED,
    TARGET_KEYS,
    TEACHER_INPUT_IDS,
    TEACHER_LABELS,
    TEACHER_PREFIX,
    TEMPERATURE,
    WEIGHTS,
)


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
        if TEACHER_INPUT_IDS in (features[0][0] if packed else features[0]):
            return self._online(features, packed)
        groups = features if packed else [[f] for f in features]
        placed = []  # per output row: (positions in the unpadded row, {key: target rows}, row length)
        clean_groups, temps = [], []
        for g, group in enumerate(groups):
            offset, pos, rows, clean = 0, [], {k: [] for k in (*TARGET_KEYS, SAMPLED)}, []
            for f in group:
                f = dict(f)
                missing = [k for k in TARGET_KEYS if k not in f]
                if missing:
                    raise KeyError(
                        f"batch row {g} has no {missing}: every dataset must be `type: ssb_plugin.dataset` "
                        f"(keys: {sorted(f)})"
                    )
                p = target_positions(f["labels"])
                for key in (IDS, SAMPLED) if f.get(SAMPLED) is not None else (IDS,):
                    if len(p) != len(f[key]):
                        raise ValueError(
                            f"batch row {g}: {len(p)} answer positions but {len(f[key])} rows of {key}; the "
                            f"dataset was tokenised differently (clear dataset_prepared_path and re-run preprocessing)"
                        )
                for k in TARGET_KEYS:
                    rows[k].extend(list(r) for r in f.pop(k))
                # rows without the flags (built by other code) count as exact slots: the plain gradient
                sampled = f.pop(SAMPLED, None)
                rows[SAMPLED].extend(list(r) for r in (sampled if sampled is not None else [[]] * len(p)))
                temps.append(float(f.pop(TEMPERATURE, float("nan"))))
                pos.append(p + offset)
                offset += len(f["labels"])
                clean.append(f)
            placed.append((np.concatenate(pos) if pos else np.zeros(0, dtype=np.int64), rows, offset))
            clean_groups.append(clean)
        batch = self._base(packed)(clean_groups if packed else [c[0] for c in clean_groups])
        batch.update(self._place(placed, batch["labels"].shape))
        batch[TEMPERATURE] = torch.tensor(temps, dtype=torch.float32)
        return batch

    def _place(self, placed, shape) -> dict[str, torch.Tensor]:
        """[B, S, W] tensors holding each row's targets at its positions (PAD_ID / 0 elsewhere)."""
        bsz, seq = shape
        width = max((len(r) for _, rows, _ in placed for r in rows[IDS]), default=1)
        out = {
            IDS: torch.full((bsz, seq, width), PAD_ID, dtype=torch.long),
            WEIGHTS: torch.zeros((bsz, seq, width), dtype=torch.float32),
            LOGPROBS: torch.zeros((bsz, seq, width), dtype=torch.float32),
            SAMPLED: torch.zeros((bsz, seq, width), dtype=torch.float32),
        }
        left = getattr(self.tokenizer, "padding_side", "right") == "left"
        for b, (pos, rows, length) in enumerate(placed):
            if not rows[IDS]:
                continue
            at = torch.from_numpy(pos + (seq - length if left else 0))
            for key, tensor in out.items():
                fill = PAD_ID if key == IDS else 0
                arr = np.full((len(rows[key]), width), fill, dtype=np.int64 if key == IDS else np.float32)
                for j, r in enumerate(rows[key]):
                    arr[j, : len(r)] = r
                tensor[b, at] = torch.from_numpy(arr)
        return out

    def _online(self, features, packed: bool) -> dict:
        """Student rows as Axolotl collates them, plus the teacher's view collated alike (`ssb_teacher_*`)."""
        groups = [[dict(f) for f in g] for g in (features if packed else [[f] for f in features])]
        t_groups = [[self._teacher_view(f, g) for f in group] for g, group in enumerate(groups)]
        batch = self._base(packed)(groups if packed else [g[0] for g in groups])
        teacher = self._base(packed)(t_groups if packed else [g[0] for g in t_groups])
        batch.update({TEACHER_PREFIX + k: v for k, v in teacher.items()})
        return batch

    @staticmethod
    def _teacher_view(f: dict, g: int) -> dict:
        """Pop a row's teacher ids/labels into a row with the student row's keys (f is modified)."""
        if TEACHER_INPUT_IDS not in f or TEACHER_LABELS not in f:
            raise KeyError(
                f"batch row {g} has no {TEACHER_INPUT_IDS}/{TEACHER_LABELS}: with `ssb_teacher: online` every "
                f"row must be tokenised for it (clear dataset_prepared_path; keys: {sorted(f)})"
            )
        ids, labels = list(f.pop(TEACHER_INPUT_IDS)), list(f.pop(TEACHER_LABELS))
        n_s, n_t = len(target_positions(f["labels"])), len(target_positions(labels))
        if n_s != n_t:
            raise ValueError(
                f"batch row {g}: {n_s} student answer positions but {n_t} teacher ones; the dataset was "
                f"tokenised differently (clear dataset_prepared_path and re-run preprocessing)"
            )
        t = {"input_ids": ids, "labels": labels}
        if "attention_mask" in f:
            t["attention_mask"] = [1] * len(ids)
        if "position_ids" in f:  # packing: positions restart per sample, as for the student
            t["position_ids"] = list(range(len(ids)))
        return t
