"""The training log file the plugin writes and the report reads (kept free of torch/transformers)."""

from __future__ import annotations

import json
from pathlib import Path

LOG_FILE = "ssb_log_history.jsonl"


def start_log(output_dir: str | Path) -> Path:
    path = Path(output_dir) / LOG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    return path


def append_log(path: Path, entry: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(entry, default=float) + "\n")


def read_log_history(output_dir: str | Path) -> list[dict]:
    path = Path(output_dir) / LOG_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
