"""Nothing lost, nothing stale, no wrong verdict, no traceback: the real CLIs (subprocesses)
on real directories, comparing the bytes of every file before and after.

The ssb-curate runs use the tiny random model on the transformers backend (seconds); the curated
sets that merge reads are written by the project's own writer (OutputDir + Manifest).
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

REPO = Path(__file__).resolve().parent.parent
ENV = {
    **os.environ,
    "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
TINY_ARGS = [
    "--backend", "transformers",
    "--num-rollouts", "2",
    "--rollout-max-tokens", "6",
    "--teacher-max-tokens", "6",
    "--stored-topk", "4",
    "--chunk-size", "1",
    "--threads", "1",
    "--no-progress",
]  # fmt: skip


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under root (hidden ones included) -> its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def run(module: str, *args, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def curate(*args, timeout: float = 600) -> subprocess.CompletedProcess:
    return run("ssb_plugin.curate.cli", *args, timeout=timeout)


def grade_cli(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    return run("ssb_plugin.grading.cli", *args, timeout=timeout)


def refused(proc: subprocess.CompletedProcess, *phrases: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for phrase in phrases:
        assert phrase in proc.stderr, (phrase, proc.stderr[-2000:])


def write_problems(path: Path, n: int = 2, offset: int = 0) -> Path:
    rows = [{"question": f"What is {i} + {i}?", "answer": f"#### {2 * i}"} for i in range(offset, offset + n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ---------------------------------------------------------------------------- merge: shard-run fixtures


def shard_run(root: Path, shard: str, chunks: list[int], settings: dict | None = None, prints=None) -> Path:
    """A complete `--shard` output directory written by the project's writer (one record per chunk)."""
    from test_curate_units import _fake_row

    from ssb_plugin.curate.writer import OutputDir
    from ssb_plugin.record import Manifest

    out = OutputDir(root)
    out.prepare({"s": 1, "shard": shard})
    for c in chunks:
        out.write_chunk(c, [_fake_row(c)], {"counts": {"kept": 1}})
    out.write_manifest(
        Manifest(
            model="m",
            counts={"kept": len(chunks), "no_correct": 1},
            source={"shard": shard},
            extra={
                "complete": True,
                "settings": settings or {"seed": 0},
                "stats": {},
                "fingerprints": prints or {},
            },
        )
    )
    return root


@pytest.fixture
def two_parts(tmp_path) -> tuple[Path, Path]:
    return shard_run(tmp_path / "q0", "0/2", [0, 2]), shard_run(tmp_path / "q1", "1/2", [1])


# ---------------------------------------------------------------------------- 1. merge output = a source


def test_merge_into_a_source_is_refused_and_deletes_nothing(two_parts, tmp_path):
    q0, q1 = two_parts
    before = snapshot(tmp_path)
    refused(curate("merge", "--out", q0, "--overwrite", q0, q1), "is or overlaps the source")
    refused(curate("merge", "--out", tmp_path, "--overwrite", q0, q1), "is or overlaps the source")
    refused(curate("merge", "--out", q1 / "sub", q0, q1), "is or overlaps the source")
    assert snapshot(tmp_path) == before


def test_merge_writes_and_replaces_only_its_own_set(two_parts, tmp_path):
    import datasets

    q0, q1 = two_parts
    out = tmp_path / "merged"
    proc = curate("merge", "--out", out, q0, q1)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(datasets.load_dataset(str(out), split="train")["id"]) == ["x:0", "x:1", "x:2"]
    (out / "notes.txt").write_text("mine")
    refused(curate("merge", "--out", out, q0, q1), "use --overwrite")
    proc = curate("merge", "--out", out, "--overwrite", q0, q1)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "notes.txt").read_text() == "mine"


# ---------------------------------------------------------------------------- 2. --out on the user's directory


@pytest.fixture
def users_dir(tmp_path) -> Path:
    d = tmp_path / "mine"
    (d / "data").mkdir(parents=True)
    (d / "README.md").write_text("# my notes\n")
    (d / "data" / "results.csv").write_text("a,b\n1,2\n")
    return d


def test_curate_never_writes_into_a_directory_it_did_not_create(users_dir, tiny_model_dir, tmp_path):
    data = write_problems(tmp_path / "p.jsonl")
    before = snapshot(users_dir)
    for extra in ([], ["--overwrite"]):
        proc = curate("--model", tiny_model_dir, "--data", data, "--out", users_dir, *TINY_ARGS, *extra)
        refused(proc, "was not created by ssb-curate")
        assert "--overwrite" not in proc.stderr  # the refusal suggests no flag that deletes user data
        assert snapshot(users_dir) == before
    q0, q1 = shard_run(tmp_path / "q0", "0/2", [0]), shard_run(tmp_path / "q1", "1/2", [1])
    refused(curate("merge", "--out", users_dir, "--overwrite", q0, q1), "was not created by ssb-curate")
    assert snapshot(users_dir) == before


def test_overwrite_deletes_only_what_ssb_curate_wrote(tiny_model_dir, tmp_path):
    data = write_problems(tmp_path / "p.jsonl")
    out = tmp_path / "set"
    proc = curate("--model", tiny_model_dir, "--data", data, "--out", out, *TINY_ARGS)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / ".ssb-progress" / "run.json").is_file()
    (out / "notes.txt").write_text("keep me")
    (out / "data" / "extra.csv").write_text("a\n")
    refused(
        curate("--model", tiny_model_dir, "--data", data, "--out", out, *TINY_ARGS, "--seed", "3"), "seed"
    )
    proc = curate(
        "--model", tiny_model_dir, "--data", data, "--out", out, *TINY_ARGS, "--seed", "3", "--overwrite"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "notes.txt").read_text() == "keep me" and (out / "data" / "extra.csv").read_text() == "a\n"
    assert json.loads((out / "manifest.json").read_text())["seed"] == 3


# ---------------------------------------------------------------------------- 3. ssb-grade -o


def _grade_input(path: Path, n: int) -> Path:
    rows = [{"id": i, "pred": f"so \\boxed{{{i}}}", "gold": str(i % 7), "pad": "x" * 500} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_grade_output_equal_to_input_is_refused(tmp_path):
    src = _grade_input(tmp_path / "in.jsonl", 50)
    (tmp_path / "link.jsonl").symlink_to(src)
    before = snapshot(tmp_path)
    refused(grade_cli(src, "-o", src, "--no-progress"), "is the input file")
    refused(grade_cli(src, "-o", tmp_path / "link.jsonl", "--no-progress"), "is the input file")
    assert snapshot(tmp_path) == before


def test_grade_interrupted_leaves_the_old_output(tmp_path):
    """Ctrl-C while ssb-grade writes: the previous output stays byte for byte, no temp file is left."""
    src = _grade_input(tmp_path / "in.jsonl", 3000)
    out = tmp_path / "out.jsonl"
    out.write_text('{"previous": "results"}\n' * 10)
    before = snapshot(tmp_path)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ssb_plugin.grading.cli",
            str(src),
            "-o",
            str(out),
            "--no-progress",
            "-j",
            "1",
        ],
        env=ENV,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    # writing has started: a temp file beside the output, or (a non-atomic writer) the output changed
    while not (list(tmp_path.glob(".out.jsonl.tmp-*")) or out.read_bytes() != before["out.jsonl"]):
        assert proc.poll() is None and time.time() < deadline, "ssb-grade ended before writing"
        time.sleep(0.001)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0, "interrupted too late"
    assert snapshot(tmp_path) == before, err[-2000:]


def test_grade_output_into_missing_directory_fails_before_grading(tmp_path):
    src = _grade_input(tmp_path / "in.jsonl", 3000)
    t = time.perf_counter()
    proc = grade_cli(src, "-o", tmp_path / "no" / "out.jsonl", "--no-progress")
    refused(proc, "does not exist")
    assert "cases" not in proc.stderr  # no grading summary: nothing was graded
    print(f"refused in {time.perf_counter() - t:.1f} s")


# ---------------------------------------------------------------------------- 8. wrong verdicts


@pytest.mark.parametrize(
    "row, phrase",
    [
        ({"gold": "5"}, "line 3: no 'pred' field"),
        ({"pred": "\\boxed{5}"}, "line 3: no 'gold' field"),
        ({"pred": None, "gold": "5"}, "line 3: 'pred' is null"),
        ({"pred": ["\\boxed{5}"], "gold": [5]}, "line 3: 'pred' is a list, expected a string"),
        ({"pred": "\\boxed{5}", "gold": [5]}, "line 3: 'gold' is a list, expected a string or a number"),
    ],
)
def test_grade_unusable_row_anywhere_exits_2(tmp_path, row, phrase):
    src = tmp_path / "in.jsonl"
    good = {"pred": "\\boxed{5}", "gold": 5}
    src.write_text("".join(json.dumps(r) + "\n" for r in (good, good, row, good)))
    refused(grade_cli(src, "--no-progress"), phrase)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_grade_timeout_must_be_positive(tmp_path, value):
    src = _grade_input(tmp_path / "in.jsonl", 2)
    refused(grade_cli(src, "--timeout", value, "--no-progress"), "must be a positive number of seconds")


# ---------------------------------------------------------------------------- 9. crashes


def test_non_utf8_line_is_named_in_grade_and_curate(tmp_path, tiny_model_dir):
    src = tmp_path / "in.jsonl"
    src.write_bytes(b'{"pred": "\\\\boxed{1}", "gold": "1"}\n{"pred": "caf\xe9", "gold": "1"}\n')
    refused(grade_cli(src, "--no-progress"), f"{src} line 2 is not UTF-8")
    data = tmp_path / "p.jsonl"
    data.write_bytes(
        b'{"question": "1+1?", "answer": "#### 2"}\n{"question": "caf\xe9?", "answer": "#### 2"}\n'
    )
    proc = curate("--model", tiny_model_dir, "--data", data, "--out", tmp_path / "o", *TINY_ARGS)
    refused(proc, f"{data} line 2 is not UTF-8")


def test_merge_missing_source_is_named(two_parts, tmp_path):
    q0, _ = two_parts
    refused(curate("merge", "--out", tmp_path / "m", q0, tmp_path / "nope"), "nope is not a directory")
    assert not (tmp_path / "m").exists()


# ---------------------------------------------------------------------------- 7. partial merges


def test_merge_of_some_parts_is_refused(tmp_path):
    parts = [shard_run(tmp_path / f"q{i}", f"{i}/3", [i]) for i in range(3)]
    refused(curate("merge", "--out", tmp_path / "m", parts[0], parts[2]), "parts ['1/3'] are missing")
    assert not (tmp_path / "m").exists()
    proc = curate("merge", "--out", tmp_path / "m", *parts)
    assert (
        proc.returncode == 0
        and json.loads((tmp_path / "m" / "manifest.json").read_text())["extra"]["complete"]
    )


def test_merge_of_parts_curated_from_other_model_files_is_refused(tmp_path):
    """Parts whose model (or input) content differs never merge, same paths or not."""
    q0 = shard_run(tmp_path / "q0", "0/2", [0], prints={"input_sha256": "i", "model_sha256": "a"})
    q1 = shard_run(tmp_path / "q1", "1/2", [1], prints={"input_sha256": "i", "model_sha256": "b"})
    refused(curate("merge", "--out", tmp_path / "m", q0, q1), "other settings", "model_sha256")
    assert not (tmp_path / "m").exists()


# ---------------------------------------------------------------------------- 11. damaged shards


def test_truncated_shard_is_named(two_parts, tmp_path):
    q0, q1 = two_parts
    shard = q0 / "data" / "shard-00002.parquet"
    shard.write_bytes(shard.read_bytes()[:-100])
    refused(curate("merge", "--out", tmp_path / "m", q0, q1), f"{shard}: not a valid parquet file")
    (q1 / "data" / "shard-00001.parquet").unlink()  # a deleted shard: the manifest no longer adds up
    refused(curate("merge", "--out", tmp_path / "m", q1, q1.parent / "q0"), "counts 1 kept records")


# ---------------------------------------------------------------------------- 5, 6. stale results


def _wait_then_kill(cmd: list[str], first: Path, timeout: float = 300) -> None:
    """Start a curation run and kill -9 it once its first chunk is done (or once it ended)."""
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while not first.exists() and proc.poll() is None:
        assert time.time() < deadline, "first chunk never finished"
        time.sleep(0.05)
    proc.kill()
    proc.wait()


def test_resume_after_the_input_was_edited_is_refused(tiny_model_dir, tmp_path):
    data = write_problems(tmp_path / "p.jsonl", n=6)
    out = tmp_path / "set"
    cmd = [sys.executable, "-m", "ssb_plugin.curate.cli", "--model", str(tiny_model_dir), "--data", str(data)]
    _wait_then_kill([*cmd, "--out", str(out), *TINY_ARGS], out / ".ssb-progress" / "chunk-00000.json")
    write_problems(data, n=6, offset=1)  # same path, same length, other problems
    before = snapshot(out)
    proc = curate("--model", tiny_model_dir, "--data", data, "--out", out, *TINY_ARGS)
    refused(proc, "the input data changed since this directory was started")
    assert snapshot(out) == before


def test_complete_set_is_not_restamped_and_a_changed_model_is_refused(tiny_model_dir, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    data = write_problems(tmp_path / "p.jsonl")
    out = tmp_path / "set"
    args = ["--model", model, "--data", data, "--out", out, *TINY_ARGS]
    assert curate(*args).returncode == 0
    before = snapshot(out)
    proc = curate(*args)  # nothing to do: the set is left exactly as it was
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert snapshot(out) == before
    weights = load_file(model / "model.safetensors")
    name = sorted(weights)[0]
    weights[name] = weights[name] + 0.01  # another checkpoint at the same path
    save_file(weights, model / "model.safetensors", metadata={"format": "pt"})
    refused(curate(*args), "the model files changed since this directory was started")
    assert snapshot(out) == before


def test_training_on_a_truncated_shard_names_it(tiny_model_dir, tmp_path, tmp_path_factory):
    """`axolotl train` on a curated set whose shard was cut short: the shard and the cause, first."""
    import shutil

    import yaml

    pytest.importorskip("axolotl")
    from support.axolotl_cpu import train_config
    from support.curated_fixture import cached_curated_set

    curated = tmp_path / "set"
    shutil.copytree(
        cached_curated_set(tiny_model_dir, tmp_path_factory.getbasetemp() / "curated", n=8, k=8), curated
    )
    shard = sorted(curated.glob("data/*.parquet"))[0]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    cfg = train_config(tiny_model_dir, curated, tmp_path, max_steps=1)
    (tmp_path / "config.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    proc = run("axolotl.cli.train", tmp_path / "config.yml")
    assert proc.returncode != 0
    assert f"{shard}: not a valid parquet file" in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[
        -3000:
    ]
