"""Does SSB move held-out accuracy beyond noise? Base vs SFT on the teacher's text vs SSB (stored
target) vs SSB (online teacher) vs on-policy SSB, on the embedded model, several training seeds,
paired standard errors.

    .venv/bin/python benchmarks/effect.py --run runs/effect                 # the full benchmark (hours on CPU)
    .venv/bin/python benchmarks/effect.py --run runs/effect-smoke --smoke   # the plumbing on a few problems

Not in CI. Every stage is a real command: `ssb-curate` (vLLM) on the wider addition family's
training pairs (ssb_plugin.demo.easy, a, b <= 20) and on its held-out pairs; per arm and seed
`axolotl train` (the CPU recipe: 3 epochs, single-record steps, `seed:`) and `axolotl merge-lora`;
`lm_eval` (vLLM, greedy) on `ssb_add20_heldout` (200 shipped held-out problems the curation never
sees) and slices of `ssb_gsm8k` / `ssb_math500`; the held-out KL to the teacher
(ssb_plugin.demo.heldout_kl) per model. The arms differ only in their loss keys:

    sft     ssb_kd_weight 0, ssb_ce_weight 1   (the same records, cross-entropy on the teacher's text)
    stored  the recipe's SSB loss on the stored target
    online  ssb_teacher: online                (exact full-vocabulary KL, the base model as teacher)
    onpolicy  + ssb_rollouts: student          (the student's own samples, scored by the hinted base model)

The table: per arm, accuracy per task (mean over seeds, and each seed's), its change against the
base model and against SFT with the paired standard error over problems (each problem's score
averaged over the seeds first), and the held-out KL per token. A stage whose output exists is
skipped, so a stopped run resumes; `--fresh` is not offered: delete the run directory to start over.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# no telemetry: offline, Axolotl's exit waits on its retries
for _key in ("AXOLOTL_DO_NOT_TRACK", "DO_NOT_TRACK", "VLLM_NO_USAGE_STATS"):
    os.environ.setdefault(_key, "1")

HELDOUT_TASK = "ssb_add20_heldout"
ARMS = {
    "sft": {"ssb_kd_weight": 0.0, "ssb_ce_weight": 1.0},
    "stored": {},
    "online": {"ssb_teacher": "online"},
    "onpolicy": {"ssb_teacher": "online", "ssb_rollouts": "student"},
}


def sh(cmd: list, log: Path, env: dict | None = None) -> None:
    """Run one stage's command, its output in `log`; a failure names the log. The command's own bin/
    goes first on PATH (axolotl's launcher starts `accelerate` from there)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {"PATH": f"{Path(cmd[0]).parent}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {})}
    start = time.monotonic()
    print(f"[effect] {' '.join(str(c) for c in cmd[:3])} ... -> {log}", flush=True)
    with log.open("w") as f:
        proc = subprocess.run(
            [str(c) for c in cmd], stdout=f, stderr=subprocess.STDOUT, env={**os.environ, **env}
        )
    if proc.returncode:
        raise SystemExit(f"[effect] failed (exit {proc.returncode}): see {log}")
    print(f"[effect]   done in {time.monotonic() - start:.0f} s", flush=True)


def curate(args, data: Path, out: Path) -> None:
    """The demo's curation (ssb_plugin.demo.pipeline.curate_command) on `data`, with vLLM."""
    from ssb_plugin.demo.pipeline import curate_command

    if (out / "manifest.json").exists():
        return
    cmd = curate_command(
        args.vllm_bin, args.model, data, out, "vllm", args.teacher_max_tokens, args.teacher_attempts
    )
    if out.name == "curated":  # the training set: stop once --records are kept (whole chunks)
        cmd += ["--max-kept", str(args.records)]
    sh(cmd + ["--no-progress"], args.run / "logs" / f"curate_{out.name}.log")


def train_config(args, arm: str, seed: int) -> dict:
    import yaml

    cfg = yaml.safe_load((ROOT / "recipes" / "ssb_smollm2_cpu.yml").read_text())
    where = args.run / "models" / f"{arm}-{seed}"
    cfg.update(
        base_model=args.model,
        datasets=[{**cfg["datasets"][0], "path": str(args.run / "curated")}],
        dataset_prepared_path=str(where / "prepared"),
        output_dir=str(where / "lora"),
        num_epochs=args.epochs,
        micro_batch_size=1,
        gradient_accumulation_steps=1,
        logging_steps=1,
        seed=seed,
        **ARMS[arm],
    )
    return cfg


def train(args, arm: str, seed: int) -> Path:
    """axolotl train + merge-lora; returns the merged model's directory."""
    import yaml

    cfg = train_config(args, arm, seed)
    lora = Path(cfg["output_dir"])
    merged = lora / "merged"
    if (merged / "config.json").exists():
        return merged
    path = lora.parent / "train.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    logs = args.run / "logs"
    sh([args.train_bin / "axolotl", "train", path], logs / f"train_{arm}-{seed}.log")
    sh([args.train_bin / "axolotl", "merge-lora", path], logs / f"merge_{arm}-{seed}.log")
    return merged


def evaluate(args, name: str, model_dir: str) -> Path:
    """The demo's lm_eval on vLLM, greedy: every held-out problem and the first `--slice` of the others."""
    from ssb_plugin.demo.pipeline import VLLM_IN_PROCESS_ENV, lm_eval_command

    out = args.run / "eval" / name
    if list(out.rglob(f"samples_{HELDOUT_TASK}_*.jsonl")):
        return out
    samples = {HELDOUT_TASK: list(range(args.heldout))} | {t: list(range(args.slice)) for t in args.tasks}
    cmd = lm_eval_command(args.vllm_bin, model_dir, samples, args.gen_toks, out)
    sh(cmd, args.run / "logs" / f"eval_{name}.log", env=VLLM_IN_PROCESS_ENV)
    return out


def heldout_kl(args, models: dict[str, str]) -> dict:
    path = args.run / "heldout_kl.json"
    done = json.loads(path.read_text()) if path.exists() else None
    if done is not None and set(done["kl"]) >= set(models):
        return done
    import yaml

    from ssb_plugin.demo.heldout_kl import heldout_kl as measure

    recipe = yaml.safe_load((ROOT / "recipes" / "ssb_smollm2_cpu.yml").read_text())
    result = measure(args.run / "heldout_curated", models, temperature=float(recipe["ssb_temperature"]))
    path.write_text(json.dumps(result))
    return result


def table(args, evals: dict[str, Path], kl: dict) -> dict:
    """Per arm and task: accuracy (mean over seeds, per seed), change vs base and vs SFT (paired SE)."""
    from ssb_plugin.demo.compare import lm_eval_item_scores, mean_se, paired_change

    tasks = [HELDOUT_TASK, *args.tasks]
    scores = {
        name: {t: lm_eval_item_scores(path, t, "exact_match") for t in tasks} for name, path in evals.items()
    }

    def over_seeds(arm: str, task: str) -> dict:
        runs = [scores[f"{arm}-{s}"][task] for s in args.seeds]
        return {k: sum(r[k] for r in runs) / len(runs) for k in runs[0]}

    report: dict = {"seeds": args.seeds, "records": kept(args.run / "curated"), "tasks": {}}
    for task in tasks:
        base = scores["base"][task]
        rows = {"base": {"accuracy": mean_se(list(base.values())), "n": len(base)}}
        sft = over_seeds("sft", task) if "sft" in args.arms else None
        for arm in args.arms:
            items = over_seeds(arm, task)
            row = {
                "accuracy": mean_se(list(items.values())),
                "per_seed": [mean_se(list(scores[f"{arm}-{s}"][task].values()))[0] for s in args.seeds],
                "vs_base": paired_change(base, items),
            }
            if sft is not None and arm != "sft":
                row["vs_sft"] = paired_change(sft, items)
            rows[arm] = row
        report["tasks"][task] = rows
    report["heldout_kl"] = {name: mean_se(values) for name, values in kl["kl"].items()} | {
        "records": len(kl["ids"])
    }
    return report


def kept(curated: Path) -> int:
    return int(json.loads((curated / "manifest.json").read_text())["counts"]["kept"])


def print_table(report: dict) -> None:
    def pm(x):
        return f"{100 * x[0]:.1f} ± {100 * x[1]:.1f}"

    print(f"\nrecords trained on: {report['records']}; seeds: {report['seeds']}")
    for task, rows in report["tasks"].items():
        print(f"\n{task} (n={rows['base']['n']}), accuracy % (mean ± SE over problems):")
        for arm, row in rows.items():
            extra = ""
            if "vs_base" in row:
                extra += f"  vs base {pm(row['vs_base'])}"
            if "vs_sft" in row:
                extra += f"  vs SFT {pm(row['vs_sft'])}"
            if "per_seed" in row:
                extra += "  seeds " + ", ".join(f"{100 * x:.1f}" for x in row["per_seed"])
            print(f"  {arm:<7} {pm(row['accuracy'])}{extra}")
    kl = report["heldout_kl"]
    print(f"\nheld-out KL per token at T=2 ({kl['records']} records), mean ± SE over records:")
    for name, value in kl.items():
        if name != "records":
            print(f"  {name:<10} {value[0]:.4f} ± {value[1]:.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="run directory (resumed if it exists)")
    ap.add_argument("--model", default=None, help="default: the embedded SmolLM2-135M-Instruct")
    ap.add_argument(
        "--problems",
        type=int,
        default=500,
        help="training problems at most (SmolLM2 keeps ~8 %% of this family with one teacher attempt)",
    )
    ap.add_argument("--records", type=int, default=48, help="curation stops once this many are kept")
    ap.add_argument("--min-kept", type=int, default=40, help="stop unless curation keeps at least this many")
    ap.add_argument("--heldout", type=int, default=200, help="held-out problems evaluated (<= 200)")
    ap.add_argument("--heldout-kl", type=int, default=40, help="held-out problems curated for the KL")
    ap.add_argument("--tasks", nargs="*", default=["ssb_gsm8k", "ssb_math500"], help="sliced tasks")
    ap.add_argument("--slice", type=int, default=100, help="problems of each sliced task")
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--gen-toks", type=int, default=256)
    ap.add_argument("--teacher-max-tokens", type=int, default=256)
    ap.add_argument(
        "--teacher-attempts",
        type=int,
        default=4,
        help="hinted answers per problem (ssb-curate --teacher-attempts): the 135M teacher rambles",
    )
    ap.add_argument("--train-venv", type=Path, default=Path(sys.prefix))
    ap.add_argument("--vllm-venv", type=Path, default=ROOT / ".venv-vllm")
    ap.add_argument("--smoke", action="store_true", help="a few problems, one seed: checks the plumbing")
    args = ap.parse_args()
    if args.smoke:
        args.problems, args.min_kept, args.records, args.heldout, args.heldout_kl = 24, 1, 24, 20, 12
        args.slice, args.seeds, args.epochs = 4, [0], 1
    args.train_bin, args.vllm_bin = args.train_venv / "bin", args.vllm_venv / "bin"

    from ssb_plugin.demo.easy import wide_heldout_problems, wide_train_problems, write_jsonl
    from ssb_plugin.embedded import converted_dir

    args.model = args.model or str(converted_dir())
    args.run.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    write_jsonl(args.run / "problems.jsonl", wide_train_problems(args.problems, seed=0))
    write_jsonl(args.run / "heldout.jsonl", wide_heldout_problems()[: args.heldout_kl])
    curate(args, args.run / "problems.jsonl", args.run / "curated")
    if kept(args.run / "curated") < args.min_kept:
        raise SystemExit(
            f"[effect] curation kept {kept(args.run / 'curated')} records, fewer than --min-kept "
            f"{args.min_kept}: raise --problems (see {args.run / 'curated' / 'manifest.json'})"
        )
    curate(args, args.run / "heldout.jsonl", args.run / "heldout_curated")
    evals = {"base": evaluate(args, "base", args.model)}
    models = {"base": args.model}
    for seed in args.seeds:  # seed-major: a run stopped early has whole seeds of every arm
        for arm in args.arms:
            merged = train(args, arm, seed)
            evals[f"{arm}-{seed}"] = evaluate(args, f"{arm}-{seed}", str(merged))
            models[f"{arm}-{seed}"] = str(merged)
    report = table(args, evals, heldout_kl(args, models))
    report["wall_s"] = round(time.monotonic() - start)
    (args.run / "effect.json").write_text(json.dumps(report, indent=1))
    print_table(report)


if __name__ == "__main__":
    main()
