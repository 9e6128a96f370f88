"""SSBPlugin: `plugins: [ssb_plugin.SSBPlugin]` turns an Axolotl config into SSB training.

Axolotl imports plugins before building its config, so this module imports only the plugin base
class; the trainer, collator and loss (torch-heavy) load inside the hooks that need them.
"""

from __future__ import annotations

import logging
import os

from axolotl.integrations.base import BasePlugin

LOG = logging.getLogger("ssb_plugin")


class SSBPlugin(BasePlugin):
    """Semantic Soft Bootstrapping: distillation of the model's own hinted teacher (full-vocabulary KL at T)."""

    def get_input_args(self) -> str:
        return "ssb_plugin.train.args.SSBArgs"

    def register(self, cfg):
        LOG.info("SSBPlugin registered (dataset type: ssb_plugin.dataset)")
        if _cpu_multiprocess():
            # accelerate treats a CPU-only multi-process launch as one process unless told it is a
            # CPU run; this must be set before its process state first initialises.
            os.environ.setdefault("ACCELERATE_USE_CPU", "true")

    def pre_lora_load(self, cfg, model):
        # Axolotl 0.19 hands `seed` only to the Trainer, which seeds after the adapter exists, so the
        # LoRA init (and the whole run) would differ with every launch; 0.21 draws the adapter from
        # `seed` itself. Seeding here makes `seed:` repeatable on both.
        if cfg.seed is not None:
            from transformers import set_seed

            set_seed(int(cfg.seed))

    def load_datasets(self, cfg, preprocess: bool = False):
        # The first hook that sees the normalised config before the model loads (the default
        # dataset loader still runs: we return None). Axolotl maps every multi-process run to the
        # device index LOCAL_RANK, which exists only on accelerators; on a CPU-only host (gloo DDP,
        # e.g. checking a launcher before renting GPUs) load the model on the CPU instead.
        from ssb_plugin.shard_check import check_configured_sets

        check_configured_sets(cfg.datasets)  # a damaged shard: its name, not a datasets traceback
        if _cpu_multiprocess():
            LOG.info("SSBPlugin: no accelerator; %s-process training loads the model on CPU", cfg.world_size)
            cfg.device_map = {"": "cpu"}
        _check_curated_sets(cfg)
        return None

    def get_training_args(self, cfg):
        # Without use_cpu, HF leaves a CPU-only multi-process run undistributed (every rank trains
        # alone on all the data); with it, accelerate wraps the model in DDP over gloo.
        if _cpu_multiprocess():
            return {"use_cpu": True, "ddp_backend": "gloo"}
        return None

    def get_trainer_cls(self, cfg):
        from ssb_plugin.train.trainer import SSBTrainer

        return SSBTrainer

    def get_collator_cls_and_kwargs(self, cfg, is_eval: bool = False):
        # Used for train and eval, packed or not: it delegates padding/packing to Axolotl's collators.
        from ssb_plugin.train.collator import SSBDataCollator

        return SSBDataCollator, {}

    def add_callbacks_pre_trainer(self, cfg, model):
        # A machine-readable training log next to the adapter (read by ssb_plugin.demo.report).
        from ssb_plugin.train.callbacks import LogHistoryCallback

        return [LogHistoryCallback(cfg.output_dir)]

    def add_callbacks_post_trainer(self, cfg, trainer):
        # A run whose dataloader is empty (e.g. a small packed set) must fail, not "complete".
        from ssb_plugin.train.empty_run import EmptyRunGuard

        return [EmptyRunGuard(trainer, cfg)]

    def post_trainer_create(self, cfg, trainer):
        LOG.info("SSB loss options: %s", trainer.ssb_options.model_dump(exclude={"ssb_topk"}))
        if trainer.args.world_size > 1:
            LOG.info(
                "SSB distributed: world_size=%s parallel_mode=%s backend=%s",
                trainer.args.world_size,
                trainer.args.parallel_mode.value,
                trainer.accelerator.distributed_type.value,
            )


def _check_curated_sets(cfg) -> None:
    """Before Axolotl's loader, which would reuse a prepared cache of a curated set that has since been
    deleted, corrupted or re-curated: fingerprint the sets, check the training tokenizer against them,
    and key the prepared-dataset cache by them (ssb_plugin.train.prepared_cache)."""
    from ssb_plugin.train.prepared_cache import check_and_key, ssb_dataset_entries

    if ssb_dataset_entries(cfg):
        from axolotl.loaders import load_tokenizer

        check_and_key(cfg, load_tokenizer(cfg))


def _cpu_multiprocess() -> bool:
    """A multi-process launch (torchrun / accelerate) on a host without any accelerator.

    Reads the launcher's WORLD_SIZE, which Axolotl's `cfg.world_size` is derived from, so it also
    answers in `register`, before the config is normalised.
    """
    import torch

    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    return world > 1 and not torch.cuda.is_available() and not _has_other_accelerator()


def _has_other_accelerator() -> bool:
    import torch

    npu = getattr(torch, "npu", None)  # only with the torch_npu extension
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()) or bool(
        npu is not None and npu.is_available()
    )
