"""The SSB keys of a training batch: written by the dataset type, placed by the collator, read by the
forward and kept by the trainer through HF's column removal. Plain names, no torch or Axolotl.
"""

from __future__ import annotations

# A stored target (ssb_plugin.train.targets builds it; the collator places it per position).
IDS, WEIGHTS, LOGPROBS = "ssb_target_ids", "ssb_target_weights", "ssb_target_logprobs"
TARGET_KEYS = (IDS, WEIGHTS, LOGPROBS)
# 1 at a slot holding a tail sample (its weight an estimate), 0 at an exact teacher probability: the
# loss's control-variate gradient needs it (ssb_plugin.train.loss). Optional: without it, the plain one.
SAMPLED = "ssb_target_sampled"
TEMPERATURE = "ssb_target_temperature"  # [B]: the T the rows' targets were built for
PAD_ID = -1  # a padded target slot (rows narrower than the widest, or positions without a target)

# The online teacher's own view of each row (chat(teacher_messages) + the same response ids).
TEACHER_PREFIX = "ssb_teacher_"
TEACHER_INPUT_IDS = TEACHER_PREFIX + "input_ids"
TEACHER_LABELS = TEACHER_PREFIX + "labels"

# The columns a model's forward does not name, which HF's unused-column removal must keep.
SSB_COLUMNS = (*TARGET_KEYS, SAMPLED, TEMPERATURE, TEACHER_INPUT_IDS, TEACHER_LABELS)
NOT_FORWARD = ("num_items_in_batch", "length")  # loss kwarg / packing bookkeeping, not forward inputs
