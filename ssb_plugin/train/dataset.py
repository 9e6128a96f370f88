"""Axolotl dataset type `ssb_plugin.dataset`: curated SSB records -> student ids + teacher targets.

Axolotl calls the module-level `load(tokenizer, cfg, ds_cfg)` for `type: ssb_plugin.dataset`.
Per row (the alignment contract, ssb_plugin.record):
  input_ids          = chat_prompt_ids(student_messages) + response_ids   (ids appended as ids)
  labels             = -100 on the prompt, response_ids on the response
  ssb_target_ids/_weights/_logprobs = the teacher target at the training temperature
                       (ssb_plugin.train.targets), R rows in response order. Row j is the target of the
                       position predicting response token j (P-1+j); the collator places it there.
  ssb_target_temperature = that temperature (the loss refuses a prepared set built for another T).
  (`ssb_teacher: online` instead of the target: ssb_teacher_input_ids/_labels = the teacher's view,
                       chat_prompt_ids(teacher_messages) + response_ids, scored live by the base model.)
Rows longer than `sequence_len` are dropped, counted and logged by id; nothing is truncated.
"""

from __future__ import annotations

import logging
from typing import Any

from axolotl.prompt_tokenizers import DatasetWrappingStrategy

from ssb_plugin.record import (
    ONLINE_FIELDS,
    REQUIRED_FIELDS,
    Manifest,
    RecordError,
    TeacherMode,
    response_input,
    student_input,
    validate_record,
)
from ssb_plugin.train.args import loss_options
from ssb_plugin.train.batch_keys import (
    IDS,
    LOGPROBS,
    SAMPLED,
    TEACHER_INPUT_IDS,
    TEACHER_LABELS,
    TEMPERATURE,
    WEIGHTS,
)
from ssb_plugin.train.options import DEFAULT_LOSS
from ssb_plugin.train.targets import RENORMALISED, TargetInfo, build_target, tail_share
from ssb_plugin.train.tokenizer_check import check_training_tokenizer

LOG = logging.getLogger("ssb_plugin.dataset")

PLUGIN = "ssb_plugin.SSBPlugin"


def tokenize_record(tokenizer, row: dict[str, Any], info: TargetInfo, temperature: float) -> dict[str, Any]:
    """One curated row -> training features: the student's ids and the teacher target at `temperature`."""
    ids, p = student_input(tokenizer, row)
    target = build_target(row, info, temperature)
    return {
        "input_ids": ids,
        "attention_mask": [1] * len(ids),
        "labels": [-100] * p + list(row["response_ids"]),
        IDS: target.ids.tolist(),
        WEIGHTS: target.weights.tolist(),
        LOGPROBS: target.logprobs.tolist(),
        SAMPLED: target.sampled.tolist(),
        TEMPERATURE: float(temperature),
    }


def tokenize_online(tokenizer, row: dict[str, Any], messages_key: str = "student_messages") -> dict[str, Any]:
    """One curated row -> features for `ssb_teacher: online`: the student's ids and the teacher's own view
    (chat(teacher_messages) + the same response ids), no stored target. messages_key="teacher_messages"
    shows the student the teacher's prompt (the identity check)."""
    response = list(row["response_ids"])
    ids, p = response_input(tokenizer, row[messages_key], response)
    t_ids, t_p = response_input(tokenizer, row["teacher_messages"], response)
    return {
        "input_ids": ids,
        "attention_mask": [1] * len(ids),
        "labels": [-100] * p + response,
        TEACHER_INPUT_IDS: t_ids,
        TEACHER_LABELS: [-100] * t_p + response,
    }


_WARNED: set[str] = set()  # sources already warned about (older sets warn once per process)


def warn_if_renormalised(source: str, info: TargetInfo, dataset, temperature: float) -> None:
    """Once per set: an older set trains on the renormalised top-k, which drops the teacher's tail.
    The tail share is measured on (up to) the first 256 rows."""
    if info.kind != RENORMALISED or source in _WARNED:
        return
    _WARNED.add(source)
    share = tail_share(dataset.select(range(min(len(dataset), 256))), info, 1.0)
    LOG.warning(
        "SSB dataset %s has no log-normaliser/tail fields (curated before them): training on its "
        "renormalised top-k, which puts zero target mass on the teacher's tail. Measured on this set, the "
        "teacher keeps %.1f%% of its probability outside the stored top-k at T=1 (more at "
        "ssb_temperature=%g; on SmolLM2 with k=64, 38%% at T=2). Re-curate with this ssb-plugin for the "
        "faithful full-vocabulary target.",
        source,
        100 * (share or 0.0),
        temperature,
    )


class SSBDatasetStrategy(DatasetWrappingStrategy):
    """Validates, tokenises and length-filters a curated set (counts what it drops)."""

    def __init__(
        self,
        tokenizer,
        *,
        sequence_len: int | None,
        target: TargetInfo | None = None,
        temperature: float = DEFAULT_LOSS.temperature,
        source: str = "dataset",
        expected_rows: int | None = None,
        teacher: str = TeacherMode.STORED,
    ):
        self.teacher = teacher
        self.expected_rows = expected_rows
        self.tokenizer = tokenizer
        self.sequence_len = sequence_len
        self.target = target or TargetInfo()
        self.temperature = float(temperature)
        self.source = source
        self.stats: dict[str, Any] = {}

    def _row(self, row: dict[str, Any], idx: int) -> dict[str, Any]:
        online = self.teacher == TeacherMode.ONLINE
        validate_record(row, where=f"{self.source} row {idx}", targets=not online)
        if online:
            out = tokenize_online(self.tokenizer, row)
        else:
            out = tokenize_record(self.tokenizer, row, self.target, self.temperature)
        out["_ssb_len"] = len(out["input_ids"])
        out["_ssb_id"] = str(row["id"])
        return out

    def _check_row_count(self, dataset) -> None:
        if self.expected_rows is not None and len(dataset) != self.expected_rows:
            LOG.warning(
                "SSB dataset %s: %d rows loaded but its manifest counts %d kept records: a partial copy, "
                "a `shards`/`split` selection, or a stale `datasets` cache of an older set at this path "
                "(clear ~/.cache/huggingface/datasets/<dir name>)",
                self.source,
                len(dataset),
                self.expected_rows,
            )

    def wrap_dataset(
        self, dataset, process_count: int | None = None, keep_in_memory: bool | None = False, **kwargs
    ):
        if not hasattr(dataset, "column_names") or not hasattr(dataset, "select"):
            raise RecordError(
                f"{self.source}: type {__name__} needs a map-style dataset (streaming is not supported)"
            )
        needed = REQUIRED_FIELDS if self.teacher == TeacherMode.STORED else ONLINE_FIELDS
        missing = [c for c in needed if c not in dataset.column_names]
        if missing:
            raise RecordError(
                f"{self.source}: column(s) {missing} missing; is this a curated set written by ssb-curate? "
                f"(columns: {dataset.column_names})"
            )
        self._check_row_count(dataset)
        if self.teacher == TeacherMode.STORED:
            warn_if_renormalised(
                self.source, self.target, dataset.select(range(min(len(dataset), 256))), self.temperature
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
    from ssb_plugin.train.registration import require_registered_plugin

    require_registered_plugin()  # listed is not loaded: Axolotl 0.19 trains on without a plugin that fails
    path = _get(ds_cfg, "path")
    if not path:
        raise RecordError("dataset type ssb_plugin.dataset: the dataset entry has no `path`")
    manifest = Manifest.load(path, revision=_get(ds_cfg, "revision"))
    options = loss_options(cfg)
    teacher = options.ssb_teacher
    if teacher == TeacherMode.STORED and manifest.stored_topk == 0:
        raise RecordError(
            f"{path}: this set was curated without teacher log-probs (`ssb-curate --no-stored-target`, "
            f"manifest stored_topk = 0), for the online teacher only; train it with `ssb_teacher: online` "
            f"(needs `adapter: lora`), or re-curate without --no-stored-target for `ssb_teacher: stored`"
        )
    if options.ssb_check_tokenizer:
        check_training_tokenizer(tokenizer, manifest, cfg=cfg, source=str(path))
    else:
        LOG.warning(
            "ssb_check_tokenizer: false; the tokenizer of %s is NOT checked against the manifest", path
        )
    target = TargetInfo.from_manifest(manifest)
    temperature = options.ssb_temperature
    if teacher == TeacherMode.STORED and target.kind != RENORMALISED:
        target.index(temperature, source=str(path))  # T not carried: stop now, with how to re-curate
    return SSBDatasetStrategy(
        tokenizer,
        sequence_len=_get(cfg, "sequence_len"),
        target=target,
        temperature=temperature,
        source=str(path),
        expected_rows=manifest.counts.get("kept"),
        teacher=teacher,
    )
