"""Load (question, gold) problems from a hub dataset or a local jsonl/parquet file.

Rows are kept in source order, each with a stable id (source + index, or a settable id column).
A row with an empty question or a gold without a parseable answer becomes a `BadRow` that the
pipeline counts as `bad_input` in the chunk it falls in, so sharded runs never double-count it. A
question/answer field that is missing, null or of the wrong type (a list, an object) is refused
before any work, naming the rows (the policy of `ssb_plugin.fields`).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssb_plugin.curate.config import ConfigError, CurateConfig
from ssb_plugin.data import DATA_DIR_ENV, file_for_hub, local_path
from ssb_plugin.fields import ANSWER, TEXT, row_problems, summarise
from ssb_plugin.grading.gold import GSM8K_MARK, gsm8k_gold
from ssb_plugin.jsonl import JsonlError, read_json_objects, utf8


@dataclass(frozen=True)
class Problem:
    index: int  # position in the (limited) source order
    id: str
    question: str
    gold: str


@dataclass(frozen=True)
class BadRow:
    index: int
    id: str
    reason: str


def parse_gold(value: Any, fmt: str) -> str | None:
    """The gold answer of a source row, or None if it cannot be parsed.

    gsm8k: the text after the last `####`; boxed: the last `\\boxed{}` of a worked solution;
    plain: the value itself; auto: gsm8k if `####` occurs, else boxed if a box occurs, else plain.
    """
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip() if not isinstance(value, str) else value.strip()
    if fmt == "auto":
        fmt = (
            "gsm8k" if GSM8K_MARK in text else "boxed" if ("\\boxed" in text or "\\fbox" in text) else "plain"
        )
    if fmt == "gsm8k":
        gold = gsm8k_gold(text)
    elif fmt == "boxed":
        from ssb_plugin.grading import extract_answer

        gold = extract_answer(text) or ""
    else:
        gold = text
    return gold or None


def _read_local(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except pa.ArrowException as e:
            raise ConfigError(f"data: {path} is not a valid parquet file ({e})") from None
    try:
        if suffix == ".json":
            text = utf8(path.read_bytes(), f"data: {path}")
            if text.lstrip().startswith("["):
                data = json.loads(text)
                if not all(isinstance(r, dict) for r in data):
                    raise ConfigError(f"data: {path} is a JSON list but not of objects")
                return data
        with path.open("rb") as f:
            return read_json_objects(f, f"data: {path}")
    except JsonlError as e:
        raise ConfigError(str(e)) from None


def _read_hub(cfg: CurateConfig, limit: int | None) -> list[dict[str, Any]]:
    import datasets

    # A set the package carries (GSM8K train, the default) is read from its packaged copy unless
    # SSB_DATA_DIR selects the hub or another directory (ssb_plugin.data): same rows, offline.
    copy = file_for_hub(cfg.data, cfg.data_config, cfg.split)
    path = local_path(copy) if copy else None
    if path is not None:
        print(
            f"data: {cfg.data} ({cfg.split}) from {path} ({DATA_DIR_ENV}=hub reads the hub)",
            file=sys.stderr,
        )
        return _read_local(path)[:limit]

    split = cfg.split if limit is None else f"{cfg.split}[:{limit}]"
    try:
        ds = datasets.load_dataset(cfg.data, cfg.data_config, split=split)
    except Exception as e:  # noqa: BLE001 - surface as a config error naming the dataset
        raise ConfigError(
            f"data: cannot load hub dataset {cfg.data!r} (config {cfg.data_config!r}, split {cfg.split!r}): {e}"
        ) from e
    return ds.to_list()


def source_tag(cfg: CurateConfig) -> str:
    """The id prefix: independent of where a local file lives, so ids (and seeds) are portable."""
    if cfg.is_local_data():
        return Path(cfg.data).name
    return "/".join(x for x in (cfg.data, cfg.data_config, cfg.split) if x)


def load_problems(cfg: CurateConfig) -> list[Problem | BadRow]:
    """All source rows (first `limit`), in order, as Problem or BadRow. Field names are checked first."""
    rows = _read_local(Path(cfg.data)) if cfg.is_local_data() else _read_hub(cfg, cfg.limit)
    if cfg.limit is not None:
        rows = rows[: cfg.limit]
    if not rows:
        raise ConfigError(f"data: {cfg.data} has no rows")
    columns = set().union(*(r.keys() for r in rows[:1000]))
    for key in ("question_field", "answer_field", "id_field"):
        name = getattr(cfg, key)
        if name is not None and name not in columns:
            raise ConfigError(
                f"{key}: column {name!r} not found in {cfg.data}; available columns: {sorted(columns)}"
            )
    specs = {cfg.question_field: TEXT, cfg.answer_field: ANSWER}
    bad = row_problems(((f"row {i}", r) for i, r in enumerate(rows)), specs)
    if bad:  # the wrong column or file, not hard problems: refused (ssb_plugin.fields)
        raise ConfigError(f"data: {cfg.data}: {summarise(bad)}")
    tag = source_tag(cfg)
    out: list[Problem | BadRow] = []
    seen: set[str] = set()
    for i, row in enumerate(rows):
        pid = f"{tag}:{i}" if cfg.id_field is None else str(row.get(cfg.id_field))
        if pid in seen:
            raise ConfigError(f"id_field: duplicate id {pid!r} at row {i} of {cfg.data}; ids must be unique")
        seen.add(pid)
        q = row[cfg.question_field]
        if not q.strip():
            out.append(BadRow(i, pid, f"empty {cfg.question_field!r}"))
            continue
        gold = parse_gold(row[cfg.answer_field], cfg.gold_format)
        if gold is None:
            out.append(BadRow(i, pid, f"unparseable gold in {cfg.answer_field!r} ({cfg.gold_format})"))
            continue
        out.append(Problem(i, pid, q.strip(), gold))
    return out
