"""Axolotl dataset type `ssb_plugin.dataset`: curated SSB records -> student ids + teacher targets.

Axolotl calls the module-level `load(tokenizer, cfg, ds_cfg)` for `type: ssb_plugin.dataset`.
Per row (the alignment contract, ssb_plugin.record):
  input_ids          = chat_prompt_ids(student_messages) + response_ids   (ids appended as ids)
  labels             = -100 on the prompt, response_ids on the response
  ssb_topk_ids/_logprobs = the R teacher rows, in response order. Row j is the target of the
                       position predicting response token j (P-1+j); the collator places it there.
Rows longer than `sequence_len` are dropped, counted and logged by id; nothing is truncated.
"""

from __future__ import annotations

import logging
from typing import Any

from axolotl.prompt_tokenizers import DatasetWrappingStrategy

from ssb_plugin.record import (
    REQUIRED_FIELDS,
    Manifest,
    RecordError,
    student_input,
    validate_record,
)
from ssb_plugin.train.loss import IDS, LOGPROBS  # noqa: F401  (re-exported)
from ssb_plugin.train.tokenizer_check import check_training_tokenizer

LOG = logging.getLogger("ssb_plugin.dataset")

PLUGIN = "ssb_plugin.SSBPlugin"


def tokenize_record(
    tokenizer, row: dict[str, Any], *, topk: int | None = None, messages_key: str = "student_messages"
) -> dict[str, list]:
    """One curated row -> training features. `messages_key="teacher_messages"` gives the teacher's view
    (used by the identity self-check: the student on the teacher's prompt must reproduce the targets)."""
    ids, p = student_input(tokenizer, {**row, "student_messages": row[messages_key]})
    response = list(row["response_ids"])
    t_ids, t_lps = row["teacher_topk_ids"], row["teacher_topk_logprobs"]
    if topk is not None:  # keep the `topk` most likely entries of each row
        t_ids, t_lps = _truncate_topk(t_ids, t_lps, topk)
    return {
        "input_ids": ids,
        "attention_mask": [1] * len(ids),
        "labels": [-100] * p + response,
        IDS: [list(r) for r in t_ids],
        LOGPROBS: [list(r) for r in t_lps],
    }


def _truncate_topk(t_ids, t_lps, topk: int) -> tuple[list[list[int]], list[list[float]]]:
    out_i, out_l = [], []
    for ids, lps in zip(t_ids, t_lps, strict=True):
        order = sorted(range(len(lps)), key=lambda j: -lps[j])[:topk]
        out_i.append([ids[j] for j in order])
        out_l.append([lps[j] for j in order])
    return out_i, out_l


class SSBDatasetStrategy(DatasetWrappingStrategy):
    """Validates, tokenises and length-filters a curated set (counts what it drops)."""

    def __init__(
        self,
        tokenizer,
        *,
        sequence_len: int | None,
        topk: int | None = None,
        source: str = "dataset",
        expected_rows: int | None = None,
    ):
        self.expected_rows = expected_rows
        self.tokenizer = tokenizer
        self.sequence_len = sequence_len
        self.topk = topk
        self.source = source
        self.stats: dict[str, Any] = {}

    def _row(self, row: dict[str, Any], idx: int) -> dict[str, Any]:
        validate_record(row, where=f"{self.source} row {idx}")
        out = tokenize_record(self.tokenizer, row, topk=self.topk)
        out["_ssb_len"] = len(out["input_ids"])
        out["_ssb_id"] = str(row["id"])
        return out

    def wrap_dataset(
        self, dataset, process_count: int | None = None, keep_in_memory: bool | None = False, **kwargs
    ):
        if not hasattr(dataset, "column_names") or not hasattr(dataset, "select"):
            raise RecordError(
                f"{self.source}: type {__name__} needs a map-style dataset (streaming is not supported)"
            )
        missing = [c for c in REQUIRED_FIELDS if c not in dataset.column_names]
        if missing:
            raise RecordError(
                f"{self.source}: column(s) {missing} missing; is this a curated set written by ssb-curate? "
                f"(columns: {dataset.column_names})"
            )
        if self.expected_rows is not None and len(dataset) != self.expected_rows:
            LOG.warning(
                "SSB dataset %s: %d rows loaded but its manifest counts %d kept records: a partial copy, "
                "a `shards`/`split` selection, or a stale `datasets` cache of an older set at this path "
                "(clear ~/.cache/huggingface/datasets/<dir name>)",
                self.source,
                len(dataset),
                self.expected_rows,
            )
        tokenized = dataset.map(
            self._row,
            with_indices=True,
            remove_columns=dataset.column_names,
            num_proc=process_count,
            keep_in_memory=bool(keep_in_memory),
            desc="SSB: student ids + teacher targets",
        )
        lengths, ids = tokenized["_ssb_len"], tokenized["_ssb_id"]
        limit = self.sequence_len
        keep = [i for i, n in enumerate(lengths) if limit is None or n <= limit]
        dropped = [ids[i] for i in range(len(lengths)) if limit is not None and lengths[i] > limit]
        self.stats = {
            "rows": len(lengths),
            "kept": len(keep),
            "too_long": len(dropped),
            "too_long_ids": dropped,
        }
        if dropped:
            LOG.warning(
                "SSB dataset %s: dropped %d of %d rows longer than sequence_len=%s (never truncated; the "
                "student must see the whole answer). Longest: %d tokens. Ids: %s%s",
                self.source,
                len(dropped),
                len(lengths),
                limit,
                max(lengths),
                dropped[:10],
                " ..." if len(dropped) > 10 else "",
            )
        LOG.info("SSB dataset %s: %d rows kept of %d", self.source, len(keep), len(lengths))
        if not keep:
            raise RecordError(
                f"{self.source}: every row is longer than sequence_len={limit} (longest {max(lengths, default=0)}); "
                f"raise sequence_len"
            )
        if len(keep) < len(lengths):
            tokenized = tokenized.select(keep)
        return tokenized.remove_columns(["_ssb_len", "_ssb_id"])


def _get(obj, key, default=None):
    if obj is None:
        return default
    if hasattr(obj, "get"):
        value = obj.get(key)
    else:
        value = getattr(obj, key, None)
    return default if value is None else value


def load(tokenizer, cfg, ds_cfg=None, processor=None):
    """Entry point Axolotl calls for `type: ssb_plugin.dataset` (ds_cfg = the validated dataset entry)."""
    plugins = list(_get(cfg, "plugins", []) or [])
    if not any(str(p).replace(":", ".") == PLUGIN for p in plugins):
        raise RecordError(
            f"dataset type ssb_plugin.dataset needs the SSB trainer: add `plugins: [{PLUGIN}]` to the config "
            f"(plugins now: {plugins})"
        )
    path = _get(ds_cfg, "path")
    if not path:
        raise RecordError("dataset type ssb_plugin.dataset: the dataset entry has no `path`")
    manifest = Manifest.load(path, revision=_get(ds_cfg, "revision"))
    if _get(cfg, "ssb_check_tokenizer", True):
        check_training_tokenizer(tokenizer, manifest, cfg=cfg, source=str(path))
    else:
        LOG.warning(
            "ssb_check_tokenizer: false; the tokenizer of %s is NOT checked against the manifest", path
        )
    return SSBDatasetStrategy(
        tokenizer,
        sequence_len=_get(cfg, "sequence_len"),
        topk=_get(cfg, "ssb_topk"),
        source=str(path),
        expected_rows=manifest.counts.get("kept"),
    )
