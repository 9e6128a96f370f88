"""Axolotl's own `examples/llama-3/lora-1b.yml`, made into an SSB run on CPU with the fewest swaps.

The text is Axolotl's (github.com/axolotl-ai-cloud/axolotl, examples/llama-3/lora-1b.yml, Apache-2.0),
kept verbatim so the tests compose with a config users actually start from. `ssb_lora_1b` swaps only
what a CPU run and an SSB run need: the base model and dataset (the embedded model and a curated set), flash
attention and the 8-bit optimizer (CPU ones), the CPU-only keys, and the two SSB additions.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from support.axolotl_cpu import CPU_KEYS

LORA_1B = """\
base_model: NousResearch/Llama-3.2-1B

load_in_8bit: false
load_in_4bit: false
strict: false

datasets:
  - path: teknium/GPT4-LLM-Cleaned
    type: alpaca
dataset_prepared_path: last_run_prepared
val_set_size: 0.1
output_dir: ./outputs/lora-out

adapter: lora
lora_model_dir:

sequence_len: 2048
sample_packing: true
eval_sample_packing: true
pad_to_sequence_len: true

lora_r: 16
lora_alpha: 32
lora_dropout: 0.05
lora_fan_in_fan_out:
lora_target_modules:
  - gate_proj
  - down_proj
  - up_proj
  - q_proj
  - v_proj
  - k_proj
  - o_proj

wandb_project:
wandb_entity:
wandb_watch:
wandb_name:
wandb_log_model:

gradient_accumulation_steps: 2
micro_batch_size: 2
num_epochs: 1
optimizer: adamw_8bit
lr_scheduler: cosine
learning_rate: 0.0002

train_on_inputs: false
group_by_length: false
bf16: auto
fp16:
tf32: false

gradient_checkpointing: true
early_stopping_patience:
resume_from_checkpoint:
local_rank:
logging_steps: 1
xformers_attention:
flash_attention: true

loss_watchdog_threshold: 5.0
loss_watchdog_patience: 3

warmup_steps: 10
evals_per_epoch: 4
saves_per_epoch: 1
debug:
deepspeed:
weight_decay: 0.0
fsdp:
fsdp_config:
special_tokens:
  pad_token: "<|end_of_text|>"
"""


def ssb_lora_1b(base_model: Path, curated: Path, workdir: Path) -> dict:
    """The example with those swaps; everything else (packing, split, batch, special_tokens) as is."""
    cfg = yaml.safe_load(LORA_1B)
    cfg.update(
        base_model=str(base_model),
        datasets=[{"path": str(curated), "type": "ssb_plugin.dataset"}],  # SSB addition 1
        plugins=["ssb_plugin.SSBPlugin"],  # SSB addition 2
        dataset_prepared_path=str(workdir / "last_run_prepared"),
        output_dir=str(workdir / "lora-out"),
        optimizer="adamw_torch",  # adamw_8bit needs bitsandbytes' GPU kernels
        sdp_attention=True,  # flash attention needs a GPU
        **CPU_KEYS,
    )
    return cfg
