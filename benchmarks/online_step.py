"""The online-teacher step (`ssb_teacher: online`) vs the plain SFT step: time and peak memory, in one run.

    python benchmarks/online_step.py                       # CPU: SmolLM2-135M shape, fp32, LoRA r16
    python benchmarks/online_step.py --preset qwen3b --seq 2048 --batch 4 --grad-ckpt   # GPU

The model, LoRA and student batch are benchmarks/train_step.py's (`build`). The teacher's view of each
row is its hinted prompt: the student's prompt with `--hint` times as many extra prompt tokens in
front (the correct and the wrong attempt), followed by the same answer. Online step = the teacher
pass (adapter disabled, no gradient) + the student pass + the chunked full-vocabulary KL
(ssb_plugin.train.forward.online_forward); SFT = HF's loss on full logits. Timing alternates the two;
peak memory: CUDA allocator peak, or on CPU the RSS high-water mark of a fresh process per mode.
GPU goal: online <= 1.6x SFT time with memory <= SFT's. With `--rollout-tokens N` a third step is
timed: on-policy (`ssb_rollouts: student`): the student samples N tokens per row with HF `generate`
(adapter on, no gradient), then the online step runs on the rebuilt batch (ssb_plugin.train.rollouts).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import train_step  # noqa: E402
from train_step import build, rss_kib, sync  # noqa: E402  (the shared model/batch of the step benchmarks)


def online_batch(batch: dict, hint: float) -> dict:
    """The student batch plus a teacher view: `hint` x the prompt length of extra prompt tokens in front."""
    import torch

    from ssb_plugin.train.batch_keys import TEACHER_PREFIX

    ids, labels = batch["input_ids"], batch["labels"]
    prompt = int((labels[0] == -100).sum())
    extra = ids[:, 1 : 1 + int(hint * prompt)].roll(1, dims=1)  # some other in-vocabulary tokens
    t_ids = torch.cat([extra, ids], dim=1)
    t_labels = torch.cat([torch.full_like(extra, -100), labels], dim=1)
    student = {k: v for k, v in batch.items() if k in ("input_ids", "labels", "attention_mask")}
    teacher = {"input_ids": t_ids, "labels": t_labels, "attention_mask": torch.ones_like(t_ids)}
    return {**student, **{TEACHER_PREFIX + k: v for k, v in teacher.items()}}


def step_fn(mode, model, batch, args):
    from ssb_plugin.train.forward import distill_forward
    from ssb_plugin.train.online import online_target

    def forward(model, inputs, options):  # as training runs it: the diagnostics on (their default)
        if mode == "onpolicy":
            from ssb_plugin.train.rollouts import on_policy_batch

            eos = model.config.eos_token_id  # a random-weight model: it samples all N tokens
            inputs, _ = on_policy_batch(
                model, inputs, max_new_tokens=args.rollout_tokens, temperature=1.0, pad_id=0, eos_id=eos
            )
        return distill_forward(model, inputs, options, online_target, {})

    return train_step.step_fn(mode, model, batch, args, forward=forward)


def setup(args):
    import torch

    torch.set_num_threads(args.threads)
    model, batch, _ = build(args)
    return model, online_batch(batch, args.hint)


def run_memory(args) -> dict:
    """One mode, fresh process (CPU): RSS high-water mark over two steps."""
    model, batch = setup(args)
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
    return {"peak_gib": rss_kib("VmHWM") / 2**20, "step_gib": (rss_kib("VmHWM") - base) / 2**20}


def timed(args, model, batch) -> tuple[dict, dict]:
    import torch

    cuda = args.device.startswith("cuda")
    modes = ("sft", "online", "onpolicy") if args.rollout_tokens else ("sft", "online")
    fns = {m: step_fn(m, model, batch, args) for m in modes}
    times: dict[str, list[float]] = {m: [] for m in modes}
    peaks: dict[str, float] = {}
    for i in range(args.warmup + args.steps):
        for mode in modes if i % 2 == 0 else modes[::-1]:
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            sync(args)
            t0 = time.perf_counter()
            fns[mode]()
            sync(args)
            model.zero_grad(set_to_none=True)
            if i >= args.warmup:
                times[mode].append(time.perf_counter() - t0)
                if cuda:
                    peaks[mode] = max(peaks.get(mode, 0), torch.cuda.max_memory_allocated() / 2**30)
    return times, peaks


def main() -> None:
    from ssb_plugin.train.options import DEFAULT_LOSS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default=None, choices=("smollm2", "qwen3b", "tiny"))
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", default=None, choices=("fp32", "bf16"))
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--seq", type=int, default=None)
    ap.add_argument(
        "--hint", type=float, default=2.0, help="extra teacher prompt tokens, x the prompt length"
    )
    ap.add_argument("--chunk", type=int, default=DEFAULT_LOSS.chunk_size, help="ssb_chunk_size")
    ap.add_argument("--lora-r", type=int, default=None)
    ap.add_argument("--grad-ckpt", action=argparse.BooleanOptionalAction, default=None)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    ap.add_argument(
        "--rollout-tokens", type=int, default=0, help="also time the on-policy step (N sampled tokens)"
    )
    ap.add_argument("--memory-mode", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    import torch

    cuda = (args.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    defaults = dict(
        preset="qwen3b" if cuda else "smollm2", device="cuda" if cuda else "cpu", dtype="bf16" if cuda else "fp32",
        batch=4 if cuda else 2, seq=2048 if cuda else 256, lora_r=32 if cuda else 16, grad_ckpt=cuda,
    )  # fmt: skip
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.k = 1  # train_step.build's stored-target width: unused here
    if args.memory_mode:
        print(json.dumps(run_memory(args)))
        return
    model, batch = setup(args)
    times, peaks = timed(args, model, batch)
    if not cuda:  # a fresh process per mode: the RSS high-water mark is per process
        flags = [
            f"--{k.replace('_', '-')}={getattr(args, k)}"
            for k in ("preset", "device", "dtype", "batch", "seq")
        ]
        flags += [f"--hint={args.hint}", f"--chunk={args.chunk}", f"--lora-r={args.lora_r}"]
        flags += [f"--threads={args.threads}", "--grad-ckpt" if args.grad_ckpt else "--no-grad-ckpt"]
        flags += [f"--rollout-tokens={args.rollout_tokens}"]
        for mode in times:
            cmd = [sys.executable, __file__, "--memory-mode", mode, *flags]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()
            peaks[mode] = json.loads(out[-1])["peak_gib"]
    t_sft, t_on = statistics.median(times["sft"]), statistics.median(times["online"])
    result = {
        "device": args.device, "preset": args.preset, "dtype": args.dtype, "batch": args.batch, "seq": args.seq,
        "teacher_seq": batch["ssb_teacher_input_ids"].shape[1], "grad_ckpt": args.grad_ckpt,
        "threads": args.threads, "steps": args.steps,
        "sft_ms": round(t_sft * 1e3, 1), "online_ms": round(t_on * 1e3, 1), "time_ratio": round(t_on / t_sft, 3),
        "sft_peak_gib": round(peaks["sft"], 3), "online_peak_gib": round(peaks["online"], 3),
        "memory_ratio": round(peaks["online"] / peaks["sft"], 3),
        "all_ms": {k: [round(x * 1e3) for x in v] for k, v in times.items()},
    }  # fmt: skip
    if args.rollout_tokens:
        t_op = statistics.median(times["onpolicy"])
        result |= {
            "rollout_tokens": args.rollout_tokens, "onpolicy_ms": round(t_op * 1e3, 1),
            "onpolicy_time_ratio": round(t_op / t_sft, 3), "onpolicy_peak_gib": round(peaks["onpolicy"], 3),
        }  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
