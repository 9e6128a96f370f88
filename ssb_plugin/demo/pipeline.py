"""The whole SSB pipeline on the embedded default model (SmolLM2-135M-Instruct), offline, on CPU.

    ssb-demo runs/demo        (`make demo` builds the environments, then runs this)

Stages: easy problems (training pairs only) -> ssb-curate (vLLM) on them and on the shipped
held-out pairs -> axolotl train (CPU recipe) -> axolotl merge-lora -> lm_eval (vLLM) on the base
and the trained model -> the student's held-out KL to the teacher, before and after -> report.md.
Each stage prints a banner and its time lands in timings.json. Run from a checkout (the recipe is
read from `recipes/`); generation runs in the vLLM environment, training in this one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ssb_plugin.atomic import atomic_write_text
from ssb_plugin.data import packaged
from ssb_plugin.demo.easy import write_easy

HELDOUT_TASK = "ssb_easy_heldout"


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


class Stages:
    """Runs named stages with a banner; their wall times go to `timings.json` as they finish."""

    def __init__(self, path: Path, initial: dict[str, float]):
        self.path, self.times, self.start = path, dict(initial), time.monotonic()

    def __call__(self, name: str, fn, *args) -> None:
        print(f"\n==> [{time.strftime('%H:%M:%S')}] {name}", flush=True)
        t0 = time.monotonic()
        fn(*args)
        self.times[name] = round(time.monotonic() - t0, 1)
        self.save()

    def save(self, total: bool = False) -> None:
        times = dict(self.times)
        if total:
            times["total"] = round(sum(self.times.values()), 1)
        atomic_write_text(self.path, json.dumps(times, indent=2))


def _sh(cmd: list, timeout: int = 3600) -> None:
    print("$ " + " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, timeout=timeout)


def write_problems(s: Settings) -> None:
    write_easy(s.run / "problems.jsonl", s.problems, seed=0, train_only=True)
    rows = packaged("easy_heldout.jsonl").read_text(encoding="utf-8").splitlines()[: s.heldout]
    atomic_write_text(s.run / "heldout.jsonl", "".join(r + "\n" for r in rows))


def curate(s: Settings, problems: str, out: str) -> None:
    # SmolLM2 rarely writes \boxed{}: the last-number fallback is on for this demo (off by default).
    # Its verified hinted answers to these problems run 12-170 tokens; longer ones ramble (too_long).
    venv_bin = s.vllm_bin if s.backend == "vllm" else s.train_bin
    _sh(
        [venv_bin / "ssb-curate", "--model", s.model, "--data", s.run / problems, "--out", s.run / out]
        + ["--id-field", "id", "--backend", s.backend, "--answer-fallback", "--num-rollouts", "4"]
        + ["--rollout-max-tokens", "128", "--teacher-max-tokens", "256", "--max-model-len", "2048"]
        + ["--overwrite"]
    )


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


def train(s: Settings) -> None:
    import yaml

    atomic_write_text(s.run / "train.yml", yaml.safe_dump(train_config(s), sort_keys=False))
    shutil.rmtree(s.run / "prepared", ignore_errors=True)  # this run's own cache, rebuilt each time
    _sh([s.train_bin / "axolotl", "train", s.run / "train.yml"])


def merge(s: Settings) -> None:
    _sh([s.train_bin / "axolotl", "merge-lora", s.run / "train.yml"], timeout=1800)


def evaluate(s: Settings, name: str, model_dir: str) -> None:
    """lm_eval on vLLM: the held-out problems the run curated, the others' first `eval_limit`."""
    limited = {t: list(range(s.eval_limit)) for t in s.tasks if t != HELDOUT_TASK}
    limited[HELDOUT_TASK] = list(range(s.heldout))
    model_args = (
        f"pretrained={model_dir},dtype=float32,max_model_len=2048,gpu_memory_utilization=0.3,"
        "enforce_eager=True,seed=0"
    )
    from ssb_plugin.tasks import include_path

    _sh(
        [s.vllm_bin / "lm_eval", "--model", "vllm", "--model_args", model_args]
        + ["--include_path", include_path(), "--tasks", ",".join(limited)]
        + ["--samples", json.dumps(limited), "--apply_chat_template", "--batch_size", "auto"]
        + [
            "--gen_kwargs",
            f"max_gen_toks={s.gen_toks}",
            "--output_path",
            s.run / "eval" / name,
            "--log_samples",
        ]
    )


def heldout_kl(s: Settings) -> None:
    import yaml

    temperature = yaml.safe_load(s.recipe.read_text()).get("ssb_temperature", 2.0)
    _sh(
        [s.train_bin / "python", "-m", "ssb_plugin.demo.heldout_kl", "--data", s.run / "heldout_curated"]
        + ["--model", f"base={s.model}", "--model", f"ssb={s.run / 'lora' / 'merged'}"]
        + ["--temperature", str(temperature), "--out", s.run / "heldout_kl.json"]
    )


def run(s: Settings, setup_seconds: float | None = None) -> Path:
    from ssb_plugin.demo.report import build_report

    s.run.mkdir(parents=True, exist_ok=True)
    stages = Stages(s.run / "timings.json", {"setup": setup_seconds} if setup_seconds is not None else {})
    print(f"model: {s.model}\nrun dir: {s.run}", flush=True)
    stages("problems", write_problems, s)
    stages("curate", curate, s, "problems.jsonl", "curated")
    stages("curate_heldout", curate, s, "heldout.jsonl", "heldout_curated")
    stages("train", train, s)
    stages("merge", merge, s)
    stages("eval_base", evaluate, s, "base", s.model)
    stages("eval_ssb", evaluate, s, "ssb", str(s.run / "lora" / "merged"))
    stages("heldout_kl", heldout_kl, s)
    stages.save(total=True)
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


def parse_args(argv: list[str] | None) -> tuple[Settings, float | None]:
    ap = argparse.ArgumentParser(prog="ssb-demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, nargs="?", default=Path("runs/demo"), help="run directory")
    ap.add_argument("--model", default=os.environ.get("SSB_MODEL"), help="default: the embedded model")
    ap.add_argument("--problems", type=int, default=_env_default("SSB_DEMO_PROBLEMS", 48))
    ap.add_argument(
        "--heldout", type=int, default=_env_default("SSB_DEMO_HELDOUT", 40), help="held-out problems (≤ 40)"
    )
    ap.add_argument("--eval-limit", type=int, default=_env_default("SSB_DEMO_EVAL_LIMIT", 20))
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

    s = Settings(
        run=a.run.resolve(),
        model=a.model or default_model(),
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
    return s, a.setup_seconds


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
    s, setup_seconds = parse_args(argv)
    # axolotl's launcher execs `accelerate` from PATH
    os.environ["PATH"] = f"{s.train_bin}{os.pathsep}{os.environ.get('PATH', '')}"
    t0 = time.monotonic()
    try:
        report = run(s, setup_seconds)
    except subprocess.CalledProcessError as e:
        print(f"ssb-demo: {e.cmd[0]} failed with exit status {e.returncode}", file=sys.stderr)
        return 1
    except subprocess.TimeoutExpired as e:
        print(f"ssb-demo: {e.cmd[0]} did not finish within {e.timeout:.0f} s", file=sys.stderr)
        return 1
    print(f"\n==> done in {time.monotonic() - t0:.0f} s: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
