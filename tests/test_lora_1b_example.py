"""Axolotl's own examples/llama-3/lora-1b.yml + the two SSB additions, through the real `axolotl train`
launcher on the embedded SmolLM2 and a 4-record set curated by it.

- the example's `special_tokens: {pad_token: "<|end_of_text|>"}` appends a token after the curated
  vocabulary; training goes ahead and says which token, from which key;
- as is (packing, val_set_size 0.1, micro-batch 2 x accumulation 2), the 4 records train nothing;
  the run must fail with the numbers, not print "Training completed! ... Model successfully saved".
"""

from __future__ import annotations

import pytest
from support.axolotl_cli import run_axolotl, training_log
from support.axolotl_example import ssb_lora_1b
from support.curated_fixture import cached_curated_set, one_thread

pytestmark = pytest.mark.slow

PAD = "<|end_of_text|>"


@pytest.fixture(scope="module")
def smol_set(smollm2_dir, tmp_path_factory):
    with one_thread():
        return cached_curated_set(
            smollm2_dir, tmp_path_factory.getbasetemp() / "curated", n=4, k=16, max_new_tokens=12
        )


def test_example_with_its_pad_token_trains_and_names_the_appended_token(smollm2_dir, smol_set, tmp_path):
    from transformers import AutoTokenizer

    cfg = ssb_lora_1b(smollm2_dir, smol_set, tmp_path)
    assert cfg["special_tokens"] == {"pad_token": PAD}
    # 4 records pack into one bin: with the example's micro-batch 2 and eval split nothing would
    # train (the next test); one bin per micro-batch and no split make it one optimizer step.
    cfg.update(micro_batch_size=1, val_set_size=0)
    proc = run_axolotl(cfg, tmp_path, launcher=True, timeout=600)
    out = proc.output
    assert proc.returncode == 0, out[-6000:]
    new_id = len(AutoTokenizer.from_pretrained(smollm2_dir))  # the first id after the curated vocabulary
    assert "appends 1 token(s)" in out and f"'{PAD}' (id {new_id})" in out
    assert f"special_tokens.pad_token: '{PAD}'" in out
    train = [x for x in training_log(cfg) if "ssb_kd" in x and "loss" in x]
    assert len(train) == 1, out[-4000:]
    assert 0 < train[0]["loss"] == pytest.approx(train[0]["ssb_kd"], rel=1e-3)
    assert (tmp_path / "lora-out" / "adapter_model.safetensors").exists()


def test_example_as_is_on_four_records_fails_with_the_numbers(smollm2_dir, smol_set, tmp_path):
    cfg = ssb_lora_1b(smollm2_dir, smol_set, tmp_path)
    del cfg["special_tokens"]  # the example without its pad token: the vocabulary is the curated one
    proc = run_axolotl(cfg, tmp_path, launcher=True, timeout=600)
    out = proc.output
    assert proc.returncode != 0, out[-6000:]
    assert "Training completed" not in out and "Model successfully saved" not in out
    assert "this run would take 0 optimizer steps, so it trains nothing" in out
    # the numbers that explain it: 4 records -> 3 train + 1 eval -> 1 bin -> 0 micro-batches of 2 bins
    assert "val_set_size=0.1 split: 3 train, 1 eval" in out
    assert "packs the train records into 1 bin(s) of 2048 tokens (sequence_len=2048)" in out
    assert "a micro-batch takes 2 bin(s) (micro_batch_size=2)" in out
    assert "Train micro-batches per epoch: 0" in out
    assert "gradient_accumulation_steps=2; optimizer steps: 0" in out
    assert not list((tmp_path / "lora-out").glob("checkpoint-*"))
    assert not (tmp_path / "lora-out" / "adapter_model.safetensors").exists()
