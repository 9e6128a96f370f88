"""Tokens a config appends after the curated vocabulary are accepted; any other change is refused,
naming what the config changed. And why appending is safe, on the real model: the distillation loss
with the enlarged vocabulary is the old one plus -log(1 - q_new) per answer token, whose gradient
only lowers the new tokens' logits.
"""

from __future__ import annotations

import copy
import logging

import pytest

from ssb_plugin.record import Manifest, RecordError, tokenizer_fingerprint
from ssb_plugin.train.tokenizer_check import appended_tokens, check_training_tokenizer, config_token_changes

# torch and Axolotl (the dataset type) load inside the tests, not when pytest collects this module.
# `load` refuses to tokenise unless SSBPlugin is registered, as `axolotl train` registers it.
pytestmark = pytest.mark.usefixtures("ssb_registered")

PAD = "<|end_of_text|>"  # Axolotl's examples/llama-3/lora-1b.yml: special_tokens.pad_token


@pytest.fixture(scope="module")
def smol_tok(smollm2_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir)


def load(tokenizer, cfg, ds_cfg):
    from ssb_plugin.train.dataset import load as dataset_load

    return dataset_load(tokenizer, cfg, ds_cfg)


def topk_kd(h, w, ids, raw_logprobs, *, temperature, bias=None):
    """The KD of a teacher target with all its mass on the old vocabulary (its top-k at T)."""
    import torch

    from ssb_plugin.train.loss import sparse_kl_sums
    from ssb_plugin.train.options import LossOptions

    log_p = torch.log_softmax(raw_logprobs / temperature, dim=-1)
    options = LossOptions(temperature=temperature)
    return sparse_kl_sums(h, w, ids, log_p.exp(), log_p, bias=bias, options=options)


def _cfg(**kw):
    from axolotl.utils.dict import DictDefault

    return DictDefault({"plugins": ["ssb_plugin.SSBPlugin"], "sequence_len": 4096, **kw})


def _curated_dir(tok, tmp_path):
    """What `load` reads before any row: the manifest of a set curated with `tok`."""
    Manifest(model="curating-model", tokenizer=tokenizer_fingerprint(tok)).save(tmp_path)
    return tmp_path


def _with(tok, **special):
    out = copy.deepcopy(tok)
    out.add_special_tokens(special)
    return out


def test_a_config_pad_token_appended_after_the_vocab_is_accepted_and_named(smol_tok, tmp_path, caplog):
    curated = _curated_dir(smol_tok, tmp_path)
    padded = _with(smol_tok, pad_token=PAD)
    new_id = len(smol_tok)
    assert padded.convert_tokens_to_ids(PAD) == new_id  # appended: every existing id unchanged
    cfg = _cfg(special_tokens={"pad_token": PAD})
    from ssb_plugin.train.dataset import SSBDatasetStrategy

    with caplog.at_level(logging.WARNING, logger="ssb_plugin.tokenizer"):
        assert isinstance(load(padded, cfg, {"path": str(curated)}), SSBDatasetStrategy)
    assert "appends 1 token(s)" in caplog.text
    assert f"'{PAD}' (id {new_id})" in caplog.text and f"special_tokens.pad_token: '{PAD}'" in caplog.text
    two = _with(padded, additional_special_tokens=["<x1>", "<x2>"])
    assert [t for t, _ in appended_tokens(two, tokenizer_fingerprint(smol_tok)["vocab_sha256"])] == [
        PAD,
        "<x1>",
        "<x2>",
    ]


def test_a_changed_existing_id_is_refused_naming_the_config_tokens(smol_tok, tmp_path):
    # The set was curated with a tokenizer that had `<made-by-curation>` at the first free id; the
    # training tokenizer has the config's pad token there instead: id 49152 changed meaning.
    curated = _curated_dir(_with(smol_tok, additional_special_tokens=["<made-by-curation>"]), tmp_path)
    padded = _with(smol_tok, pad_token=PAD)
    cfg = _cfg(special_tokens={"pad_token": PAD})
    with pytest.raises(RecordError) as err:
        load(padded, cfg, {"path": str(curated)})
    msg = str(err.value)
    assert "vocabulary differs from the curated set's" in msg and "beyond tokens appended" in msg
    assert f"special_tokens.pad_token: '{PAD}' (id {len(smol_tok)})" in msg
    # fewer tokens than curated (one removed) is never an append either
    with pytest.raises(RecordError, match="config adds or changes no tokens"):
        load(smol_tok, _cfg(), {"path": str(curated)})


def test_another_tokenizer_says_the_config_added_nothing(smol_tok, tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    curated = _curated_dir(smol_tok, tmp_path)
    other = AutoTokenizer.from_pretrained(tiny_model_dir)
    other.chat_template = smol_tok.chat_template  # same template: the vocabulary is what differs
    with pytest.raises(RecordError, match=r"config adds or changes no tokens .* base_model"):
        check_training_tokenizer(other, Manifest.load(curated))


def test_chat_template_change_is_still_refused_with_appended_tokens(smol_tok, tmp_path):
    curated = _curated_dir(smol_tok, tmp_path)
    padded = _with(smol_tok, pad_token=PAD)
    padded.chat_template = smol_tok.chat_template + " "
    with pytest.raises(RecordError, match="chat template differs"):
        load(padded, _cfg(special_tokens={"pad_token": PAD}), {"path": str(curated)})


def test_config_token_changes_lists_every_source(smol_tok):
    padded = _with(smol_tok, pad_token=PAD)
    cfg = _cfg(special_tokens={"pad_token": PAD}, tokens=["<t>"], added_tokens_overrides={2: "<o>"})
    assert config_token_changes(cfg, padded) == [
        f"special_tokens.pad_token: '{PAD}' (id {len(smol_tok)})",
        f"tokens: '<t>' (id {padded.unk_token_id})" if padded.unk_token_id is not None else "tokens: '<t>'",
        "added_tokens_overrides: id 2 renamed to '<o>'",
    ]


def test_appended_rows_add_exactly_minus_log_one_minus_q_new_to_the_kd(smollm2_dir, smol_tok):
    """On SmolLM2, resized the way Axolotl resizes for a new pad token: KD' - KD = sum_t -log(1 - q'_t)
    (q'_t = the new token's probability at T), tiny, and its gradient pushes the new logit down."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()
    ids = smol_tok.apply_chat_template(
        [{"role": "user", "content": "What is 7 + 5? Put the answer in \\boxed{}."}],
        add_generation_prompt=True,
        return_dict=True,
        return_tensors="pt",
    )["input_ids"]
    with torch.no_grad():
        h = model(ids, output_hidden_states=True).hidden_states[-1][0, -12:]  # [N, H] answer-like rows
        w_old = model.get_output_embeddings().weight.detach().clone()
        teacher = torch.log_softmax(h @ w_old.t(), dim=-1).topk(16, dim=-1)  # a k=16 teacher over V
    model.resize_token_embeddings(len(smol_tok) + 1)  # what Axolotl does for the appended pad token
    w_new = model.get_output_embeddings().weight.detach()
    assert torch.equal(w_new[: len(w_old)], w_old)  # existing rows untouched
    t = 2.0
    kd_old = float(topk_kd(h, w_old, teacher.indices, teacher.values, temperature=t)[1])
    kd_new = float(topk_kd(h, w_new, teacher.indices, teacher.values, temperature=t)[1])
    q_new = torch.softmax((h @ w_new.t()) / t, dim=-1)[:, -1]
    assert float(q_new.max()) < 1e-3  # the mean-initialised row starts with almost no mass...
    assert 0 <= kd_new - kd_old < 1e-4 * kd_old  # ...so the loss barely moves
    # The identity, on an appended row that carries real mass (a copy of the top token's row).
    w_big = torch.cat([w_old, w_old[teacher.indices[0, 0]][None]])
    bias = torch.zeros(w_big.shape[0], requires_grad=True)  # d loss / d logit, per vocabulary row
    loss, kd_big, _ = topk_kd(h, w_big, teacher.indices, teacher.values, bias=bias, temperature=t)
    loss.backward()
    q = torch.softmax((h @ w_big.t()) / t, dim=-1)[:, -1].double()
    assert float(q.max()) > 0.01
    assert float(kd_big) - kd_old == pytest.approx(float(-torch.log1p(-q).sum()), rel=1e-3)
    # gradient descent lowers the new logit: d loss / d z_new = T^2 * sum_t q_t / T > 0
    assert float(bias.grad[-1]) == pytest.approx(t * float(q.sum()), rel=1e-3)
