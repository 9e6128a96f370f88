"""The whole SSB pipeline on the embedded default model (SmolLM2-135M-Instruct), offline, on CPU.

    ssb-demo runs/demo        (`make demo` builds the environments, then runs this)

Stages, in two lanes that run at once (ssb_plugin.demo.lanes), each with half of the CPUs' threads:
  main: easy problems (training pairs only) -> ssb-curate (vLLM) -> axolotl train (CPU recipe)
        -> axolotl merge-lora -> lm_eval (vLLM) on the trained model
  side: ssb-curate on the shipped held-out pairs -> lm_eval on the base model -> (once the merge
        is done) the student's held-out KL to the teacher, before and after training
then report.md. Each stage prints a banner and its time lands in timings.json (with the wall
time). Run from a checkout (the recipe is read from `recipes/`); generation runs in the vLLM
environment, training in this one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ssb_plugin.atomic import atomic_write_text
from ssb_plugin.data import packaged
from ssb_plugin.demo.easy import write_easy
from ssb_plugin.demo.lanes import Cancelled, Lane, StageClock, run_side_by_side, split_cpus

HELDOUT_TASK = "ssb_easy_heldout"
# Each vLLM engine in one process. vLLM's default on CPU spawns an engine process and a worker
# process, each importing torch and vLLM again: 27 s of an 89 s held-out eval on an idle core, more
# beside the other lane. Same outputs and tokens/s (measured); the env half is read at vLLM import.
VLLM_IN_PROCESS = {"distributed_executor_backend": "uni"}
VLLM_IN_PROCESS_ENV = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}


@dataclass
class Settings:
    run: Path
    model: str
    problems: int
    heldout: int  # the first N of the 40 shipped held-out problems (all by default)
    eval_limit: int
    tasks: list[str]
    gen_toks: int
    backend: str
    recipe: Path
    train_bin: Path  # bin/ of the training venv (axolotl, python)
    vllm_bin: Path  # bin/ of the generation venv (ssb-curate on vLLM, lm_eval on vLLM)


def write_problems(lane: Lane, s: Settings) -> None:
    write_easy(s.run / "problems.jsonl", s.problems, seed=0, train_only=True)
    rows = packaged("easy_heldout.jsonl").read_text(encoding="utf-8").splitlines()[: s.heldout]
    atomic_write_text(s.run / "heldout.jsonl", "".join(r + "\n" for r in rows))


def curate_command(
    venv_bin: Path,
    model: str,
    data: Path,
    out: Path,
    backend: str,
    teacher_max_tokens: int = 256,
    teacher_attempts: int = 1,
) -> list:
    """The demo's `ssb-curate` (benchmarks/effect.py runs the same).

    SmolLM2 rarely writes \boxed{}: the last-number fallback is on (off by default). Its verified
    hinted answers to these problems run 12-170 tokens; longer ones ramble (too_long)."""
    return (
        [venv_bin / "ssb-curate", "--model", model, "--data", data, "--out", out]
        + ["--id-field", "id", "--backend", backend, "--answer-fallback", "--num-rollouts", "4"]
        + [
            "--rollout-max-tokens",
            "128",
            "--teacher-max-tokens",
            str(teacher_max_tokens),
            "--teacher-attempts",
            str(teacher_attempts),
            "--max-model-len",
            "2048",
        ]
        + (["--vllm-kwargs", json.dumps(VLLM_IN_PROCESS)] if backend == "vllm" else [])
    )


def curate(lane: Lane, s: Settings, problems: str, out: str) -> None:
    venv_bin = s.vllm_bin if s.backend == "vllm" else s.train_bin
    lane.sh(curate_command(venv_bin, s.model, s.run / problems, s.run / out, s.backend) + ["--overwrite"])


def train_config(s: Settings) -> dict:
    """The CPU recipe, pointed at this run's model, data and output directories."""
    import yaml

    cfg = yaml.safe_load(s.recipe.read_text())
    cfg["base_model"] = s.model
    cfg["datasets"][0]["path"] = str(s.run / "curated")
    cfg["dataset_prepared_path"] = str(s.run / "prepared")
    cfg["output_dir"] = str(s.run / "lora")
    # A demo set holds a handful of records: the paper's 3 epochs in single-record steps, each
    # logged, so every epoch's mean loss is over the same records.
    cfg.update(num_epochs=3, micro_batch_size=1, gradient_accumulation_steps=1, logging_steps=1)
    return cfg


def train(lane: Lane, s: Settings) -> None:
    import yaml

    atomic_write_text(s.run / "train.yml", yaml.safe_dump(train_config(s), sort_keys=False))
    shutil.rmtree(s.run / "prepared", ignore_errors=True)  # this run's own cache, rebuilt each time
    lane.sh([s.train_bin / "axolotl", "train", s.run / "train.yml"])


def merge(lane: Lane, s: Settings, done: threading.Event) -> None:
    lane.sh([s.train_bin / "axolotl", "merge-lora", s.run / "train.yml"], timeout=1800)
    done.set()


def lm_eval_command(
    vllm_bin: Path, model_dir: str, samples: dict[str, list[int]], gen_toks: int, out: Path
) -> list:
    """The demo's `lm_eval` on vLLM (greedy, per-sample logs) of `samples` {task: doc indices}."""
    from ssb_plugin.tasks import include_path

    model_args = (
        f"pretrained={model_dir},dtype=float32,max_model_len=2048,gpu_memory_utilization=0.3,"
        "enforce_eager=True,seed=0," + ",".join(f"{k}={v}" for k, v in VLLM_IN_PROCESS.items())
    )
    return (
        [vllm_bin / "lm_eval", "--model", "vllm", "--model_args", model_args]
        + ["--include_path", include_path(), "--tasks", ",".join(samples)]
        + ["--samples", json.dumps(samples), "--apply_chat_template", "--batch_size", "auto"]
        + ["--gen_kwargs", f"max_gen_toks={gen_toks}", "--output_path", out, "--log_samples"]
    )


def evaluate(lane: Lane, s: Settings, name: str, model_dir: str) -> None:
    """lm_eval on vLLM: the held-out problems the run curated, the others' first `eval_limit`."""
    limited = {t: list(range(s.eval_limit)) for t in s.tasks if t != HELDOUT_TASK}
    limited[HELDOUT_TASK] = list(range(s.heldout))
    lane.sh(lm_eval_command(s.vllm_bin, model_dir, limited, s.gen_toks, s.run / "eval" / name))


def heldout_kl(lane: Lane, s: Settings, merged: threading.Event) -> None:
    import yaml

    lane.wait_for(merged, "the merged model")
    temperature = yaml.safe_load(s.recipe.read_text()).get("ssb_temperature", 2.0)
    lane.sh(
        [s.train_bin / "python", "-m", "ssb_plugin.demo.heldout_kl", "--data", s.run / "heldout_curated"]
        + ["--model", f"base={s.model}", "--model", f"ssb={s.run / 'lora' / 'merged'}"]
        + ["--temperature", str(temperature), "--out", s.run / "heldout_kl.json"]
    )


def run(s: Settings, before: dict[str, float] | None = None) -> Path:
    from ssb_plugin.demo.report import build_report

    s.run.mkdir(parents=True, exist_ok=True)
    os.environ.update(VLLM_IN_PROCESS_ENV)  # the lanes' commands inherit it
    clock = StageClock(s.run / "timings.json", before or {})
    main_cpus, side_cpus = split_cpus(sorted(os.sched_getaffinity(0)))
    main = Lane("main", main_cpus, clock)
    side = Lane("side", side_cpus, clock, log_dir=s.run / "logs", niceness=10)
    print(
        f"model: {s.model}\nrun dir: {s.run}\nthreads: main lane {len(main_cpus)}, side lane {len(side_cpus)}",
        flush=True,
    )
    main.stage("problems", write_problems, s)
    merged = threading.Event()

    def main_lane() -> None:
        main.stage("curate", curate, s, "problems.jsonl", "curated")
        main.stage("train", train, s)
        main.stage("merge", merge, s, merged)
        main.stage("eval_ssb", evaluate, s, "ssb", str(s.run / "lora" / "merged"))

    def side_lane() -> None:
        side.stage("curate_heldout", curate, s, "heldout.jsonl", "heldout_curated")
        side.stage("eval_base", evaluate, s, "base", s.model)
        side.stage("heldout_kl", heldout_kl, s, merged)

    run_side_by_side(main, main_lane, side, side_lane)
    clock.finish()
    return build_report(
        s.run / "report.md",
        s.run / "curated",
        s.run / "lora",
        {"base": s.run / "eval" / "base", "ssb": s.run / "eval" / "ssb"},
        s.run / "timings.json",
        heldout_kl=s.run / "heldout_kl.json",
        heldout_curated=s.run / "heldout_curated",
    )


def _env_default(name: str, default):
    return type(default)(os.environ.get(name, default))


def parse_args(argv: list[str] | None) -> tuple[Settings, dict[str, float]]:
    """The settings, and the times of what ran before the stages (setup, the embedded model's conversion)."""
    ap = argparse.ArgumentParser(prog="ssb-demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, nargs="?", default=Path("runs/demo"), help="run directory")
    ap.add_argument("--model", default=os.environ.get("SSB_MODEL"), help="default: the embedded model")
    ap.add_argument("--problems", type=int, default=_env_default("SSB_DEMO_PROBLEMS", 48))
    ap.add_argument(
        "--heldout", type=int, default=_env_default("SSB_DEMO_HELDOUT", 40), help="held-out problems (≤ 40)"
    )
    # GSM8K / MATH-500 are beyond a 135M model (0 of 20 each, measured): their rows stay, at a size
    # that keeps the warm demo within 10 minutes; the held-out task carries the signal
    ap.add_argument(
        "--eval-limit",
        type=int,
        default=_env_default("SSB_DEMO_EVAL_LIMIT", 10),
        help="GSM8K / MATH-500 problems evaluated (the first N)",
    )
    ap.add_argument("--tasks", default=_env_default("SSB_DEMO_TASKS", "ssb_gsm8k,ssb_math500"))
    ap.add_argument("--gen-toks", type=int, default=_env_default("SSB_DEMO_GEN_TOKS", 256))
    ap.add_argument(
        "--backend", default=_env_default("SSB_CURATE_BACKEND", "vllm"), choices=["vllm", "transformers"]
    )
    ap.add_argument("--recipe", type=Path, default=Path("recipes/ssb_smollm2_cpu.yml"))
    ap.add_argument("--train-venv", type=Path, default=Path(sys.prefix), help="default: this environment")
    ap.add_argument("--vllm-venv", type=Path, default=Path(os.environ.get("SSB_VLLM_VENV", ".venv-vllm")))
    ap.add_argument("--setup-seconds", type=float, help="time the environment setup took (for the report)")
    a = ap.parse_args(argv)
    if not a.recipe.is_file():
        ap.error(f"recipe {a.recipe} not found: run from a checkout or pass --recipe")
    from ssb_plugin.embedded import default_model

    before = {} if a.setup_seconds is None else {"setup": a.setup_seconds}
    t0 = time.monotonic()
    model = a.model or default_model()  # the first run converts the embedded GGUF (tens of seconds)
    if not a.model:
        before["embedded_model"] = round(time.monotonic() - t0, 1)
    s = Settings(
        run=a.run.resolve(),
        model=model,
        problems=a.problems,
        heldout=min(a.heldout, 40),
        eval_limit=a.eval_limit,
        tasks=[t for t in a.tasks.split(",") if t],
        gen_toks=a.gen_toks,
        backend=a.backend,
        recipe=a.recipe.resolve(),
        train_bin=a.train_venv.resolve() / "bin",
        vllm_bin=a.vllm_venv.resolve() / "bin",
    )
    return s, before


def main(argv: list[str] | None = None) -> int:
    for key, value in {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "AXOLOTL_DO_NOT_TRACK": "1",
        "DO_NOT_TRACK": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "VLLM_CPU_KVCACHE_SPACE": "1",
    }.items():
        os.environ.setdefault(key, value)
    s, before = parse_args(argv)
    # axolotl's launcher execs `accelerate` from PATH
    os.environ["PATH"] = f"{s.train_bin}{os.pathsep}{os.environ.get('PATH', '')}"
    t0 = time.monotonic()
    try:
        report = run(s, before)
    except subprocess.CalledProcessError as e:
        print(f"ssb-demo: {e.cmd[0]} failed with exit status {e.returncode}", file=sys.stderr)
        return 1
    except subprocess.TimeoutExpired as e:
        print(f"ssb-demo: {e.cmd[0]} did not finish within {e.timeout:.0f} s", file=sys.stderr)
        return 1
    except Cancelled as e:
        print(f"ssb-demo: {e}", file=sys.stderr)
        return 1
    print(f"\n==> done in {time.monotonic() - t0:.0f} s: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
