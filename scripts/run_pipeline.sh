#!/usr/bin/env bash
# `make demo`: build the environments, then run the demo pipeline (ssb_plugin/demo/pipeline.py,
# console script `ssb-demo`) on the embedded default model, offline, on CPU.
#
# Usage: scripts/run_pipeline.sh [RUN_DIR]        (default runs/demo)
# Knobs (environment, or ssb-demo's flags): SSB_DEMO_PROBLEMS, SSB_DEMO_EVAL_LIMIT, SSB_DEMO_TASKS,
# SSB_DEMO_GEN_TOKS, SSB_MODEL, SSB_CURATE_BACKEND; `ssb-demo --help` lists them.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
RUN=${1:-runs/demo}
echo "==> [$(date +%T)] setup"
t0=$SECONDS
bash scripts/setup_env.sh all
exec .venv/bin/python -m ssb_plugin.demo.pipeline "$RUN" --vllm-venv .venv-vllm --setup-seconds "$((SECONDS - t0))"
