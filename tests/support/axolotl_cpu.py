"""Axolotl config keys every CPU training run in the tests needs."""

# The lora_*_kernel keys are required on CPU: left unset, Axolotl auto-enables its Triton LoRA kernels
# and training fails with "Torch not compiled with CUDA enabled" (recipes/ssb_smollm2_cpu.yml too).
CPU_KEYS = {
    "lora_mlp_kernel": False,
    "lora_qkv_kernel": False,
    "lora_o_kernel": False,
    "lora_embedding_kernel": False,
    "bf16": False,
    "fp16": False,
    "tf32": False,
    "flash_attention": False,
    "xformers_attention": False,
}

# A small LoRA run on CPU: what every tiny-model training test shares.
TINY_LORA = {
    "dataset_num_proc": 1,
    "val_set_size": 0,
    "sequence_len": 512,
    "adapter": "lora",
    "lora_r": 8,
    "lora_alpha": 8,
    "lora_dropout": 0.0,
    "lora_target_linear": True,
    **CPU_KEYS,
    "sdp_attention": True,
    "gradient_checkpointing": False,
    "optimizer": "adamw_torch",
    "learning_rate": 0.01,
    "lr_scheduler": "constant",
    "logging_steps": 1,
    "save_strategy": "no",
}


def train_config(model, curated, workdir, **overrides) -> dict:
    """The e2e SSB training config the tests run: the tiny CPU LoRA, SSBPlugin and one curated set,
    two optimizer steps of micro-batch 2, the prepared cache and the adapter under `workdir`.

    `overrides` replace keys; an override of None removes the key (e.g. `plugins=None` for plain SFT,
    `max_steps=None` with `num_epochs`)."""
    cfg = {
        "base_model": str(model),
        "tokenizer_type": "AutoTokenizer",
        "chat_template": "tokenizer_default",
        "plugins": ["ssb_plugin.SSBPlugin"],
        "datasets": [{"path": str(curated), "type": "ssb_plugin.dataset"}],
        "dataset_prepared_path": f"{workdir}/prepared",
        **TINY_LORA,
        "micro_batch_size": 2,
        "gradient_accumulation_steps": 1,
        "max_steps": 2,
        "output_dir": f"{workdir}/out",
    }
    cfg.update(overrides)
    return {k: v for k, v in cfg.items() if v is not None}
