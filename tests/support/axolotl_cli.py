"""Run the real Axolotl CLI on a config dict, offline and single-threaded (shared small CPU boxes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ssb_plugin.train.training_log import read_log_history

ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "AXOLOTL_DO_NOT_TRACK": "1",
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
    # shared 2-core CI/dev boxes: OpenMP spin-waiting with 2 threads is ~10x slower than 1 thread
    "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
    # the launcher execs `accelerate` from PATH: the venv running the tests must come first
    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
}


def run_axolotl(
    cfg: dict,
    workdir: Path,
    *,
    launcher: bool,
    timeout: int = 420,
    command: str = "train",
    args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """`axolotl <command> config.yml *args` (launcher=True) or `python -m axolotl.cli.<command>`, in
    workdir; `env` adds to the test environment."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "config.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    bindir = Path(sys.executable).parent
    cmd = (
        [str(bindir / "axolotl"), command, str(path), *args]
        if launcher
        else [sys.executable, "-m", f"axolotl.cli.{command}", str(path), *args]
    )
    proc = subprocess.run(
        cmd, cwd=workdir, env={**ENV, **(env or {})}, capture_output=True, text=True, timeout=timeout
    )
    proc.output = proc.stdout + proc.stderr
    return proc


def training_log(cfg: dict) -> list[dict]:
    """What the run of `cfg` logged (loss, ssb_kd, eval_*, ... with step and epoch), read from the
    plugin's ssb_log_history.jsonl in its output_dir; [] when no step was logged there."""
    return read_log_history(cfg["output_dir"])


def axolotl_ok(cfg: dict, workdir: Path, *, launcher: bool, **kw) -> str:
    """run_axolotl that must succeed: its output, or the failure with the tail of the log."""
    proc = run_axolotl(cfg, workdir, launcher=launcher, **kw)
    assert proc.returncode == 0, f"{' '.join(proc.args)} failed:\n{proc.output[-6000:]}"
    return proc.output


def check_adapter(base_model: Path, adapter_dir: Path) -> None:
    """The adapter trained (lora_B moved off zero), loads on its base model and generates."""
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
    b = [v for k, v in weights.items() if "lora_B" in k]
    assert b and any(v.abs().sum() > 0 for v in b), "lora_B is still zero: the adapter did not train"
    tok = AutoTokenizer.from_pretrained(base_model)
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base_model), str(adapter_dir)
    ).eval()
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "What is 2 + 3?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        gen = model.generate(**ids, max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)
    assert gen.shape[1] > ids["input_ids"].shape[1]


def check_diagnostics(entry: dict, temperature: float, prefix: str = "") -> None:
    """A logged step's distillation diagnostics (ssb_plugin.train.trainer.diagnostic_logs): present,
    in range and consistent with the logged KD term."""
    d = {k[len(prefix) :]: v for k, v in entry.items() if k.startswith(prefix)}
    assert 0 < d["ssb_teacher_topk_mass"] <= 1 + 1e-6, entry
    assert d["ssb_teacher_tail_mass"] == pytest.approx(1 - d["ssb_teacher_topk_mass"], abs=1e-9)
    assert 0 < d["ssb_student_topk_mass"] <= 1 + 1e-6 and 0 <= d["ssb_topk_overlap"] <= 1, entry
    assert d["ssb_kl_mean"] * temperature**2 == pytest.approx(d["ssb_kd"], rel=1e-4, abs=1e-7)
    assert d["ssb_kl_max"] >= d["ssb_kl_mean"], entry
