"""The plugin under a real 2-process launch: `axolotl train --launcher torchrun` on CPU (gloo DDP).

This is the scale-out path users take on GPUs (`--launcher torchrun -- --nproc_per_node 8`),
checked here as far as a CPU host allows: both ranks start, the data is sharded between them
(half the optimizer steps per epoch), and the SSB loss trains the adapter.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support.axolotl_cpu import TINY_LORA
from support.curated_fixture import cached_curated_set

from ssb_plugin.train.training_log import read_log_history

pytestmark = pytest.mark.slow

N_RECORDS = 8


def _config(model: Path, curated: Path, out: Path) -> dict:
    return {
        "base_model": str(model),
        "tokenizer_type": "AutoTokenizer",
        "chat_template": "tokenizer_default",
        "plugins": ["ssb_plugin.SSBPlugin"],
        "datasets": [{"path": str(curated), "type": "ssb_plugin.dataset"}],
        "dataset_prepared_path": str(out / "prepared"),
        **TINY_LORA,
        "micro_batch_size": 1,
        "gradient_accumulation_steps": 1,
        "num_epochs": 1,
        "output_dir": str(out / "lora"),
    }


def test_two_process_torchrun_launch_shards_data_and_trains(tiny_model_dir, tmp_path, tmp_path_factory):
    curated = cached_curated_set(tiny_model_dir, tmp_path_factory.getbasetemp() / "curated", n=N_RECORDS, k=8)
    cfg_path = tmp_path / "config.yml"
    cfg_path.write_text(yaml.safe_dump(_config(tiny_model_dir, curated, tmp_path)))
    bindir = Path(sys.executable).parent
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "AXOLOTL_DO_NOT_TRACK": "1",
        "DO_NOT_TRACK": "1",
        "OMP_NUM_THREADS": "1",  # two ranks on two cores
        "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    cmd = [
        str(bindir / "axolotl"),
        "train",
        str(cfg_path),
        "--launcher",
        "torchrun",
        "--",
        "--nproc_per_node",
        "2",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]

    steps = [h for h in read_log_history(tmp_path / "lora") if "ssb_kd" in h]
    # one epoch of 8 records at micro-batch 1: 8 steps alone, 4 when two ranks share the data
    assert [h["step"] for h in steps] == [1, 2, 3, 4], steps
    # ssb_kd is the stored target's unbiased estimate: near the teacher (the tiny model is peaked) a
    # step, or the sum of these four, may dip below 0; it must be computed (finite, not all zero)
    assert all(math.isfinite(h["ssb_kd"]) and h["ssb_answer_tokens"] > 0 for h in steps)
    assert any(h["ssb_kd"] != 0 for h in steps)
    assert (tmp_path / "lora" / "adapter_model.safetensors").exists()
