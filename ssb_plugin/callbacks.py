"""Trainer callbacks the plugin adds: a machine-readable training log next to the adapter."""

from __future__ import annotations

import json
from pathlib import Path

from transformers import TrainerCallback

LOG_FILE = "ssb_log_history.jsonl"


class LogHistoryCallback(TrainerCallback):
    """Append every logged dict (loss, ssb_kd, ssb_ce, grad_norm, lr, eval_*) to
    `<output_dir>/ssb_log_history.jsonl`, one JSON object per line, as training goes.

    Axolotl does not save `trainer_state.json` when `save_strategy: "no"`; the report and the
    training-curve plot read this file instead.
    """

    def __init__(self, output_dir: str | Path):
        self.path = Path(output_dir) / LOG_FILE
        self._started = False

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        if not self._started:  # a new run starts a new file
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("")
            self._started = True
        entry = {"step": state.global_step, "epoch": state.epoch, **logs}
        with self.path.open("a") as f:
            f.write(json.dumps(entry, default=float) + "\n")


def read_log_history(output_dir: str | Path) -> list[dict]:
    path = Path(output_dir) / LOG_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
