"""kill -9 of ssb-curate on vLLM leaves no `VLLM::EngineCore` behind, and the
resume needs no clean-up by hand.

Run in .venv-vllm: `.venv-vllm/bin/python -m pytest -m vllm tests/test_curate_vllm_orphans.py`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.curate_cli import CURATE_ENV

pytestmark = pytest.mark.vllm

ENV = CURATE_ENV


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, state) of a live process, None when gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(fields[1]), fields[0]


def _engine_child(parent: int) -> int | None:
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and (_stat(int(d.name)) or (0, ""))[0] == parent:
            try:
                title = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "EngineCore" in title:
                return int(d.name)
    return None


def _alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[1] != "Z"  # a zombie is dead (only not reaped yet)


def test_kill9_leaves_no_engine_and_resume_just_works(tiny_model_dir, tmp_path):
    data = tmp_path / "p.jsonl"
    data.write_text(
        "".join(json.dumps({"question": f"{i}+{i}?", "answer": f"#### {2 * i}"}) + "\n" for i in range(3))
    )
    out = tmp_path / "set"
    cmd = [
        sys.executable, "-m", "ssb_plugin.curate.cli", "--model", str(tiny_model_dir), "--data", str(data),
        "--out", str(out), "--backend", "vllm", "--num-rollouts", "2", "--rollout-max-tokens", "6",
        "--teacher-max-tokens", "6", "--stored-topk", "4", "--chunk-size", "1", "--max-model-len", "256",
        "--gpu-memory-utilization", "0.05", "--no-progress",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    engine, deadline = None, time.time() + 300
    while engine is None:
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.time() < deadline, "no EngineCore child appeared"
        time.sleep(0.2)
        engine = _engine_child(proc.pid)
    try:
        time.sleep(3)  # let the engine finish starting: it is most stubborn once it runs
        proc.kill()
        proc.wait()
        gone_by = time.time() + 30
        while _alive(engine) and time.time() < gone_by:
            time.sleep(0.2)
        assert not _alive(engine), f"EngineCore {engine} outlived its killed parent"
    finally:
        if _alive(engine):
            os.kill(engine, signal.SIGKILL)  # only the engine this test started
    rerun = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["extra"]["complete"] and sum(manifest["counts"].values()) == 3
