"""`ssb-curate`: build the SSB teacher/student set (config file and/or flags; flags win).

ssb-curate --config curate.yaml --out runs/ssb-set
ssb-curate --model Qwen/Qwen2.5-3B-Instruct --limit 2000 --out runs/ssb-set --shard 0/4
ssb-curate merge --out runs/ssb-set runs/ssb-set-0 runs/ssb-set-1 ...
"""

from __future__ import annotations

import argparse
import json
import sys

from ssb_plugin.curate.config import ConfigError, CurateConfig

# flag -> (type, help); the flag name is the config key with dashes
_FLAGS: dict[str, tuple] = {
    "out": (str, "output directory (resumed if it exists)"),
    "model": (str, "model id or local directory (default: the embedded SmolLM2-135M-Instruct)"),
    "revision": (str, "model revision"),
    "backend": (str, "vllm | transformers | auto (vllm when importable)"),
    "dtype": (str, "auto | float32 | bfloat16 | float16 (auto: fp32 on CPU)"),
    "data": (str, "hub dataset id or local .jsonl/.parquet (default openai/gsm8k)"),
    "data_config": (str, "hub dataset config (default main)"),
    "split": (str, "hub dataset split (default train)"),
    "question_field": (str, "question column (default question)"),
    "answer_field": (str, "gold column (default answer)"),
    "id_field": (str, "id column (default: <source>:<row index>)"),
    "gold_format": (str, "auto | gsm8k (after ####) | boxed | plain"),
    "limit": (int, "use the first N source rows"),
    "shard": (str, "i/N: this machine's part of the problem list (chunks c with c mod N == i)"),
    "num_rollouts": (int, "K rollouts per problem (paper 4)"),
    "rollout_temperature": (float, "paper 0.8"),
    "rollout_top_k": (int, "paper 50; 0 = off"),
    "rollout_max_tokens": (int, "max new tokens per rollout"),
    "teacher_temperature": (float, "paper 0.4"),
    "teacher_top_k": (int, "paper 50; 0 = off"),
    "teacher_max_tokens": (int, "max new tokens of the teacher answer (longer: dropped as too_long)"),
    "stored_topk": (int, "teacher log-probs stored per answer token, the top ones (default 64)"),
    "tail_samples": (int, "teacher tail ids sampled per answer token (default 64)"),
    "target_temperatures": (
        lambda s: [float(t) for t in s.split(",")],
        "comma-separated temperatures whose exact log-normaliser is stored (default 1,2)",
    ),
    "seed": (int, "global seed; per-request seeds derive from it and the problem id"),
    "grade_timeout": (float, "seconds per answer comparison"),
    "system_prompt": (str, "override the tutor system prompt"),
    "chunk_size": (int, "problems per checkpoint shard (default 64)"),
    "batch_size": (int, "transformers: sequences per generate() call (default 64)"),
    "device": (str, "transformers: auto | cpu | cuda | cuda:1 ..."),
    "threads": (int, "transformers on CPU: torch threads (on a busy 2-core box 1 is much faster than 2)"),
    "tensor_parallel_size": (int, "vLLM tensor parallel size"),
    "data_parallel_size": (int, "vLLM data parallel size"),
    "max_model_len": (int, "vLLM max_model_len (prompts that do not fit count as too_long)"),
    "gpu_memory_utilization": (float, "vLLM memory fraction (on CPU: of host memory; default there 0.3)"),
    "vllm_kwargs": (json.loads, "extra vLLM LLM() arguments as JSON, e.g. '{\"swap_space\": 4}'"),
    "push_to_hub": (str, "upload the finished set to this hub dataset repo"),
}
_BOOLS = {
    "answer_fallback": "accept the last number when no boxed/phrased answer is found (off by default)",
    "leak_filter": "drop teacher answers that mention the attempts/students (on by default)",
    "enforce_eager": "vLLM enforce_eager (default: on for CPU)",
    "overwrite": "wipe an existing output directory instead of resuming",
    "progress": "progress bars (on by default)",
    "hub_private": "create the hub repo private (default on)",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ssb-curate",
        description="Build the Semantic Soft Bootstrapping teacher/student set (see docs/curation.md). "
        "Subcommand `ssb-curate merge --out DIR SRC...` merges --shard runs.",
    )
    p.add_argument("--config", help="YAML or JSON file with any of the settings below (flags override it)")
    for key, (typ, help_) in _FLAGS.items():
        p.add_argument("--" + key.replace("_", "-"), dest=key, type=typ, default=None, help=help_)
    for key, help_ in _BOOLS.items():
        p.add_argument(
            "--" + key.replace("_", "-"),
            dest=key,
            action=argparse.BooleanOptionalAction,
            default=None,
            help=help_,
        )
    return p


def config_from_args(argv: list[str] | None) -> CurateConfig:
    args = vars(build_parser().parse_args(argv))
    file_values = CurateConfig.from_file(args.pop("config")) if args.get("config") else {}
    args.pop("config", None)
    return CurateConfig.build(file_values, **args)


def summary_table(manifest) -> str:
    counts = manifest.counts
    total = sum(counts.values())
    width = max(len(k) for k in counts) + 2
    lines = [f"{'outcome':<{width}}{'problems':>9}{'share':>8}"]
    for k, v in counts.items():
        lines.append(f"{k:<{width}}{v:>9}{(100 * v / total if total else 0):>7.1f}%")
    lines.append(f"{'total':<{width}}{total:>9}")
    t = manifest.timings
    stats = manifest.extra.get("stats", {})
    lines.append(
        "time: "
        + ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in t.items())
        + f"; rollouts {stats.get('rollouts', 0)} ({stats.get('rollouts_correct', 0)} correct, "
        f"{stats.get('rollouts_no_answer', 0)} without answer), kept answer tokens {stats.get('kept_tokens', 0)}"
    )
    return "\n".join(lines)


def _merge_main(argv: list[str]) -> int:
    from ssb_plugin.curate.merge import merge

    p = argparse.ArgumentParser(
        prog="ssb-curate merge", description="merge the output dirs of --shard i/N runs"
    )
    p.add_argument("--out", required=True)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("sources", nargs="+")
    a = p.parse_args(argv)
    m = merge(a.sources, a.out, overwrite=a.overwrite)
    print(summary_table(m), file=sys.stderr)
    print(a.out)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["merge"]:
            return _merge_main(argv[1:])
        cfg = config_from_args(argv)
        from ssb_plugin.curate.pipeline import curate

        manifest = curate(cfg)
        print(summary_table(manifest), file=sys.stderr)
        if cfg.push_to_hub:
            from ssb_plugin.curate.hub import push

            url = push(cfg.out, cfg.push_to_hub, private=cfg.hub_private)
            print(f"pushed to {url}", file=sys.stderr)
        print(cfg.out)
        return 0
    except ConfigError as e:
        print(f"ssb-curate: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
