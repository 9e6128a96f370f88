"""The plugin's tests under Axolotl 0.21 (transformers 5.20), in the optional `.venv-ax021`.

Build it with `bash scripts/setup_env.sh ax021` (~2 min, lean deps); without it this test is skipped
with that instruction. It re-runs the plugin's unit tests and the real-CLI composition test there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

FILES = [
    "tests/test_loss.py",
    "tests/test_loss_model.py",
    "tests/test_dataset.py",
    "tests/test_collator.py",
    "tests/test_plugin.py",
    "tests/test_axolotl_train.py::test_sft_config_plus_two_additions_trains_with_real_cli",
]


def test_plugin_suite_under_axolotl_021(repo_root, tmp_path):
    venv = Path(os.environ.get("SSB_AX021_VENV", repo_root / ".venv-ax021"))
    python = venv / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no Axolotl 0.21 venv at {venv}: build it with `bash scripts/setup_env.sh ax021`")
    if Path(sys.executable).resolve().parent.parent == venv.resolve():
        pytest.skip("already running inside the 0.21 venv")
    version = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('axolotl'))"],
        capture_output=True, text=True, timeout=120,
    ).stdout.strip()  # fmt: skip
    assert version.startswith("0.21"), f"{venv} has axolotl {version!r}, expected 0.21.x"
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "t"), *FILES],
        cwd=repo_root, env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout.splitlines()[-1]
