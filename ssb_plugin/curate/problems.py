"""Load (question, gold) problems from a hub dataset or a local jsonl/parquet file.

Rows are kept in source order, each with a stable id (source + index, or a settable id column).
A row with a missing/empty question or an unparseable gold becomes a `BadRow` that the pipeline
counts as `bad_input` in the chunk it falls in, so sharded runs never double-count it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssb_plugin.curate.config import ConfigError, CurateConfig
from ssb_plugin.grading.gold import GSM8K_MARK, gsm8k_gold
from ssb_plugin.jsonl import JsonlError, read_json_objects


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
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if suffix == ".json":
        text = path.read_text()
        if text.lstrip().startswith("["):
            data = json.loads(text)
            if not all(isinstance(r, dict) for r in data):
                raise ConfigError(f"data: {path} is a JSON list but not of objects")
            return data
    with path.open() as f:
        try:
            return read_json_objects(f, f"data: {path}")
        except JsonlError as e:
            raise ConfigError(str(e)) from None


def _read_hub(cfg: CurateConfig, limit: int | None) -> list[dict[str, Any]]:
    import datasets

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
    tag = source_tag(cfg)
    out: list[Problem | BadRow] = []
    seen: set[str] = set()
    for i, row in enumerate(rows):
        pid = f"{tag}:{i}" if cfg.id_field is None else str(row.get(cfg.id_field))
        if pid in seen:
            raise ConfigError(f"id_field: duplicate id {pid!r} at row {i} of {cfg.data}; ids must be unique")
        seen.add(pid)
        q = row.get(cfg.question_field)
        if not isinstance(q, str) or not q.strip():
            out.append(BadRow(i, pid, f"missing or empty {cfg.question_field!r}"))
            continue
        gold = parse_gold(row.get(cfg.answer_field), cfg.gold_format)
        if gold is None:
            out.append(BadRow(i, pid, f"unparseable gold in {cfg.answer_field!r} ({cfg.gold_format})"))
            continue
        out.append(Problem(i, pid, q.strip(), gold))
    return out
