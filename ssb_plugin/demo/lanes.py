"""Two lanes of demo stages side by side, each with its own share of the CPUs.

Run one after the other, the demo's stages keep one of two cores mostly idle (a 135M model's
generation and training do not fill two cores). Its two independent chains (the training side:
curate -> train -> merge -> evaluate; the held-out side: curate -> evaluate the base model ->
held-out KL) therefore run at once, each lane's torch and vLLM kept to as many threads as it has
CPUs (`OMP_NUM_THREADS`). The main lane prints to the terminal; the side lane's commands write to
a log file per stage, named in its banner and quoted when it fails, and run at a lower priority:
the main lane is the longer one, so where the two compete, its processes go first.
A failure or Ctrl-C in either lane stops the other lane's running command (its process group).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ssb_plugin.atomic import atomic_write_text


class Cancelled(RuntimeError):
    """The other lane failed, so this one stopped."""


LANES_KEY = "lanes"  # timings.json: {stage: seconds, ..., "lanes": {stage: lane name}}


class StageClock:
    """Each stage's wall time (seconds) and lane in a JSON file, saved as stages finish, from either lane."""

    def __init__(self, path: Path, initial: dict[str, float]):
        self.path, self.times, self.start = path, dict(initial), time.monotonic()
        self.lanes: dict[str, str] = {}
        self._lock = threading.Lock()

    def record(self, name: str, seconds: float, lane: str) -> None:
        with self._lock:
            self.times[name] = round(seconds, 1)
            self.lanes[name] = lane
            self._save(self.times)

    def finish(self) -> None:
        """Adds `wall`: the pipeline's elapsed time, less than the stages' sum where lanes overlap."""
        with self._lock:
            self._save({**self.times, "wall": round(time.monotonic() - self.start, 1)})

    def _save(self, times: dict) -> None:
        atomic_write_text(self.path, json.dumps({**times, LANES_KEY: self.lanes}, indent=2))


def print_tail(log: Path, lines: int = 40) -> None:
    """The end of a failed side-lane command's log, on stderr, with the file's name."""
    tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    print(f"--- last {len(tail)} lines of {log} ---", *tail, "---", sep="\n", file=sys.stderr, flush=True)


def split_cpus(cpus: list[int]) -> tuple[list[int], list[int]]:
    """The first half of the CPUs for the main lane, the rest for the side lane (one CPU: both)."""
    cpus = sorted(cpus)
    if len(cpus) < 2:
        return cpus, cpus
    half = len(cpus) // 2
    return cpus[:half], cpus[half:]


class Lane:
    """Runs stages (banner, timing) and their commands with this lane's CPUs and output."""

    def __init__(
        self, name: str, cpus: list[int], clock: StageClock, log_dir: Path | None = None, niceness: int = 0
    ):
        self.name, self.cpus, self.clock, self.log_dir = name, cpus, clock, log_dir
        self.niceness = niceness
        self.cancelled = threading.Event()
        self._proc: subprocess.Popen | None = None
        self._stage = ""
        self._lock = threading.Lock()

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.cpus:
            # torch's threads (training, the KL, in-process vLLM): one more thread than cores
            # against the other lane's busy vLLM made the held-out KL 4x slower (36 s -> 164 s)
            env["OMP_NUM_THREADS"] = str(len(self.cpus))
        return env

    def log_path(self, stage: str) -> Path | None:
        return None if self.log_dir is None else self.log_dir / f"{stage}.log"

    def stage(self, name: str, fn: Callable, *args) -> None:
        log = self.log_path(name)
        if log is not None and log.exists():
            log.unlink()  # this run's log only (the file is the demo's own, in its run directory)
        where = f" ({self.name} lane; output: {log})" if log is not None else ""
        print(f"\n==> [{time.strftime('%H:%M:%S')}] {name}{where}", flush=True)
        self._stage, t0 = name, time.monotonic()
        fn(self, *args)
        self.clock.record(name, time.monotonic() - t0, self.name)
        if log is not None:
            print(f"\n==> [{time.strftime('%H:%M:%S')}] {name} done ({self.name} lane)", flush=True)

    def sh(self, cmd: list, timeout: int = 3600) -> None:
        """Run one command to completion in its own process group; raise CalledProcessError on failure."""
        cmd = [str(c) for c in cmd]
        if self.niceness:  # set before exec, so the command never runs a moment at the caller's priority
            cmd = ["nice", "-n", str(self.niceness), *cmd]
        log = self.log_path(self._stage)
        if log is None:
            print("$ " + " ".join(cmd), flush=True)
            out = None
        else:
            log.parent.mkdir(parents=True, exist_ok=True)
            out = log.open("a", encoding="utf-8")
            out.write("$ " + " ".join(cmd) + "\n")
            out.flush()
        try:
            with self._lock:
                if self.cancelled.is_set():
                    raise Cancelled(f"{self.name} lane stopped before {self._stage}")
                self._proc = subprocess.Popen(
                    cmd,
                    env=self.env(),
                    stdout=out,
                    stderr=subprocess.STDOUT if out else None,
                    start_new_session=True,
                )
            try:
                rc = self._proc.wait(timeout=timeout)
            except BaseException:  # the timeout, or Ctrl-C in the main lane: the group is ours to stop
                self._kill()
                raise
        finally:
            if out is not None:
                out.close()
        if rc != 0:
            if self.cancelled.is_set():
                raise Cancelled(f"{self.name} lane stopped during {self._stage}")
            if log is not None:
                print_tail(log)
            raise subprocess.CalledProcessError(rc, cmd)

    def wait_for(self, event: threading.Event, what: str) -> None:
        """Block until `event` (set by the other lane), unless this lane is stopped first."""
        while not event.wait(0.5):
            if self.cancelled.is_set():
                raise Cancelled(f"{self.name} lane stopped waiting for {what}")

    def stop(self) -> None:
        """From the other lane: no new commands, and the running one's process group ends."""
        with self._lock:
            self.cancelled.set()
        self._kill()

    def _kill(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass


def run_side_by_side(
    main: Lane, main_fn: Callable[[], None], side: Lane, side_fn: Callable[[], None]
) -> None:
    """`side_fn` in a thread while `main_fn` runs here; the first failure stops the other lane.

    Raises the main lane's error, else the side lane's (whose log's tail is already on stderr)."""
    errors: list[BaseException] = []

    def side_body() -> None:
        try:
            side_fn()
        except BaseException as e:  # noqa: BLE001 - handed to the main thread below
            errors.append(e)
            main.stop()

    thread = threading.Thread(target=side_body, name=f"{side.name}-lane", daemon=True)
    thread.start()
    try:
        main_fn()
    except BaseException as main_error:
        side.stop()
        thread.join()
        if isinstance(main_error, Cancelled) and errors:
            raise errors[0] from None  # the side lane failed first: that is the cause
        raise
    thread.join()
    if errors:
        raise errors[0]
