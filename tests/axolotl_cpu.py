"""Axolotl config keys every CPU training run in the tests needs."""

CPU_KEYS = {  # notes/environment.md: required on CPU
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
