"""SSBPlugin: `plugins: [ssb_plugin.SSBPlugin]` turns an Axolotl config into SSB training.

Axolotl imports plugins before building its config, so this module imports only the plugin base
class; the trainer, collator and loss (torch-heavy) load inside the hooks that need them.
"""

from __future__ import annotations

import logging

from axolotl.integrations.base import BasePlugin

LOG = logging.getLogger("ssb_plugin")


class SSBPlugin(BasePlugin):
    """Semantic Soft Bootstrapping: top-k logit distillation from the model's own hinted teacher."""

    def get_input_args(self) -> str:
        return "ssb_plugin.args.SSBArgs"

    def register(self, cfg):
        LOG.info("SSBPlugin registered (dataset type: ssb_plugin.dataset)")

    def get_trainer_cls(self, cfg):
        from ssb_plugin.trainer import SSBTrainer

        return SSBTrainer

    def get_collator_cls_and_kwargs(self, cfg, is_eval: bool = False):
        # Used for train and eval, packed or not: it delegates padding/packing to Axolotl's collators.
        from ssb_plugin.collator import SSBDataCollator

        return SSBDataCollator, {}

    def add_callbacks_pre_trainer(self, cfg, model):
        # A machine-readable training log next to the adapter (read by ssb_plugin.report).
        from ssb_plugin.callbacks import LogHistoryCallback

        return [LogHistoryCallback(cfg.output_dir)]

    def post_trainer_create(self, cfg, trainer):
        LOG.info(
            "SSB loss: T=%s kd_weight=%s ce_weight=%s chunk=%s topk=%s",
            cfg.ssb_temperature,
            cfg.ssb_kd_weight,
            cfg.ssb_ce_weight,
            cfg.ssb_chunk_size,
            cfg.ssb_topk or "all stored",
        )
