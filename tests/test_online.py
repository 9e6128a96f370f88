"""The online teacher (`ssb_teacher: online`): exact full-vocabulary KL against the base model with the
adapter disabled, on the embedded SmolLM2 (equality with a dense float64 reference, identity) and
on the tiny model (packing, accumulation, checkpointing, eval, memory, batch layout)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from support.curated_fixture import cached_curated_set, one_thread

from ssb_plugin.train.batch_keys import TEACHER_INPUT_IDS, TEACHER_LABELS, TEACHER_PREFIX
from ssb_plugin.train.forward import online_forward
from ssb_plugin.train.online import peft_model
from ssb_plugin.train.options import LossOptions

LOSS = LossOptions(temperature=2.0, kd_weight=1.0, ce_weight=0.0, chunk_size=7)


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


def _tok(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def _lora(path, b_std: float | None = 0.02, seed: int = 0):
    """Base model + LoRA r4 on every linear; b_std None keeps PEFT's zero-initialised B (student = base)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0))
    if b_std is not None:
        for name, prm in model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(prm, std=b_std)
    return model


def _rows(path):
    from datasets import load_dataset

    return list(load_dataset(str(path), split="train"))


def _feats(tok, rows, **kw):
    from ssb_plugin.train.dataset import tokenize_online

    return [tokenize_online(tok, r, **kw) for r in rows]


def _loss(model, batch, **kw):
    return online_forward(model, dict(batch), dataclasses.replace(LOSS, **kw))


def _lora_params(model):
    return [p for p in model.parameters() if p.requires_grad]


def dense_reference(model, batch, temperature: float, dtype=torch.float32):
    """T^2 * sum_t KL(teacher || student) from materialised (B, S, V) logits, the KL in `dtype`."""
    student = {k: v for k, v in batch.items() if not k.startswith(TEACHER_PREFIX)}
    teacher = {k[len(TEACHER_PREFIX) :]: v for k, v in batch.items() if k.startswith(TEACHER_PREFIX)}
    s_labels, t_labels = student.pop("labels"), teacher.pop("labels")
    with torch.no_grad(), model.disable_adapter():
        z_t = model(**teacher).logits.to(dtype)[:, :-1][t_labels[:, 1:] != -100]
    z_s = model(**student).logits.to(dtype)[:, :-1][s_labels[:, 1:] != -100]
    log_p = torch.log_softmax(z_t / temperature, -1)
    log_q = torch.log_softmax(z_s / temperature, -1)
    return (log_p.exp() * (log_p - log_q)).sum() * temperature**2


# ----------------------------------------------------------------------------------------------
# The embedded SmolLM2: the quantity that is trained


@pytest.fixture(scope="module")
def smol_set(smollm2_dir, tmp_path_factory):
    return cached_curated_set(
        smollm2_dir, tmp_path_factory.getbasetemp() / "curated", n=4, k=16, max_new_tokens=12
    )


def _flat_grad(loss, params):
    return torch.cat([g.flatten().double() for g in torch.autograd.grad(loss, params)])


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_online_equals_dense_full_vocabulary_reference_on_smollm2(smollm2_dir, smol_set, temperature):
    """Loss and LoRA gradient equal the dense reference (fp32, as the model computes) to 1e-5 relative,
    and are as close to the float64 KL as that dense reference is (fp32 rounding: ~1e-5 at T = 1)."""
    from ssb_plugin.train.collator import SSBDataCollator

    tok, model = _tok(smollm2_dir), _lora(smollm2_dir)
    batch = SSBDataCollator(tok)(_feats(tok, _rows(smol_set)))
    assert batch[TEACHER_INPUT_IDS].shape[1] > batch["input_ids"].shape[1]  # the hinted prompt is longer
    params = _lora_params(model)
    loss, kd, _, n, _ = _loss(model, batch, temperature=temperature, chunk_size=13)
    grad = _flat_grad(loss, params)
    ref = dense_reference(model, batch, temperature)
    ref_grad = _flat_grad(ref, params)
    exact = dense_reference(model, batch, temperature, torch.float64)
    exact_grad = _flat_grad(exact, params)
    assert n == sum(len(r["response_ids"]) for r in _rows(smol_set))
    assert loss.item() / n > 0.01  # the bare-question student differs from the teacher
    assert loss.item() == pytest.approx(kd.item() * temperature**2, rel=1e-6)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    # Two fp32 computations differ by up to fp32's own rounding, which (measured against float64)
    # exceeds 1e-5 at T = 1 on AVX2-only kernels (2.1e-5): the bar is 1e-5 or that rounding.
    fp32_rounding = _rel(ref_grad, exact_grad)
    assert _rel(grad, ref_grad) < max(1e-5, fp32_rounding), f"gradient relative error {_rel(grad, ref_grad)}"
    assert abs(loss.item() - exact.item()) <= 1.5 * abs(ref.item() - exact.item()) + 1e-6 * n
    assert _rel(grad, exact_grad) <= 1.5 * _rel(ref_grad, exact_grad) + 1e-6


def test_identity_zero_lora_on_the_teacher_prompt_gives_zero_kl(smollm2_dir, smol_set):
    """Student = teacher: zero-initialised LoRA, the student shown the teacher's own prompt."""
    from ssb_plugin.train.collator import SSBDataCollator

    tok, model = _tok(smollm2_dir), _lora(smollm2_dir, b_std=None)
    rows = _rows(smol_set)
    same = SSBDataCollator(tok)(_feats(tok, rows, messages_key="teacher_messages"))
    assert torch.equal(same["input_ids"], same[TEACHER_INPUT_IDS])
    for temperature in (1.0, 2.0):
        with torch.no_grad():
            _, kd, _, n, _ = _loss(model, same, temperature=temperature)
        assert abs(kd.item()) / n < 1e-6, f"T={temperature}: KL/token {kd.item() / n}"
    # the same adapter on the bare question is far from the teacher: the check can fail
    with torch.no_grad():
        _, kd_q, _, n_q, _ = _loss(model, SSBDataCollator(tok)(_feats(tok, rows)))
    assert kd_q.item() / n_q > 0.01


# ----------------------------------------------------------------------------------------------
# The tiny model: batch layout, packing, accumulation, checkpointing, eval, memory


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    return _tok(tiny_model_dir)


@pytest.fixture(scope="module")
def curated(tiny_model_dir, tmp_path_factory):
    return cached_curated_set(tiny_model_dir, tmp_path_factory.getbasetemp() / "curated", n=4, k=8)


def test_features_carry_the_teacher_view_and_no_stored_targets(tok, curated):
    from ssb_plugin.record import chat_prompt_ids
    from ssb_plugin.train.dataset import tokenize_online

    row = _rows(curated)[0]
    out = tokenize_online(tok, row)
    p_t = len(chat_prompt_ids(tok, row["teacher_messages"]))
    assert out[TEACHER_INPUT_IDS] == chat_prompt_ids(tok, row["teacher_messages"]) + row["response_ids"]
    assert out[TEACHER_LABELS] == [-100] * p_t + row["response_ids"]
    assert out["input_ids"] == chat_prompt_ids(tok, row["student_messages"]) + row["response_ids"]
    assert not any(k.startswith("ssb_target") or k.startswith("ssb_topk") for k in out)


def test_collator_pairs_teacher_and_student_answer_positions(tok, curated):
    """Padded (right and left) and packed: the i-th teacher answer position predicts the same token
    as the i-th student one; teacher position ids restart per packed sample."""
    import copy

    from ssb_plugin.train.collator import SSBDataCollator

    feats = _feats(tok, _rows(curated))

    def with_pos(f):
        return {**f, "position_ids": list(range(len(f["input_ids"])))}

    left = copy.deepcopy(tok)
    left.padding_side = "left"
    packed_in = [[with_pos(feats[0]), with_pos(feats[1])], [with_pos(feats[2]), with_pos(feats[3])]]
    for collate, batch_in in (
        (SSBDataCollator(tok, pad_to_multiple_of=8), feats),
        (SSBDataCollator(left), feats),
        (SSBDataCollator(tok), packed_in),
    ):
        batch = collate(copy.deepcopy(batch_in))
        s_lab, t_lab = batch["labels"], batch[TEACHER_PREFIX + "labels"]
        assert torch.equal(s_lab[:, 1:][s_lab[:, 1:] != -100], t_lab[:, 1:][t_lab[:, 1:] != -100])
        assert set(batch) >= {TEACHER_INPUT_IDS, TEACHER_PREFIX + "labels"}
    t_pos = batch[TEACHER_PREFIX + "position_ids"][0]
    n0 = len(feats[0][TEACHER_INPUT_IDS])
    assert t_pos[n0].item() == 0 and t_pos[n0 - 1].item() == n0 - 1


def test_packed_equals_unpacked(tiny_model_dir, tok, curated):
    from ssb_plugin.train.collator import SSBDataCollator

    model = _lora(tiny_model_dir, b_std=0.1)  # a student well away from the teacher: KL >> fp32 rounding
    feats = _feats(tok, _rows(curated))
    flat = SSBDataCollator(tok, pad_to_multiple_of=16)([dict(f) for f in feats])

    def with_pos(f):  # what Axolotl's packing prep adds; sdpa packing drops attention_mask
        f = {k: v for k, v in f.items() if k != "attention_mask"}
        return {**f, "position_ids": list(range(len(f["input_ids"])))}

    packed = SSBDataCollator(tok)([[with_pos(f) for f in feats[:3]], [with_pos(feats[3])]])
    assert packed["input_ids"].shape[0] == 2 and TEACHER_PREFIX + "attention_mask" not in packed
    params = _lora_params(model)
    l_flat, _, ce_flat, n_flat, _ = _loss(model, flat)
    g_flat = torch.autograd.grad(l_flat, params)
    l_pack, _, ce_pack, n_pack, _ = _loss(model, packed)
    g_pack = torch.autograd.grad(l_pack, params)
    assert n_flat == n_pack and l_flat.item() > 0
    assert l_pack.item() == pytest.approx(l_flat.item(), rel=1e-5)
    assert ce_pack.item() == pytest.approx(ce_flat.item(), rel=1e-5)
    for a, b in zip(g_pack, g_flat, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_gradient_checkpointing_gives_the_same_loss_and_grads(tiny_model_dir, tok, curated):
    from ssb_plugin.train.collator import SSBDataCollator

    batch = SSBDataCollator(tok)(_feats(tok, _rows(curated)))
    results = []
    for ckpt in (False, True):
        model = _lora(tiny_model_dir)
        if ckpt:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
            model.enable_input_require_grads()
        model.train()
        loss, _, _, n, _ = _loss(model, batch)
        (loss / n).backward()
        assert model.training, "the teacher pass must restore training mode"
        results.append((loss.item(), [p.grad.clone() for p in _lora_params(model)]))
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-6)
    for a, b in zip(results[1][1], results[0][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_teacher_is_the_base_model_and_the_adapter_is_back_after(tiny_model_dir, tok, curated):
    """The adapter is disabled only for the teacher: the student's forward still sees it."""
    from ssb_plugin.train.collator import SSBDataCollator

    model = _lora(tiny_model_dir, b_std=0.05)
    batch = SSBDataCollator(tok)(_feats(tok, _rows(curated)[:1]))
    ids = batch["input_ids"]
    with torch.no_grad():
        before = model(input_ids=ids).logits
        _loss(model, batch)
        after = model(input_ids=ids).logits
        with model.disable_adapter():
            base = model(input_ids=ids).logits
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    assert (after - base).abs().max() > 1e-3


def test_without_an_adapter_it_refuses(tiny_model_dir, tok, curated):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    with pytest.raises(ValueError, match="needs a PEFT adapter"):
        peft_model(model)
    with pytest.raises(KeyError, match="ssb_teacher: online"):
        ids = torch.ones(1, 3, dtype=torch.long)
        online_forward(_lora(tiny_model_dir), {"input_ids": ids, "labels": ids}, LOSS)


def test_no_batch_seq_vocab_tensor(tiny_model_dir, tok, curated):
    from test_loss_model import _LargestTensor

    from ssb_plugin.train.collator import SSBDataCollator

    model = _lora(tiny_model_dir)
    vocab = model.config.vocab_size
    batch = SSBDataCollator(tok)(_feats(tok, _rows(curated)))
    bsz = batch["input_ids"].shape[0]
    with _LargestTensor(vocab) as mode:
        loss, _, _, n, _ = _loss(model, batch, chunk_size=5)
        loss.backward()
    biggest = max(torch.Size(s).numel() for s in mode.shapes)
    allowed = max(5 * vocab, bsz * vocab, vocab * model.config.hidden_size)
    assert biggest <= allowed, f"a {biggest}-element vocabulary tensor"
    assert not any(len(s) == 3 and s[1] > 1 for s in mode.shapes), "a (B, S>1, V) tensor was created"


def _trainer(tiny_model_dir, tok, ds, tmp_path, **args):
    from axolotl.core.training_args import AxolotlTrainingArguments
    from axolotl.utils.dict import DictDefault

    from ssb_plugin.train.collator import SSBDataCollator
    from ssb_plugin.train.trainer import SSBTrainer

    targs = AxolotlTrainingArguments(
        output_dir=str(tmp_path), report_to=[], save_strategy="no", use_cpu=True, seed=0, disable_tqdm=True,
        **args,
    )  # fmt: skip
    collate = SSBDataCollator(tok)
    trainer = SSBTrainer(
        model=_lora(tiny_model_dir), args=targs, train_dataset=ds, eval_dataset=ds, data_collator=collate,
        eval_data_collator=collate,
    )  # fmt: skip
    trainer.axolotl_cfg = DictDefault({"ssb_teacher": "online"})
    return trainer


@pytest.fixture(scope="module")
def online_ds(tok, curated):
    from datasets import load_dataset

    from ssb_plugin.train.dataset import SSBDatasetStrategy

    strategy = SSBDatasetStrategy(tok, sequence_len=4096, teacher="online")
    return strategy.wrap_dataset(load_dataset(str(curated), split="train"))


def test_gradient_accumulation_invariance(tiny_model_dir, tok, online_ds, tmp_path):
    """2 micro-batches of 2 with accumulation == 1 micro-batch of 4, through the real trainer."""
    assert len({sum(x != -100 for x in lab) for lab in online_ds["labels"]}) > 1  # unequal answer lengths

    def one_step(mb, ga):
        trainer = _trainer(
            tiny_model_dir, tok, online_ds, tmp_path / f"o{mb}", per_device_train_batch_size=mb,
            gradient_accumulation_steps=ga, max_steps=1, learning_rate=1.0, optim="sgd",
            lr_scheduler_type="constant", max_grad_norm=0.0,
        )  # fmt: skip
        model = trainer.model
        before = {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}
        out = trainer.train()
        return {k: v.detach() - before[k] for k, v in model.named_parameters() if v.requires_grad}, out

    d4, out4 = one_step(4, 1)
    d22, out22 = one_step(2, 2)
    scale = max(v.abs().max().item() for v in d4.values())
    diff = max((d4[k] - d22[k]).abs().max().item() for k in d4)
    assert scale > 1e-4 and diff <= 1e-5 * scale + 1e-9, f"update differs by {diff} (scale {scale})"
    assert out22.training_loss == pytest.approx(out4.training_loss, rel=1e-5)


def test_eval_keeps_the_teacher_columns(tiny_model_dir, tok, online_ds, tmp_path):
    """HF drops columns the model's forward does not name (remove_unused_columns): not the teacher's."""
    trainer = _trainer(
        tiny_model_dir, tok, online_ds, tmp_path, per_device_eval_batch_size=4, remove_unused_columns=True
    )
    metrics = trainer.evaluate()
    assert metrics["eval_ssb_answer_tokens"] == sum(
        sum(x != -100 for x in lab[1:]) for lab in online_ds["labels"]
    )
    assert (
        metrics["eval_loss"] == pytest.approx(metrics["eval_ssb_kd"], rel=1e-4) and metrics["eval_loss"] > 0
    )


def test_config_online_needs_an_adapter(tiny_model_dir):
    """In the merged Axolotl config: `ssb_teacher: online` without a LoRA adapter is refused up front."""
    from axolotl.integrations.base import PluginManager
    from test_plugin import _base_cfg, _validate

    from ssb_plugin.train.args import SSBArgs

    assert SSBArgs().ssb_teacher == "stored" and SSBArgs(ssb_teacher="online").ssb_teacher == "online"
    with pytest.raises(ValueError):
        SSBArgs(ssb_teacher="live")
    PluginManager._instance = None  # process-wide singleton: isolate
    try:
        with pytest.raises(ValueError, match="ssb_teacher: online needs `adapter: lora`"):
            _validate(_base_cfg(tiny_model_dir, ssb_teacher="online"))
        cfg = _validate(
            _base_cfg(tiny_model_dir, ssb_teacher="online", adapter="lora", lora_target_linear=True)
        )
        assert cfg.ssb_teacher == "online"
    finally:
        PluginManager._instance = None
