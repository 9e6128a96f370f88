"""A small, thread-safe pool of grading worker subprocesses with hard per-request deadlines.

Each request waits on the worker's stdout pipe with ``select`` until its deadline; a worker that
overruns is killed and replaced. Nothing here uses signals, so it works from any thread, from
daemonic multiprocessing workers (which may not start ``multiprocessing`` children, but may start
plain subprocesses) and from the main thread alike. A forked child gets a fresh, empty pool.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

_PKG_ROOT = str(Path(__file__).resolve().parents[2])
_WORKER_CMD = [sys.executable, "-u", "-m", "ssb_plugin.grading._worker"]


class WorkerTimeout(Exception):
    """The request did not finish before its deadline."""


class WorkerError(Exception):
    """The worker died or answered with an error."""


class _Worker:
    def __init__(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = _PKG_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.proc = subprocess.Popen(
            _WORKER_CMD,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            bufsize=0,
            close_fds=True,
        )
        # Popen types its pipes Optional; both exist because both were asked for above.
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._stdin, self._stdout = self.proc.stdin, self.proc.stdout
        self._buf = b""
        self.ready = False

    def _readline(self, deadline: float) -> bytes | None:
        fd = self._stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            readable, _, _ = select.select([fd], [], [], left)
            if not readable:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise WorkerError("worker exited")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def wait_ready(self, deadline: float) -> bool:
        if not self.ready:
            line = self._readline(deadline)
            if line is None:
                return False
            if line.strip() != b"ready":
                raise WorkerError(f"unexpected worker greeting {line[:80]!r}")
            self.ready = True
        return True

    def request(self, payload: dict, deadline: float) -> dict:
        self._stdin.write((json.dumps(payload) + "\n").encode())
        line = self._readline(deadline)
        if line is None:
            raise WorkerTimeout
        return json.loads(line)

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait(timeout=5)
        except Exception:
            pass
        for f in (self._stdin, self._stdout):
            try:
                f.close()
            except Exception:
                pass


class WorkerPool:
    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._count = 0

    def _acquire(self, deadline: float) -> _Worker | None:
        with self._cond:
            while True:
                self._drop_dead_idle()
                if self._idle:
                    # Prefer a worker that has finished starting.
                    for i, w in enumerate(self._idle):
                        if w.ready:
                            return self._idle.pop(i)
                    return self._idle.pop()
                if self._count < self.size:
                    self._count += 1
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
        try:
            return _Worker()
        except Exception:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise

    def _drop_dead_idle(self) -> None:
        """Idle workers that exited (killed from outside, OOM) leave the pool: with several dead ones,
        the one retry in `call` could otherwise meet a second corpse. Caller holds the lock."""
        dead = [w for w in self._idle if w.proc.poll() is not None]
        for w in dead:
            self._idle.remove(w)
            self._count -= 1
            w.kill()  # reaps it and closes its pipes

    def _release(self, worker: _Worker, healthy: bool) -> None:
        if not healthy:
            worker.kill()
            try:
                worker = _Worker()  # replace at once so the next request finds it warm
            except Exception:
                with self._cond:
                    self._count -= 1
                    self._cond.notify()
                return
        with self._cond:
            self._idle.append(worker)
            self._cond.notify()

    def call(self, payload: dict, deadline: float) -> dict:
        """Run one request; raises ``WorkerTimeout`` / ``WorkerError``.

        A worker found dead (killed from outside while idle) is replaced and the request retried
        once, time permitting.
        """
        try:
            return self._call_once(payload, deadline)
        except WorkerError:
            if time.monotonic() >= deadline:
                raise WorkerTimeout from None
            return self._call_once(payload, deadline)

    def _call_once(self, payload: dict, deadline: float) -> dict:
        worker = self._acquire(deadline)
        if worker is None:
            raise WorkerTimeout
        healthy = False
        try:
            if not worker.wait_ready(deadline):
                healthy = True  # still starting: keep it, it is not stuck
                raise WorkerTimeout
            resp = worker.request(payload, deadline)
            healthy = True
            return resp
        except (OSError, ValueError) as exc:  # broken pipe, garbled reply
            raise WorkerError(str(exc)) from exc
        finally:
            self._release(worker, healthy)

    def prestart(self) -> None:
        """Start one worker in the background if none exists (returns at once)."""
        with self._cond:
            if self._count:
                return
            self._count += 1
        try:
            worker = _Worker()
        except Exception:
            with self._cond:
                self._count -= 1
            return
        with self._cond:
            self._idle.append(worker)
            self._cond.notify()

    def warmup(self, timeout: float = 60.0, count: int = 1) -> bool:
        """Start up to ``count`` workers (at most the pool size) and wait until they are ready."""
        deadline = time.monotonic() + timeout
        with self._cond:
            missing = max(0, min(count, self.size) - self._count)
            self._count += missing
            # Idle workers still starting are taken out while we wait, so no borrower reads their pipe.
            mine = [w for w in self._idle if not w.ready]
            self._idle = [w for w in self._idle if w.ready]
        started = 0
        try:
            for _ in range(missing):
                mine.append(_Worker())
                started += 1
        finally:
            if started < missing:
                with self._cond:
                    self._count -= missing - started
        ok = True
        for w in mine:
            try:
                ok = w.wait_ready(deadline) and ok
            except WorkerError:
                ok = False  # a dead worker is replaced when it is next borrowed
        with self._cond:
            self._idle.extend(mine)
            self._cond.notify_all()
        return ok

    def close(self) -> None:
        with self._cond:
            idle, self._idle = self._idle, []
            self._count -= len(idle)
        for w in idle:
            w.kill()


_lock = threading.Lock()
_pool: WorkerPool | None = None


def default_size() -> int:
    env = os.environ.get("SSB_GRADE_WORKERS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, min(4, os.cpu_count() or 1))


def get_pool() -> WorkerPool:
    global _pool
    with _lock:
        if _pool is None:
            _pool = WorkerPool(default_size())
        return _pool


def resize(size: int) -> None:
    """Allow ``size`` concurrent workers (the CLI sizes the pool to its thread count)."""
    pool = get_pool()
    with pool._cond:
        pool.size = max(1, size)
        pool._cond.notify_all()


def _after_fork() -> None:
    # The parent's workers belong to the parent; the child starts its own on demand.
    global _pool, _lock
    _lock = threading.Lock()
    _pool = None


def _shutdown() -> None:
    if _pool is not None:
        _pool.close()


os.register_at_fork(after_in_child=_after_fork)
atexit.register(_shutdown)
