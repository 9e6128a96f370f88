"""SSB training step vs plain SFT step on the same tokens: time and peak memory ratios, in one run.

    python benchmarks/train_step.py                       # CPU: SmolLM2-135M shape, fp32, LoRA r16
    python benchmarks/train_step.py --preset qwen3b --seq 2048 --batch 4    # GPU: Qwen2.5-3B shape, bf16

Both steps: random-weight model of the chosen shape, LoRA on all linear projections, same input ids
and labels (a prompt quarter masked). SFT = `model(input_ids, labels=labels).loss.backward()` (HF's
loss, full logits). SSB = ssb_plugin.train.forward.ssb_forward (loss inside the lm_head's forward, chunked
stored-target loss), at the default loss options but --chunk (ssb_plugin.train.options.LossOptions).
Timing alternates the two steps (drift on a shared box hits both); peak memory: CUDA allocator peak
per step, or on CPU the resident-set high-water mark of a fresh subprocess per mode. An extra SSB
step runs under a dispatch mode that records every tensor with a vocabulary-sized last dim, to show
no (B, S, V) tensor exists (--no-shape-check to skip). The SSB step is training's default (the tail
samples' control-variate gradient, the diagnostics on); a third step without the diagnostics
(`ssb_diagnostics: false`) measures what they cost, in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

PRESETS = {
    # SmolLM2-135M-Instruct (the embedded default model)
    "smollm2": dict(
        arch="llama", vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
        num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True,
    ),
    # Qwen2.5-3B-Instruct
    "qwen3b": dict(
        arch="qwen2", vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
        num_attention_heads=16, num_key_value_heads=2, tie_word_embeddings=True,
    ),
    "tiny": dict(
        arch="qwen2", vocab_size=4096, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True,
    ),
}  # fmt: skip


def build(args):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    spec = dict(PRESETS[args.preset])
    arch = spec.pop("arch")
    cfg_cls, model_cls = (
        (LlamaConfig, LlamaForCausalLM) if arch == "llama" else (Qwen2Config, Qwen2ForCausalLM)
    )
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    cfg = cfg_cls(**spec, max_position_embeddings=max(args.seq, 2048), attn_implementation="sdpa")
    torch.manual_seed(0)
    with torch.device(args.device):
        model = model_cls(cfg).to(dtype)
    model = get_peft_model(
        model,
        LoraConfig(
            r=args.lora_r, lora_alpha=args.lora_r, lora_dropout=0.0,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        ),
    )  # fmt: skip
    if args.grad_ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.train()

    g = torch.Generator(device="cpu").manual_seed(1)
    vocab, bsz, seq, k = cfg.vocab_size, args.batch, args.seq, args.k
    ids = torch.randint(0, vocab, (bsz, seq), generator=g)
    labels = ids.clone()
    labels[:, : seq // 4] = -100  # the prompt
    from ssb_plugin.curate.config import DEFAULT_STORED_TOPK
    from ssb_plugin.train.batch_keys import IDS, LOGPROBS, PAD_ID, SAMPLED, TEMPERATURE, WEIGHTS
    from ssb_plugin.train.options import DEFAULT_LOSS

    t_ids = torch.randint(0, vocab, (bsz, seq, k), generator=g)  # k = stored top-k + tail samples
    t_lps = torch.log_softmax(torch.randn(bsz, seq, k, generator=g) * 2, -1)
    t_ids[:, : seq // 4 - 1] = PAD_ID  # positions before the answer carry no teacher row
    batch = {
        "input_ids": ids,
        "labels": labels,
        "attention_mask": torch.ones_like(ids),
        IDS: t_ids,
        WEIGHTS: t_lps.exp(),
        LOGPROBS: t_lps,
        SAMPLED: (torch.arange(k) >= min(DEFAULT_STORED_TOPK, k)).float().expand(bsz, seq, k).clone(),
        TEMPERATURE: torch.full((bsz,), DEFAULT_LOSS.temperature),
    }
    return model, {key: v.to(args.device) for key, v in batch.items()}, cfg


def step_fn(mode, model, batch, args, forward=None):
    """The timed step: HF's SFT loss, or `forward` (default: the stored-target ssb_forward; mode
    "ssb_nodiag": without the diagnostics)."""
    from ssb_plugin.train.forward import TARGET_MAKERS, distill_forward
    from ssb_plugin.train.options import LossOptions

    options = LossOptions(chunk_size=args.chunk)
    if forward is None:

        def forward(model, inputs, options):  # as SSBTrainer.compute_loss calls it
            from ssb_plugin.record import TeacherMode

            stats = None if mode == "ssb_nodiag" else {}
            return distill_forward(model, inputs, options, TARGET_MAKERS[TeacherMode.STORED], stats)

    def sft():
        out = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]
        )
        out.loss.backward()

    def ssb():
        loss, _, _, n, _ = forward(model, dict(batch), options)
        (loss / max(n, 1)).backward()

    return sft if mode == "sft" else ssb


def sync(args):
    import torch

    if args.device.startswith("cuda"):
        torch.cuda.synchronize()


def rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def run_memory(args) -> dict:
    """One mode, fresh process (CPU): RSS high-water mark over `steps` steps."""
    import torch

    torch.set_num_threads(args.threads)
    model, batch, _ = build(args)
    fn = step_fn(args.memory_mode, model, batch, args)
    try:  # reset the high-water mark to the current RSS (Linux >= 4.0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    base = rss_kib("VmRSS")
    for _ in range(2):
        fn()
        model.zero_grad(set_to_none=True)
    peak = rss_kib("VmHWM")
    return {"base_gib": base / 2**20, "peak_gib": peak / 2**20, "step_gib": (peak - base) / 2**20}


def main() -> None:
    from ssb_plugin.curate.config import DEFAULT_STORED_TOPK, DEFAULT_TAIL_SAMPLES
    from ssb_plugin.train.options import DEFAULT_LOSS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="model shape (default: smollm2 on CPU, qwen3b on CUDA)",
    )
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    ap.add_argument(
        "--dtype", choices=["fp32", "bf16"], default=None, help="default: fp32 on CPU, bf16 on CUDA"
    )
    ap.add_argument("--batch", type=int, default=None, help="default: 2 on CPU, 4 on CUDA")
    ap.add_argument("--seq", type=int, default=None, help="default: 256 on CPU, 2048 on CUDA")
    ap.add_argument(
        "--k",
        type=int,
        default=DEFAULT_STORED_TOPK + DEFAULT_TAIL_SAMPLES,
        help="target width per answer token (default: the curation default top-k + tail samples)",
    )
    ap.add_argument("--chunk", type=int, default=DEFAULT_LOSS.chunk_size, help="ssb_chunk_size")
    ap.add_argument("--lora-r", type=int, default=None, help="default: 16 on CPU, 32 on CUDA")
    ap.add_argument(
        "--grad-ckpt", action=argparse.BooleanOptionalAction, default=None, help="default: on for CUDA"
    )
    ap.add_argument("--steps", type=int, default=4, help="timed steps per mode")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    ap.add_argument("--no-shape-check", action="store_true")
    ap.add_argument(
        "--memory-mode", choices=["sft", "ssb"], help=argparse.SUPPRESS
    )  # internal: CPU memory child
    args = ap.parse_args()

    import torch

    cuda = torch.cuda.is_available() if args.device is None else args.device.startswith("cuda")
    args.device = args.device or ("cuda" if cuda else "cpu")
    args.preset = args.preset or ("qwen3b" if cuda else "smollm2")
    args.dtype = args.dtype or ("bf16" if cuda else "fp32")
    args.batch = args.batch or (4 if cuda else 2)
    args.seq = args.seq or (2048 if cuda else 256)
    args.lora_r = args.lora_r or (32 if cuda else 16)
    args.grad_ckpt = cuda if args.grad_ckpt is None else args.grad_ckpt

    if args.memory_mode:
        print(json.dumps(run_memory(args)))
        return

    torch.set_num_threads(args.threads)
    model, batch, cfg = build(args)
    modes = ("sft", "ssb", "ssb_nodiag")
    fns = {m: step_fn(m, model, batch, args) for m in modes}
    times: dict[str, list[float]] = {m: [] for m in modes}
    peaks = {}
    for i in range(args.warmup + args.steps):
        for mode in modes if i % 2 == 0 else modes[::-1]:  # alternate the order too
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
            sync(args)
            t0 = time.perf_counter()
            fns[mode]()
            sync(args)
            dt = time.perf_counter() - t0
            model.zero_grad(set_to_none=True)
            if i >= args.warmup:
                times[mode].append(dt)
                if cuda:
                    peaks[mode] = max(peaks.get(mode, 0), torch.cuda.max_memory_allocated() / 2**30)
                    peaks[mode + "_step"] = max(
                        peaks.get(mode + "_step", 0), (torch.cuda.max_memory_allocated() - base) / 2**30
                    )

    if not cuda:  # a fresh process per mode: the RSS high-water mark is per process
        for mode in ("sft", "ssb"):
            cmd = [sys.executable, __file__, "--memory-mode", mode] + [
                f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
                if k in ("preset", "device", "dtype", "batch", "seq", "k", "chunk", "lora_r", "threads")
            ] + (["--grad-ckpt"] if args.grad_ckpt else ["--no-grad-ckpt"])  # fmt: skip
            res = json.loads(
                subprocess.run(cmd, capture_output=True, text=True, check=True)
                .stdout.strip()
                .splitlines()[-1]
            )
            peaks[mode], peaks[mode + "_step"] = res["peak_gib"], res["step_gib"]

    biggest = None
    if not args.no_shape_check:
        from torch.utils._python_dispatch import TorchDispatchMode

        class VocabTensors(TorchDispatchMode):
            def __init__(self):
                super().__init__()
                self.shapes = []

            def __torch_dispatch__(self, func, types, a=(), kw=None):
                out = func(*a, **(kw or {}))
                # views (expand, transpose) of an input allocate nothing: only new storage counts
                inputs = {
                    x.untyped_storage().data_ptr()
                    for x in torch.utils._pytree.tree_leaves((a, kw))
                    if isinstance(x, torch.Tensor)
                }
                for t in out if isinstance(out, (tuple, list)) else [out]:
                    if isinstance(t, torch.Tensor) and t.dim() >= 2 and t.shape[-1] == cfg.vocab_size:
                        if t.untyped_storage().data_ptr() not in inputs:
                            self.shapes.append(tuple(t.shape))
                return out

        with VocabTensors() as mode:
            fns["ssb"]()
        model.zero_grad(set_to_none=True)
        # the (tied) embedding matrix [V, H] is a parameter, not an activation: skip its shape
        acts = [s for s in mode.shapes if s != (cfg.vocab_size, cfg.hidden_size)]
        biggest = max(acts, key=lambda s: torch.Size(s).numel()) if acts else None

    t_sft, t_ssb = statistics.median(times["sft"]), statistics.median(times["ssb"])
    bsv = (args.batch, args.seq, cfg.vocab_size)
    print(f"device={args.device} ({torch.cuda.get_device_name() if cuda else 'cpu'}) preset={args.preset} "
          f"dtype={args.dtype} batch={args.batch} seq={args.seq} k={args.k} chunk={args.chunk} lora_r={args.lora_r} "
          f"grad_ckpt={args.grad_ckpt} threads={args.threads} steps={args.steps}")  # fmt: skip
    m_sft, m_ssb = min(times["sft"]), min(times["ssb"])
    print(
        f"step time   SFT {t_sft * 1e3:9.1f} ms   SSB {t_ssb * 1e3:9.1f} ms   ratio SSB/SFT {t_ssb / t_sft:.3f} (median)"
    )
    print(
        f"            SFT {m_sft * 1e3:9.1f} ms   SSB {m_ssb * 1e3:9.1f} ms   ratio SSB/SFT {m_ssb / m_sft:.3f} (fastest)"
    )
    t_nd = statistics.median(times["ssb_nodiag"])
    print(
        f"diagnostics SSB {t_ssb * 1e3:9.1f} ms   without {t_nd * 1e3:9.1f} ms   ratio {t_ssb / t_nd:.3f} (median)"
    )
    print(
        "            all (ms): "
        + "   ".join(f"{k} " + ",".join(f"{x * 1e3:.0f}" for x in v) for k, v in times.items())
    )
    print(
        f"peak memory SFT {peaks['sft']:7.2f} GiB   SSB {peaks['ssb']:7.2f} GiB   ratio {peaks['ssb'] / peaks['sft']:.3f}"
        f"   (step's own: SFT {peaks['sft_step']:.2f} GiB, SSB {peaks['ssb_step']:.2f} GiB)"
    )
    if biggest is not None or not args.no_shape_check:
        print(f"largest vocab-sized activation in the SSB step: {biggest}  ((B, S, V) would be {bsv})")
        if biggest is not None and len(biggest) == 3 and biggest[1] > 1:
            print("FAIL: a (B, S, V) tensor was created")
            sys.exit(1)


if __name__ == "__main__":
    main()
