"""The vLLM engine processes (and a local Ray cluster's) die with the process that started them,
however it dies.

vLLM runs its engine in child processes (`VLLM::EngineCore`, ~800 MB on CPU) that ignore SIGTERM
and outlive a kill -9 of ssb-curate: left alone, every killed run leaves one behind. No hook of ours
runs inside them (vLLM starts them with `spawn` on CPU), so a small watcher process does it: it
notes the processes started inside `engine_children_die_with_us()` and holds the read end of a
pipe from this process. When this process ends (normally, Ctrl-C or kill -9) the kernel closes the pipe; the watcher then SIGKILLs those
processes that are still alive (checked by pid and start time, so a reused pid is never hit) and
exits. The watcher starts before the engine and looks for new processes every 0.2 s until the block
ends, so a kill during the engine's start is covered too. It runs this file as a script: the
standard library only, a few MB, started isolated (`-I`) so that no module beside this file can
shadow a standard one. `ssb-curate --ray local` starts its Ray cluster inside such a block too:
Ray's per-node agents otherwise outlive a killed driver.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

_watchers: list[subprocess.Popen] = []  # kept open for the life of this process


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (with the pid, a unique identity)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _descendants(root: int) -> set[tuple[int, str]]:
    """(pid, start time) of every live descendant of `root`."""
    parent_of = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                parent_of[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
    found: set[tuple[int, str]] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, ppid in parent_of.items() if ppid in frontier} - {p for p, _ in found}
        found |= {(pid, start) for pid in frontier if (start := _start_time(pid))}
    return found


@contextlib.contextmanager
def engine_children_die_with_us() -> Iterator[None]:
    """Processes started inside the block are SIGKILLed when this process ends (Linux; else a no-op)."""
    if not Path("/proc/self/stat").exists():
        yield
        return
    before = _descendants(os.getpid())
    watcher = subprocess.Popen(
        [
            sys.executable,
            "-I",
            "-S",
            __file__,
            str(os.getpid()),
            *(f"{pid}:{start}" for pid, start in before),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,  # a Ctrl-C in the terminal reaches us and the engine, not it
        close_fds=True,
    )
    _watchers.append(watcher)
    seal, ack = watcher.stdin, watcher.stdout
    assert seal is not None and ack is not None  # both PIPE
    try:
        yield
    finally:
        # From now on it watches what it found, nothing new. Its last look comes after the seal
        # and we wait for it, so it sees all the block started and nothing started after it.
        with contextlib.suppress(OSError):
            seal.write(SEAL)
            seal.flush()
            ack.readline()  # b"" if the watcher is gone


SEAL = b"seal\n"


def _watch(parent: int, skip: set[tuple[int, str]]) -> None:
    """Collect the parent's new descendants until sealed; kill them once the parent is gone."""
    import select

    skip |= {(os.getpid(), _start_time(os.getpid()) or "")}  # "" matches no live process's start time
    found: set[tuple[int, str]] = set()
    sealed = False
    while True:
        ready, _, _ = select.select([0], [], [], None if sealed else 0.2)
        data = os.read(0, 4096) if ready else None
        if not sealed:
            found |= _descendants(parent) - skip
        if data == b"":  # every writer (the watched process) is gone
            break
        if not sealed and data and SEAL.strip() in data:
            sealed = True
            with contextlib.suppress(OSError):  # the block waits for this before it goes on
                os.write(1, SEAL)
    for pid, start in found:
        if _start_time(pid) == start:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    _watch(int(sys.argv[1]), {(int(p), s) for p, s in (t.split(":") for t in sys.argv[2:])})
