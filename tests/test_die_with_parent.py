"""The engine watcher on its own (no vLLM): a process started inside
`engine_children_die_with_us()` dies when its starter is killed with -9; one started before or
after the block does not, and a module beside the watcher's file named like a standard one
(`types`) cannot break it. The vLLM run of the same guarantee is tests/test_curate_vllm_orphans.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="the watcher needs /proc (Linux)"
)

# Starts one child before, one inside and one after the block, prints their pids, then waits.
STARTER = """
import subprocess, sys, time
from ssb_plugin.curate.backends.die_with_parent import engine_children_die_with_us
sleep = [sys.executable, "-c", "import time; time.sleep(300)"]
before = subprocess.Popen(sleep)
with engine_children_die_with_us():
    inside = subprocess.Popen(sleep)
    time.sleep(1.0)  # the watcher looks every 0.2 s
after = subprocess.Popen(sleep)
print(before.pid, inside.pid, after.pid, flush=True)
time.sleep(300)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_kill9_of_the_starter_kills_exactly_what_started_inside_the_block():
    shadow = REPO / "ssb_plugin" / "curate" / "backends" / "types.py"
    assert not shadow.exists()  # (the watcher runs isolated; this keeps the name free too)
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    starter = subprocess.Popen(
        [sys.executable, "-c", STARTER], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert starter.stdout is not None
    line = starter.stdout.readline()
    assert line, starter.stderr.read() if starter.stderr else "starter printed nothing"
    before, inside, after = map(int, line.split())
    try:
        starter.kill()
        starter.wait()
        gone_by = time.time() + 10
        while _alive(inside) and time.time() < gone_by:
            time.sleep(0.1)
        assert not _alive(inside), "the child started inside the block outlived its killed starter"
        assert _alive(before) and _alive(after), "the watcher killed a process started outside the block"
    finally:
        for pid in (before, inside, after):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
