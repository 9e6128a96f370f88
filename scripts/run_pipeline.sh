#!/usr/bin/env bash
# The whole SSB pipeline on the embedded default model (SmolLM2-135M-Instruct), offline, on CPU:
#   easy problems -> ssb-curate (vLLM) -> axolotl train (CPU recipe) -> axolotl merge-lora
#   -> lm_eval (vLLM) on the base and the trained model -> report.md
#
# Usage: scripts/run_pipeline.sh [RUN_DIR]        (default runs/demo; `make demo` calls this)
# Knobs (environment): SSB_DEMO_PROBLEMS (48), SSB_DEMO_EVAL_LIMIT (20), SSB_DEMO_TASKS
# (ssb_gsm8k,ssb_math500), SSB_DEMO_GEN_TOKS (256), SSB_DATA_DIR (local eval data; default
# ../shared/data when it exists), SSB_MODEL (default: the embedded model), SSB_CURATE_BACKEND (vllm).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
RUN=$(mkdir -p "${1:-runs/demo}" && cd "${1:-runs/demo}" && pwd)
N_PROBLEMS=${SSB_DEMO_PROBLEMS:-48}
EVAL_LIMIT=${SSB_DEMO_EVAL_LIMIT:-20}
TASKS=${SSB_DEMO_TASKS:-ssb_gsm8k,ssb_math500}
GEN_TOKS=${SSB_DEMO_GEN_TOKS:-256}
BACKEND=${SSB_CURATE_BACKEND:-vllm}
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} HF_DATASETS_OFFLINE=${HF_DATASETS_OFFLINE:-1}
export AXOLOTL_DO_NOT_TRACK=1 DO_NOT_TRACK=1 VLLM_NO_USAGE_STATS=1 TOKENIZERS_PARALLELISM=false
export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1}
export PATH="$ROOT/.venv/bin:$PATH"  # axolotl's launcher execs `accelerate` from PATH
if [ -z "${SSB_DATA_DIR:-}" ] && [ -d "$ROOT/../shared/data" ]; then export SSB_DATA_DIR=$ROOT/../shared/data; fi

TIMINGS=$RUN/timings.tsv
: > "$TIMINGS"
t_start=$SECONDS
stage() {  # stage NAME CMD...: run a step with a banner and record its wall time
  local name=$1; shift
  echo; echo "==> [$(date +%T)] $name"
  local t0=$SECONDS
  "$@"
  printf '%s\t%s\n' "$name" "$((SECONDS - t0))" >> "$TIMINGS"
}

stage setup bash scripts/setup_env.sh all
MODEL=${SSB_MODEL:-$(.venv/bin/python -m ssb_plugin.embedded)}
echo "model: $MODEL"; echo "run dir: $RUN"

stage problems .venv/bin/python -m ssb_plugin.curate.easy "$RUN/problems.jsonl" "$N_PROBLEMS" 0

# SmolLM2 rarely writes \boxed{}: the last-number fallback is on for this demo (off by default).
curate_venv=.venv-vllm; [ "$BACKEND" = vllm ] || curate_venv=.venv
stage curate "$curate_venv/bin/ssb-curate" --model "$MODEL" --data "$RUN/problems.jsonl" --out "$RUN/curated" \
  --id-field id --backend "$BACKEND" --answer-fallback --num-rollouts 4 --rollout-max-tokens 128 --teacher-max-tokens 512 \
  --max-model-len 2048 --overwrite

# The CPU recipe, pointed at this run's model, data and output directories.
.venv/bin/python - "$RUN" "$MODEL" <<'PY'
import sys, yaml
run, model = sys.argv[1:]
cfg = yaml.safe_load(open("recipes/ssb_smollm2_cpu.yml"))
cfg["base_model"] = model
cfg["datasets"][0]["path"] = f"{run}/curated"
cfg["dataset_prepared_path"] = f"{run}/prepared"
cfg["output_dir"] = f"{run}/lora"
# A demo set holds a handful of records: take the paper's 3 epochs in single-record steps so the
# training curves have points to show.
cfg.update(num_epochs=3, micro_batch_size=1, gradient_accumulation_steps=1)
yaml.safe_dump(cfg, open(f"{run}/train.yml", "w"), sort_keys=False)
PY
rm -rf "$RUN/prepared"
stage train timeout 3600 .venv/bin/axolotl train "$RUN/train.yml"

# Evaluate on vLLM (an order of magnitude faster than HF generate on CPU): the base model, and the
# trained adapter merged into it by Axolotl's own merge-lora.
stage merge timeout 1800 .venv/bin/axolotl merge-lora "$RUN/train.yml"
evaluate() {  # evaluate NAME MODEL_DIR
  timeout 3600 .venv-vllm/bin/lm_eval --model vllm \
    --model_args "pretrained=$2,dtype=float32,max_model_len=2048,gpu_memory_utilization=0.3,enforce_eager=True,seed=0" \
    --include_path "$ROOT/tasks" --tasks "$TASKS" --limit "$EVAL_LIMIT" --apply_chat_template \
    --batch_size auto --gen_kwargs "max_gen_toks=$GEN_TOKS" --output_path "$RUN/eval/$1" --log_samples
}
stage eval_base evaluate base "$MODEL"
stage eval_ssb evaluate ssb "$RUN/lora/merged"

printf '%s\t%s\n' total "$((SECONDS - t_start))" >> "$TIMINGS"
.venv/bin/python - "$TIMINGS" "$RUN/timings.json" <<'PY'
import json, sys
rows = [line.split("\t") for line in open(sys.argv[1]).read().splitlines() if line]
json.dump({k: float(v) for k, v in rows}, open(sys.argv[2], "w"), indent=2)
PY
.venv/bin/python -m ssb_plugin.demo.report --out "$RUN/report.md" --curated "$RUN/curated" --train "$RUN/lora" \
  --eval "base=$RUN/eval/base" --eval "ssb=$RUN/eval/ssb" --timings "$RUN/timings.json"
echo; echo "==> done in $((SECONDS - t_start)) s: $RUN/report.md"
