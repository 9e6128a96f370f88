"""Trainer callbacks the plugin adds: a machine-readable training log next to the adapter."""

from __future__ import annotations

from pathlib import Path

from transformers import TrainerCallback

from ssb_plugin.train.training_log import append_log, start_log


class LogHistoryCallback(TrainerCallback):
    """Append every logged dict (loss, ssb_kd, ssb_ce, grad_norm, lr, eval_*) to
    `<output_dir>/ssb_log_history.jsonl`, one JSON object per line, as training goes.

    Axolotl does not save `trainer_state.json` when `save_strategy: "no"`; the report and the
    training-curve plot read this file instead.
    """

    def __init__(self, output_dir: str | Path):
        self.output_dir = Path(output_dir)
        self.path: Path | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        if self.path is None:  # a new run starts a new file
            self.path = start_log(self.output_dir)
        append_log(self.path, {"step": state.global_step, "epoch": state.epoch, **logs})
