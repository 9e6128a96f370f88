"""The demo's two lanes: they run at once, each command with its lane's CPUs, and the first failure
(or Ctrl-C) stops the other lane's command instead of leaving it running."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from ssb_plugin.demo.lanes import Cancelled, Lane, StageClock, run_side_by_side, split_cpus

pytestmark = pytest.mark.timeout(180)  # a lane that is never stopped would otherwise hang the suite


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _stamp(path, seconds: float) -> list[str]:
    """A command that records its start and end time (and pid) in `path`."""
    return _py(
        f"import json, os, time; t0 = time.time(); time.sleep({seconds}); "
        f"open({str(path)!r}, 'w').write(json.dumps([t0, time.time(), os.getpid()]))"
    )


def _pid_then_sleep(path, seconds: float) -> list[str]:
    """Writes its pid to `path`, sleeps, then writes `path`.done: a command left to run to its end."""
    return _py(
        f"import os, time; open({str(path)!r}, 'w').write(str(os.getpid())); time.sleep({seconds}); "
        f"open({str(path) + '.done'!r}, 'w').write('finished')"
    )


def _stopped(pid_file) -> bool:
    """The command behind `pid_file` is gone and did not run to its end."""
    return not _alive(int(pid_file.read_text())) and not pid_file.with_name(pid_file.name + ".done").exists()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_for_file(path, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, f"{path} never written"
        time.sleep(0.05)
    return path.read_text()


@pytest.fixture
def lanes(tmp_path):
    clock = StageClock(tmp_path / "timings.json", {"setup": 3.0})
    return clock, Lane("main", [0], clock), Lane("side", [1], clock, log_dir=tmp_path / "logs", niceness=5)


@pytest.mark.parametrize(
    "cpus, main, side",
    [([0, 1], [0], [1]), ([3, 1, 0, 2], [0, 1], [2, 3]), ([0], [0], [0]), ([], [], [])],
)
def test_split_cpus_gives_each_lane_its_own_half(cpus, main, side):
    assert split_cpus(cpus) == (main, side)


def test_lanes_overlap_and_every_stage_is_timed(lanes, tmp_path):
    clock, main, side = lanes
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    run_side_by_side(
        main,
        lambda: main.stage("main_work", lambda lane: lane.sh(_stamp(a, 1.0))),
        side,
        lambda: side.stage("side_work", lambda lane: lane.sh(_stamp(b, 1.0))),
    )
    clock.finish()
    (a0, a1, _), (b0, b1, _) = json.loads(a.read_text()), json.loads(b.read_text())
    assert a0 < b1 and b0 < a1  # the two commands ran at the same time
    times = json.loads((tmp_path / "timings.json").read_text())
    assert set(times) == {"setup", "main_work", "side_work", "wall", "lanes"}
    assert times["lanes"] == {"main_work": "main", "side_work": "side"}  # what the report's table shows
    assert times["wall"] < times["main_work"] + times["side_work"]


def test_each_lane_command_gets_its_threads_and_the_side_lane_writes_a_log(lanes, tmp_path):
    _, main, side = lanes
    show = _py("import os; print('threads=' + os.environ['OMP_NUM_THREADS'], 'nice=' + str(os.nice(0)))")
    side.stage("probe", lambda lane: lane.sh(show))
    assert f"threads=1 nice={os.nice(0) + 5}" in (tmp_path / "logs" / "probe.log").read_text()
    out = subprocess.run(
        _py(
            "from ssb_plugin.demo.lanes import Lane, StageClock; from pathlib import Path; import sys; "
            f"lane = Lane('main', [0, 2], StageClock(Path({str(tmp_path / 't.json')!r}), {{}})); "
            f"lane.sh({show!r})"
        ),
        capture_output=True,
        text=True,
        check=True,
    )
    assert "threads=2 nice=" in out.stdout  # the main lane prints to the terminal


def test_side_failure_stops_the_main_lane_and_names_its_log(lanes, tmp_path, capsys):
    _, main, side = lanes
    pid_file = tmp_path / "main.pid"

    def side_fn():
        _wait_for_file(pid_file)
        side.stage(
            "curate_heldout", lambda lane: lane.sh(_py("print('boom: bad row 7'); raise SystemExit(3)"))
        )

    with pytest.raises(subprocess.CalledProcessError) as err:
        run_side_by_side(
            main,
            lambda: main.stage("train", lambda lane: lane.sh(_pid_then_sleep(pid_file, 120))),
            side,
            side_fn,
        )
    assert err.value.returncode == 3  # the cause, not the main lane's cancellation
    assert _stopped(pid_file)
    stderr = capsys.readouterr().err
    assert str(tmp_path / "logs" / "curate_heldout.log") in stderr and "boom: bad row 7" in stderr


def test_main_failure_stops_the_side_lanes_command(lanes, tmp_path):
    _, main, side = lanes
    pid_file = tmp_path / "side.pid"

    def main_fn():
        _wait_for_file(pid_file)
        main.stage("train", lambda lane: lane.sh(_py("raise SystemExit(5)")))

    with pytest.raises(subprocess.CalledProcessError) as err:
        run_side_by_side(
            main,
            main_fn,
            side,
            lambda: side.stage("eval_base", lambda lane: lane.sh(_pid_then_sleep(pid_file, 120))),
        )
    assert err.value.returncode == 5
    assert _stopped(pid_file)


def test_a_side_stage_waiting_on_the_main_lane_stops_when_it_fails(lanes):
    _, main, side = lanes
    merged = threading.Event()
    reached = []

    def side_fn():
        side.wait_for(merged, "the merged model")
        reached.append("kl")

    def main_fn():
        main.stage("merge", lambda lane: lane.sh(_py("raise SystemExit(4)")))
        merged.set()

    with pytest.raises(subprocess.CalledProcessError):
        run_side_by_side(main, main_fn, side, side_fn)
    assert reached == []
    with pytest.raises(Cancelled):
        side.sh(_py("print('never')"))  # a stopped lane starts nothing new


def test_ctrl_c_in_the_main_lane_stops_both_commands(tmp_path):
    """SIGINT to the demo: its own command and the side lane's are ended, not orphaned."""
    script = f"""
import sys
from pathlib import Path
from ssb_plugin.demo.lanes import Lane, StageClock, run_side_by_side
tmp = Path({str(tmp_path)!r})
def sleeper(name):
    code = f"import os, time; open({{str(tmp / name)!r}}, 'w').write(str(os.getpid())); time.sleep(120)"
    return [sys.executable, "-c", code]
clock = StageClock(tmp / "t.json", {{}})
main, side = Lane("main", [0], clock), Lane("side", [1], clock, log_dir=tmp / "logs")
run_side_by_side(main, lambda: main.stage("a", lambda l: l.sh(sleeper("main.pid"))),
                 side, lambda: side.stage("b", lambda l: l.sh(sleeper("side.pid"))))
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    main_pid = int(_wait_for_file(tmp_path / "main.pid"))
    side_pid = int(_wait_for_file(tmp_path / "side.pid"))
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends the foreground process
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    assert not _alive(main_pid) and not _alive(side_pid)


def test_a_rerun_stage_log_holds_only_this_run(lanes, tmp_path):
    _, _, side = lanes
    side.stage("eval_base", lambda lane: lane.sh(_py("print('first run')")))
    side.stage(
        "eval_base", lambda lane: (lane.sh(_py("print('second run')")), lane.sh(_py("print('part two')")))
    )
    log = (tmp_path / "logs" / "eval_base.log").read_text()
    assert "first run" not in log and "second run" in log and "part two" in log
