#!/usr/bin/env bash
# The test command: build/refresh both venvs, lint, run the suite offline in each venv, and print
# one combined summary line. Extra arguments go to both pytest runs (e.g. -k grading, -x).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export AXOLOTL_DO_NOT_TRACK=1 DO_NOT_TRACK=1 VLLM_NO_USAGE_STATS=1 TOKENIZERS_PARALLELISM=false
bash scripts/setup_env.sh all || { echo "environment setup failed" >&2; exit 1; }
# Axolotl 0.21 (lean deps on Python 3.11) runs the plugin's tests a second time; SSB_SKIP_AX021=1 skips it.
[ "${SSB_SKIP_AX021:-0}" = 1 ] || bash scripts/setup_env.sh ax021 || { echo "axolotl 0.21 setup failed" >&2; exit 1; }
.venv/bin/ruff check . && .venv/bin/ruff format --check . || { echo "lint failed (ruff)" >&2; exit 1; }
.venv/bin/mypy || { echo "type check failed (mypy)" >&2; exit 1; }
out=$(mktemp -d)
# Two workers: most tests keep torch to one thread, so one process leaves a core idle. Tests on fixed
# TCP ports share one worker (tests/conftest.py, xdist_group "tcp-ports").
.venv/bin/python -m pytest -m "not vllm" -n 2 --dist loadgroup --junitxml="$out/train.xml" -p no:cacheprovider "$@"; rc1=$?
# The Axolotl 0.21 run goes beside the vLLM run (vLLM's CPU worker keeps to one core); its output
# is printed when both are done.
rc3=0
if [ "${SSB_SKIP_AX021:-0}" != 1 ]; then
  .venv-ax021/bin/python -m pytest -m "not vllm" --junitxml="$out/ax021.xml" -p no:cacheprovider \
    tests/test_loss.py tests/test_loss_model.py tests/test_dataset.py tests/test_collator.py \
    tests/test_plugin.py tests/test_distributed.py \
    tests/test_prepared_cache.py tests/test_tokenizer_check.py tests/test_empty_run.py \
    tests/test_axolotl_train.py::test_sft_config_plus_two_additions_trains_with_real_cli "$@" \
    > "$out/ax021.log" 2>&1 &
  ax021_pid=$!
fi
.venv-vllm/bin/python -m pytest -m "vllm and not ray" --junitxml="$out/vllm.xml" -p no:cacheprovider "$@"; rc2=$?
if [ -n "${ax021_pid:-}" ]; then
  wait "$ax021_pid"; rc3=$?
  echo "=== Axolotl 0.21 run (.venv-ax021) ==="
  cat "$out/ax021.log"
fi
# `ssb-curate --ray` on a local Ray cluster (transformers, 2 replicas, kills) goes last, alone: with
# another lane beside it on 2 cores a local cluster's start-up has failed (docs/scale-out.md). The
# vLLM-on-Ray run (two engines at once) is in `make test-ray` only.
.venv-vllm/bin/python -m pytest -m ray --junitxml="$out/ray.xml" -p no:cacheprovider tests/test_curate_ray.py "$@"; rc4=$?
[ $rc1 -eq 5 ] && rc1=0; [ $rc2 -eq 5 ] && rc2=0; [ $rc3 -eq 5 ] && rc3=0; [ $rc4 -eq 5 ] && rc4=0   # an empty selection is no failure
.venv/bin/python scripts/junit_summary.py "$out/train.xml" "$out/vllm.xml" "$out/ax021.xml" "$out/ray.xml"
[ $rc1 -eq 0 ] && [ $rc2 -eq 0 ] && [ $rc3 -eq 0 ] && [ $rc4 -eq 0 ]
