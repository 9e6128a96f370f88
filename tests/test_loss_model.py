"""The SSB loss on a real (tiny) model: alignment identity, LoRA gradients, packing, accumulation, memory."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from support.curated_fixture import cached_curated_set, one_thread, peaked_model_dir
from torch.utils._python_dispatch import TorchDispatchMode

from ssb_plugin.train.batch_keys import IDS, LOGPROBS, SAMPLED, TEMPERATURE, WEIGHTS
from ssb_plugin.train.forward import ssb_forward
from ssb_plugin.train.options import LossOptions
from ssb_plugin.train.targets import TOPK_TAIL, TargetInfo

INFO = TargetInfo(TOPK_TAIL, (1.0, 2.0), 2.0)  # what curated_fixture's sets carry (the curation default)

LOSS = LossOptions(temperature=2.0, kd_weight=1.0, ce_weight=0.0, chunk_size=7)


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _model(path, **kw):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa", **kw)


@pytest.fixture(scope="module")
def curated(tiny_model_dir, tmp_path_factory):
    return cached_curated_set(tiny_model_dir, tmp_path_factory.getbasetemp() / "curated", n=4, k=8)


@pytest.fixture(scope="module")
def peaked_dir(tiny_model_dir, tmp_path_factory):
    return peaked_model_dir(tiny_model_dir, tmp_path_factory.getbasetemp() / "models")


@pytest.fixture(scope="module")
def curated_full(peaked_dir, tmp_path_factory):
    # k = vocabulary: the renormalised top-k is the teacher's whole distribution, so KL can be exactly 0
    return cached_curated_set(peaked_dir, tmp_path_factory.getbasetemp() / "curated", n=3, k=None)


def _rows(path):
    from datasets import load_dataset

    return list(load_dataset(str(path), split="train"))


def _loss(model, batch, **kw):
    return ssb_forward(model, dict(batch), dataclasses.replace(LOSS, **kw))


def test_identity_teacher_prompt_gives_zero_kl_and_shift_gives_large(peaked_dir, tok, curated_full):
    """docs/design.md self-check: the model on the *teacher's* prompt + response_ids reproduces the stored targets."""
    from ssb_plugin.train.collator import SSBDataCollator
    from ssb_plugin.train.dataset import tokenize_record

    model = _model(peaked_dir).eval()
    rows = _rows(curated_full)
    teacher_view = [{**r, "student_messages": r["teacher_messages"]} for r in rows]
    feats = [tokenize_record(tok, r, INFO, 1.0) for r in teacher_view]
    with torch.no_grad():
        # the stored log-probs themselves, read back at P-1+j
        f = feats[0]
        p = len(f["labels"]) - len(rows[0]["response_ids"])  # teacher prompt length
        lp = torch.log_softmax(model(torch.tensor([f["input_ids"]])).logits[0].float(), -1)
        stored = torch.tensor(rows[0]["teacher_topk_logprobs"])
        got = lp[p - 1 : p - 1 + len(rows[0]["response_ids"])].gather(
            -1, torch.tensor(rows[0]["teacher_topk_ids"]).long()
        )
        torch.testing.assert_close(got, stored, atol=1e-4, rtol=0)

        for T in (1.0, 2.0):
            feats_t = [tokenize_record(tok, r, INFO, T) for r in teacher_view]
            _, kd, _, n, _ = _loss(model, SSBDataCollator(tok)(feats_t), temperature=T)
            assert kd.item() / n < 1e-5, (
                f"KL on the teacher's own prompt should be ~0 (T={T}), got {kd.item() / n}"
            )

        # shifted by one: row j+1 scored at the position predicting token j
        shifted = []
        for x in feats:
            x = dict(x)
            for key in (IDS, WEIGHTS, LOGPROBS, SAMPLED):
                x[key] = x[key][1:]
            x["labels"] = x["labels"][:-1] + [-100]
            shifted.append(x)
        _, kd_s, _, n_s, _ = _loss(model, SSBDataCollator(tok)(shifted), temperature=1.0)
        assert kd_s.item() / n_s > 1.0, (
            f"a one-position misalignment must be visible, KL/token = {kd_s.item() / n_s}"
        )


def test_gradients_reach_only_lora_params(tiny_model_dir, tok, curated):
    from peft import LoraConfig, get_peft_model

    from ssb_plugin.train.collator import SSBDataCollator
    from ssb_plugin.train.dataset import tokenize_record

    model = get_peft_model(
        _model(tiny_model_dir), LoraConfig(r=4, lora_alpha=4, target_modules="all-linear", lora_dropout=0.0)
    )
    # LoRA B starts at 0, which would make A's gradient 0: give B a value so both must move
    for name, prm in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(prm, std=0.02)
    batch = SSBDataCollator(tok)([tokenize_record(tok, r, INFO, 2.0) for r in _rows(curated)])
    loss, _, _, n, _ = _loss(model, batch)
    (loss / n).backward()
    trainable = {k: p for k, p in model.named_parameters() if p.requires_grad}
    frozen = {k: p for k, p in model.named_parameters() if not p.requires_grad}
    assert trainable and all("lora_" in k for k in trainable)
    assert all(p.grad is None for p in frozen.values()), "a frozen parameter received a gradient"
    for k, p in trainable.items():
        assert p.grad is not None and torch.isfinite(p.grad).all(), k
        assert p.grad.abs().sum() > 0, f"no gradient reached {k}"


def test_packed_equals_unpacked(tiny_model_dir, tok, curated):
    from ssb_plugin.train.collator import SSBDataCollator
    from ssb_plugin.train.dataset import tokenize_record

    model = _model(tiny_model_dir)
    feats = [tokenize_record(tok, r, INFO, 2.0) for r in _rows(curated)]
    collate = SSBDataCollator(tok, pad_to_multiple_of=16)
    flat = collate([dict(f) for f in feats])

    def with_pos(f):  # what Axolotl's packing prep adds; sdpa packing drops attention_mask
        f = dict(f)
        f["position_ids"] = list(range(len(f["input_ids"])))
        f.pop("attention_mask")
        return f

    packed = collate([[with_pos(feats[0]), with_pos(feats[1]), with_pos(feats[2])], [with_pos(feats[3])]])
    assert packed["input_ids"].shape[0] == 2 and "attention_mask" not in packed
    assert (packed["position_ids"][0] == 0).sum() >= 3, "position ids must restart per packed sample"
    l_flat, kd_flat, ce_flat, n_flat, _ = _loss(model, flat)
    g_flat = torch.autograd.grad(l_flat, [p for p in model.parameters()][-3])[0]
    l_pack, kd_pack, ce_pack, n_pack, _ = _loss(model, packed)
    g_pack = torch.autograd.grad(l_pack, [p for p in model.parameters()][-3])[0]
    assert n_flat == n_pack == sum(len(r["response_ids"]) for r in _rows(curated))
    # abs: the KL estimate sums terms of both signs (the sampled tail), so it is small next to their noise
    assert l_pack.item() == pytest.approx(l_flat.item(), rel=1e-5, abs=1e-5)
    assert ce_pack.item() == pytest.approx(ce_flat.item(), rel=1e-5)
    torch.testing.assert_close(g_pack, g_flat, rtol=1e-4, atol=1e-6)


def test_all_masked_batch_no_nan(tiny_model_dir, tok):
    from ssb_plugin.train.collator import SSBDataCollator

    model = _model(tiny_model_dir)
    f = {
        "input_ids": [5, 6, 7, 8],
        "attention_mask": [1] * 4,
        "labels": [-100] * 4,
        IDS: [],
        WEIGHTS: [],
        LOGPROBS: [],
    }
    f[TEMPERATURE] = 2.0
    batch = SSBDataCollator(tok)([f, dict(f)])
    loss, kd, ce, n, _ = _loss(model, batch)
    assert n == 0 and loss.item() == 0.0 and not torch.isnan(loss)
    (loss / max(n, 1)).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() == 0 for g in grads)


class _LargestTensor(TorchDispatchMode):
    """Records every tensor any op produces (forward and backward) whose last dim is the vocabulary."""

    def __init__(self, vocab):
        super().__init__()
        self.vocab, self.shapes = vocab, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        # views (expand, transpose) of an input allocate nothing: only new storage counts
        leaves = torch.utils._pytree.tree_leaves((args, kwargs))
        inputs = {x.untyped_storage().data_ptr() for x in leaves if isinstance(x, torch.Tensor)}
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor) and t.dim() >= 1 and t.shape[-1] == self.vocab:
                if t.untyped_storage().data_ptr() not in inputs:
                    self.shapes.append(tuple(t.shape))
        return out


def test_no_batch_seq_vocab_tensor(tiny_model_dir, tok, curated):
    from ssb_plugin.train.collator import SSBDataCollator
    from ssb_plugin.train.dataset import tokenize_record

    model = _model(tiny_model_dir)
    vocab = model.config.vocab_size
    batch = SSBDataCollator(tok)([tokenize_record(tok, r, INFO, 2.0) for r in _rows(curated)])
    bsz, seq = batch["input_ids"].shape
    with _LargestTensor(vocab) as mode:
        loss, _, _, n, _ = _loss(model, batch, chunk_size=5)
        loss.backward()
    biggest = max(torch.Size(s).numel() for s in mode.shapes)
    # the embedding matrix itself (V x H) is the only allowed vocab-sized tensor besides the chunk
    allowed = max(5 * vocab, bsz * vocab, vocab * model.config.hidden_size)
    assert biggest <= allowed, f"found a {biggest}-element vocab tensor; (B,S,V) = {bsz * seq * vocab}"
    assert not any(len(s) == 3 and s[1] > 1 for s in mode.shapes), "a (B, S>1, V) tensor was created"


def test_gradient_accumulation_invariance(tiny_model_dir, tok, curated, tmp_path):
    """2 micro-batches of 2 with accumulation == 1 micro-batch of 4, through the real HF/Axolotl trainer."""
    from axolotl.core.training_args import AxolotlTrainingArguments
    from datasets import load_dataset

    from ssb_plugin.train.collator import SSBDataCollator
    from ssb_plugin.train.dataset import SSBDatasetStrategy
    from ssb_plugin.train.trainer import SSBTrainer

    ds = SSBDatasetStrategy(tok, sequence_len=4096, target=INFO).wrap_dataset(
        load_dataset(str(curated), split="train")
    )
    lengths = {len(x) for x in ds["labels"]}
    assert len(lengths) > 1, "the fixture must have unequal answer lengths for this test to mean anything"

    def one_step(mb, ga):
        model = _model(tiny_model_dir)
        args = AxolotlTrainingArguments(
            output_dir=str(tmp_path / f"o{mb}"), per_device_train_batch_size=mb, gradient_accumulation_steps=ga,
            max_steps=1, learning_rate=1.0, optim="sgd", lr_scheduler_type="constant", max_grad_norm=0.0,
            report_to=[], save_strategy="no", use_cpu=True, seed=0, disable_tqdm=True,
        )  # fmt: skip
        trainer = SSBTrainer(model=model, args=args, train_dataset=ds, data_collator=SSBDataCollator(tok))
        before = {k: v.detach().clone() for k, v in model.named_parameters()}
        out = trainer.train()
        return {k: v.detach() - before[k] for k, v in model.named_parameters()}, out.training_loss

    d4, loss4 = one_step(4, 1)
    d22, loss22 = one_step(2, 2)
    scale = max(v.abs().max().item() for v in d4.values())
    diff = max((d4[k] - d22[k]).abs().max().item() for k in d4)
    assert scale > 1e-3
    assert diff <= 1e-5 * scale + 1e-7, f"update differs by {diff} (scale {scale})"
    assert loss22 == pytest.approx(loss4, rel=1e-5, abs=1e-7)


def test_gradient_checkpointing_gives_the_same_loss_and_grads(tiny_model_dir, tok, curated):
    from peft import LoraConfig, get_peft_model

    from ssb_plugin.train.collator import SSBDataCollator
    from ssb_plugin.train.dataset import tokenize_record

    batch = SSBDataCollator(tok)([tokenize_record(tok, r, INFO, 2.0) for r in _rows(curated)])
    results = []
    for ckpt in (False, True):
        model = get_peft_model(
            _model(tiny_model_dir), LoraConfig(r=4, lora_alpha=4, target_modules="all-linear")
        )
        for name, prm in model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.constant_(prm, 0.01)
        if ckpt:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
            model.enable_input_require_grads()
        model.train()
        loss, _, _, n, _ = _loss(model, batch)
        (loss / n).backward()
        results.append(
            (loss.item(), {k: p.grad.clone() for k, p in model.named_parameters() if p.requires_grad})
        )
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-6)
    for k, g in results[0][1].items():
        torch.testing.assert_close(results[1][1][k], g, rtol=1e-4, atol=1e-7)


def test_unpacked_eval_keeps_teacher_columns(tiny_model_dir, tok, curated, tmp_path):
    """HF drops dataset columns the model's forward does not name; the trainer must keep ssb_target_*."""
    from axolotl.core.training_args import AxolotlTrainingArguments
    from datasets import load_dataset

    from ssb_plugin.train.collator import SSBDataCollator
    from ssb_plugin.train.dataset import SSBDatasetStrategy
    from ssb_plugin.train.trainer import SSBTrainer

    ds = SSBDatasetStrategy(tok, sequence_len=4096, target=INFO).wrap_dataset(
        load_dataset(str(curated), split="train")
    )
    args = AxolotlTrainingArguments(
        output_dir=str(tmp_path), per_device_eval_batch_size=4, report_to=[], use_cpu=True, disable_tqdm=True,
        remove_unused_columns=True,
    )  # fmt: skip
    collate = SSBDataCollator(tok)
    trainer = SSBTrainer(
        model=_model(tiny_model_dir), args=args, train_dataset=ds, eval_dataset=ds, data_collator=collate,
        eval_data_collator=collate,
    )  # fmt: skip
    metrics = trainer.evaluate()
    n = sum(len(r) for r in ds[IDS])
    assert metrics["eval_ssb_answer_tokens"] == n
    assert (
        metrics["eval_loss"]
        == pytest.approx(
            metrics["eval_ssb_kd"], rel=1e-4, abs=1e-6
        )  # logs round to 6 places and metrics["eval_loss"] > 0
    )


def test_qlora_4bit_gradients_reach_only_lora(tiny_model_dir, tok, curated):
    """QLoRA: 4-bit base linears (bitsandbytes, CPU backend here), LoRA on top; the head stays unquantised."""
    from ssb_plugin.train.collator import SSBDataCollator
    from ssb_plugin.train.dataset import tokenize_record

    pytest.importorskip("bitsandbytes")
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.float32, bnb_4bit_quant_type="nf4")
    try:
        base = AutoModelForCausalLM.from_pretrained(
            tiny_model_dir, quantization_config=q, dtype=torch.float32
        )
    except Exception as e:  # a bitsandbytes build without this device's 4-bit kernels
        pytest.skip(f"bitsandbytes 4-bit unavailable here: {e}")
    assert type(base.model.layers[0].mlp.down_proj).__name__ == "Linear4bit"
    model = get_peft_model(
        prepare_model_for_kbit_training(base, use_gradient_checkpointing=False),
        LoraConfig(r=4, lora_alpha=4, target_modules="all-linear", lora_dropout=0.0),
    )
    batch = SSBDataCollator(tok)([tokenize_record(tok, r, INFO, 2.0) for r in _rows(curated)])
    loss, _, _, n, _ = _loss(model, batch)
    (loss / n).backward()
    assert torch.isfinite(loss) and loss.item() > 0
    for k, p in model.named_parameters():
        if p.requires_grad:
            assert "lora_" in k and p.grad is not None and torch.isfinite(p.grad).all(), k
        else:
            assert p.grad is None, k


@pytest.mark.slow
def test_ddp_two_ranks_match_single_process(tiny_model_dir, curated, tmp_path):
    """Data parallel (torchrun, 2 CPU ranks over gloo, micro-batch 2 each) == 1 process, micro-batch 4:
    the loss is normalised by the global answer-token count (average_tokens_across_devices)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    helper = Path(__file__).parent / "support" / "ddp_step.py"
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    torchrun = Path(sys.executable).with_name("torchrun")
    runs = {
        "ddp": [str(torchrun), "--nproc_per_node", "2", "--master_port", "29517", str(helper)],
        "single": [sys.executable, str(helper)],
    }
    for name, cmd in runs.items():
        mb = "2" if name == "ddp" else "4"
        proc = subprocess.run(
            [*cmd, str(tiny_model_dir), str(curated), str(tmp_path / f"{name}.pt"), mb],
            env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ddp, single = torch.load(tmp_path / "ddp.pt"), torch.load(tmp_path / "single.pt")
    scale = max(v.abs().max().item() for v in single.values())
    diff = max((single[k] - ddp[k]).abs().max().item() for k in single)
    assert scale > 1e-3 and diff <= 1e-5 * scale + 1e-7, f"DDP update differs by {diff} (scale {scale})"
