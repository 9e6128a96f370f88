"""Curation benchmarks: storage per answer token, batched generation, pipeline overhead over vLLM.

    # transformers parts (.venv): storage of a fresh k=64 set + batched vs one-at-a-time generate
    .venv/bin/python benchmarks/curation.py storage hf-batch
    # vLLM part (.venv-vllm): this pipeline's wall time over bare vLLM generate of the same requests
    .venv-vllm/bin/python benchmarks/curation.py vllm-overhead
    # Ray part (.venv-vllm, where Ray is): the same requests in one process vs `--ray local` with
    # 1 and 2 replicas (wall-time ratios), and Ray's fixed overhead on a one-problem set
    .venv-vllm/bin/python benchmarks/curation.py ray [--ray-backend vllm]
    # vLLM part: peak memory (RSS of ssb-curate and every process under it) of one CLI run;
    # --repo points it at another checkout (an older commit) for a before/after in one call
    .venv-vllm/bin/python benchmarks/curation.py vllm-memory [--repo ../old-checkout]

Defaults use the embedded SmolLM2-135M-Instruct on one-digit additions (--model, --n to change).
Goals: <= 0.5 KB per answer token (the reference stores ~270 KB: full-vocabulary fp32 logits, compressed),
batched >= 4x one-at-a-time, pipeline <= 1.05x bare vLLM, the scorer never resident beside the
vLLM engine (peak = the larger of the two, not their sum).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ssb_plugin.curate.backends import Request, derive_seed  # noqa: E402
from ssb_plugin.curate.config import CurateConfig  # noqa: E402
from ssb_plugin.demo.easy import write_easy  # noqa: E402


def _model(args) -> str:
    if args.model:
        return args.model
    from ssb_plugin.embedded import converted_dir

    return str(converted_dir())


def _common(args, data: Path) -> dict:
    return dict(
        model=_model(args),
        data=str(data),
        limit=args.n,
        rollout_max_tokens=args.rollout_tokens,
        teacher_max_tokens=args.teacher_tokens,
        topk=64,
        answer_fallback=True,
        seed=args.seed,
        progress=False,
        chunk_size=args.n,
    )


def _report_storage(label: str, size: int, tokens: int, records: int) -> dict:
    per = size / tokens if tokens else float("nan")
    print(
        f"storage ({label}): {size} B for {tokens} answer tokens in {records} records, k=64 = {per:.0f} B/token "
        f"= {per / 1024:.3f} KB/token (goal <= 0.5 KB; the reference's ~270 KB is {270 * 1024 / per:.0f}x more)"
    )
    return {"bytes": size, "answer_tokens": tokens, "records": records, "bytes_per_token": per}


def storage(args, tmp: Path, out: Path | None = None) -> dict:
    """Parquet bytes per answer token at k=64.

    Without `out`: real top-64 rows of the model (transformers backend, answers to the easy problems,
    kept or not) written through the curation shard writer, so the sample is not limited by how few
    records a 135M model keeps. With `out`: the shards of a curated set."""
    from ssb_plugin.curate.writer import OutputDir, write_shard

    if out is not None:
        m = json.loads((out / "manifest.json").read_text())
        size = sum(f.stat().st_size for f in OutputDir(out).shard_files())
        return _report_storage(
            f"curated set {out.name}", size, m["extra"]["stats"].get("kept_tokens", 0), m["counts"]["kept"]
        )
    from types import SimpleNamespace

    from ssb_plugin.curate.backends.hf import TransformersBackend
    from ssb_plugin.demo.easy import easy_problems
    from ssb_plugin.prompts import student_messages
    from ssb_plugin.record import chat_prompt_ids

    cfg = SimpleNamespace(
        device="auto",
        dtype="auto",
        batch_size=32,
        progress=False,
        revision=None,
        max_model_len=None,
        threads=args.threads,
    )
    be = TransformersBackend(cfg, _model(args))
    rows = []
    for i, p in enumerate(easy_problems(args.n, seed=5)):
        msgs = student_messages(p["question"])
        rows.append({"id": f"s:{i}", "question": p["question"], "gold": "0", "msgs": msgs})
    reqs = [
        Request(tuple(chat_prompt_ids(be.tokenizer, r["msgs"])), 0.4, 50, args.teacher_tokens, i, 64)
        for i, r in enumerate(rows)
    ]
    gens = be.generate(reqs)
    records = []
    for r, g in zip(rows, gens, strict=True):
        text = be.tokenizer.decode(g.token_ids, skip_special_tokens=True)
        records.append(
            {
                "id": r["id"],
                "question": r["question"],
                "gold": r["gold"],
                "student_messages": r["msgs"],
                "teacher_messages": r["msgs"],
                "response_text": text,
                "response_ids": g.token_ids,
                "teacher_topk_ids": g.topk_ids,
                "teacher_topk_logprobs": g.topk_logprobs,
                "rollouts": [],
                "correct_index": 0,
                "wrong_index": 1,
                "wrong_answer": "",
                "wrong_count": 1,
            }
        )
    path = tmp / "storage" / "shard-00000.parquet"
    write_shard(path, records)
    tokens = sum(len(g.token_ids) for g in gens)
    return _report_storage("real top-64 rows, shard writer", path.stat().st_size, tokens, len(records))


def hf_batch(args, tmp: Path) -> dict:
    """New tokens/s of the transformers backend: one generate call for all vs one call per request."""
    from types import SimpleNamespace

    from ssb_plugin.curate.backends.hf import TransformersBackend
    from ssb_plugin.demo.easy import easy_problems
    from ssb_plugin.prompts import student_messages
    from ssb_plugin.record import chat_prompt_ids

    n = args.batch
    cfg = SimpleNamespace(
        device="auto", dtype="auto", batch_size=n, progress=False, revision=None, max_model_len=None
    )
    be = TransformersBackend(cfg, _model(args))
    qs = [p["question"] for p in easy_problems(n, seed=3)]
    reqs = [
        Request(
            tuple(chat_prompt_ids(be.tokenizer, student_messages(q))),
            0.8,
            50,
            args.gen_tokens,
            derive_seed(0, q, "b", i),
            64,
        )
        for i, q in enumerate(qs)
    ]
    be.generate(reqs[:2])  # warm-up
    t = time.perf_counter()
    batched = be.generate(reqs)
    tb = time.perf_counter() - t
    t = time.perf_counter()
    single = [be.generate([r])[0] for r in reqs]
    ts = time.perf_counter() - t
    nb = sum(len(g.token_ids) for g in batched)
    ns = sum(len(g.token_ids) for g in single)
    same = sum(a.token_ids == b.token_ids for a, b in zip(batched, single, strict=True))
    rb, rs = nb / tb, ns / ts
    print(
        f"transformers generate, {n} requests, <= {args.gen_tokens} new tokens, raw top-64 kept: batched "
        f"{rb:.1f} tok/s ({tb:.1f} s) vs one at a time {rs:.1f} tok/s ({ts:.1f} s): "
        f"speed-up {rb / rs:.1f}x (goal >= 4x); identical outputs {same}/{n}; torch threads {be.info()['threads']}"
    )
    return {"batched_tok_s": rb, "single_tok_s": rs, "speedup": rb / rs, "identical": same}


class _Recorder:
    """Wraps a backend, remembering each generate() call's requests for the bare replay."""

    def __init__(self, backend):
        self.backend, self.calls = backend, []
        self.tokenizer = backend.tokenizer
        self.max_model_len = backend.max_model_len

    def info(self):
        return self.backend.info()

    def generate(self, requests, desc="generate"):
        self.calls.append(list(requests))
        return self.backend.generate(requests, desc)


def vllm_overhead(args, tmp: Path) -> dict:
    """Wall time of curate() over bare `llm.generate` of the same request lists (same engine)."""
    from ssb_plugin.curate.backends import make_backend
    from ssb_plugin.curate.pipeline import curate, resolve

    common = _common(args, tmp / "easy.jsonl")
    common.update(
        max_model_len=1024, gpu_memory_utilization=0.2, vllm_kwargs={"enable_prefix_caching": False}
    )
    cfg = resolve(CurateConfig.build({}, out=str(tmp / "v0"), backend="vllm", **common))
    backend = make_backend(cfg, cfg.model)
    rec = _Recorder(backend)
    backend.generate([Request((1, 2, 3), 0.8, 50, 8, 0, 64)])  # warm-up
    walls, bares = [], []
    for rep in range(args.repeats):
        rec.calls.clear()
        t = time.perf_counter()
        curate(CurateConfig.build({}, out=str(tmp / f"v{rep}"), backend="vllm", **common), backend=rec)
        walls.append(time.perf_counter() - t)
        t = time.perf_counter()
        for reqs in rec.calls:  # bare: the same prompts and SamplingParams, outputs thrown away
            backend.llm.generate(
                [{"prompt_token_ids": list(r.prompt_ids)} for r in reqs],
                [backend.sampling_params(r) for r in reqs],
                use_tqdm=False,
            )
        bares.append(time.perf_counter() - t)
    wall, bare = min(walls), min(bares)
    res = storage(args, tmp, tmp / "v0") if (tmp / "v0" / "manifest.json").exists() else {}
    print(
        f"vLLM: pipeline {wall:.2f} s vs bare generate of the same {sum(len(c) for c in rec.calls)} requests "
        f"{bare:.2f} s: ratio {wall / bare:.3f}x (goal <= 1.05x; best of {args.repeats})"
    )
    return {
        "pipeline_s": wall,
        "bare_s": bare,
        "ratio": wall / bare,
        **{f"storage_{k}": v for k, v in res.items()},
    }


def _tree_rss(root: int) -> tuple[int, bool]:
    """(RSS in bytes of `root` and all its descendants, whether a vLLM EngineCore is among them)."""
    parent, rss, title = {}, {}, {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            title[int(d.name)] = (d / "cmdline").read_bytes()
        except OSError:
            continue
        parent[int(d.name)], rss[int(d.name)] = int(fields[1]), int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    tree, frontier = {root}, {root}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier} - tree
        tree |= frontier
    return sum(rss.get(p, 0) for p in tree), any(b"EngineCore" in title.get(p, b"") for p in tree - {root})


def vllm_memory(args, tmp: Path) -> dict:
    """Peak RSS of one `ssb-curate --backend vllm` run (all its processes), sampled every 50 ms;
    with the engine alive and after it is gone, so a scorer loaded beside the engine shows."""
    repo = Path(args.repo or Path(__file__).resolve().parent.parent).resolve()
    out = tmp / f"mem-{len(list(tmp.glob('mem-*')))}"
    cmd = [
        sys.executable, "-m", "ssb_plugin.curate.cli", "--model", _model(args), "--data", str(tmp / "easy.jsonl"),
        "--out", str(out), "--backend", "vllm", "--limit", str(args.n), "--rollout-max-tokens", str(args.rollout_tokens),
        "--teacher-max-tokens", str(args.teacher_tokens), "--answer-fallback", "--seed", str(args.seed),
        "--max-model-len", "1024", "--gpu-memory-utilization", "0.2", "--no-progress",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(repo)}
    proc = subprocess.Popen(cmd, env=env, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak_engine = peak_after = 0
    while proc.poll() is None:
        rss, engine = _tree_rss(proc.pid)
        if engine:
            peak_engine = max(peak_engine, rss)
        elif peak_engine:
            peak_after = max(peak_after, rss)
        time.sleep(0.05)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"vllm-memory: ssb-curate failed ({proc.returncode}):\n{err[-3000:]}")
    kept = json.loads((out / "manifest.json").read_text())["counts"].get("kept", 0)
    gib = 2**30
    print(
        f"vLLM memory ({repo.name}): peak RSS {max(peak_engine, peak_after) / gib:.2f} GiB; "
        f"with the engine alive {peak_engine / gib:.2f} GiB, after it {peak_after / gib:.2f} GiB ({kept} kept)"
    )
    return {"repo": str(repo), "peak_with_engine": peak_engine, "peak_after_engine": peak_after, "kept": kept}


def _cli_wall(args, tmp: Path, name: str, n: int, *extra: str) -> tuple[float, dict]:
    """Wall time of one fresh `ssb-curate` process (engine start included) and its manifest."""
    out = tmp / name
    cmd = [
        sys.executable, "-m", "ssb_plugin.curate.cli", "--model", _model(args), "--data", str(tmp / "easy.jsonl"),
        "--out", str(out), "--limit", str(n), "--chunk-size", "1", "--rollout-max-tokens", str(args.rollout_tokens),
        "--teacher-max-tokens", str(args.teacher_tokens), "--answer-fallback", "--seed", str(args.seed),
        "--no-progress", "--backend", args.ray_backend, *extra,
    ]  # fmt: skip
    if args.ray_backend == "transformers":
        cmd += ["--threads", "1", "--batch-size", "32"]
    else:
        cmd += ["--max-model-len", "1024", "--gpu-memory-utilization", "0.05"]
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"ray: {name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, json.loads((out / "manifest.json").read_text())


def ray_scaling(args, tmp: Path) -> dict:
    """The same problems (one chunk each) in one process, on Ray with 1 and with 2 replicas; and
    one problem in one process vs on Ray (the cluster start and actor start-up: Ray's overhead)."""
    runs = {
        "single": _cli_wall(args, tmp, "single", args.n),
        "ray1": _cli_wall(args, tmp, "ray1", args.n, "--ray", "local", "--ray-replicas", "1"),
        "ray2": _cli_wall(args, tmp, "ray2", args.n, "--ray", "local", "--ray-replicas", "2"),
        "tiny_single": _cli_wall(args, tmp, "tiny_single", 1),
        "tiny_ray": _cli_wall(args, tmp, "tiny_ray", 1, "--ray", "local"),
    }
    walls = {k: w for k, (w, _) in runs.items()}
    same = len({json.dumps(m["counts"]) for k, (_, m) in runs.items() if not k.startswith("tiny")}) == 1
    print(
        f"Ray ({args.ray_backend}, {args.n} problems, {os.cpu_count()} CPUs): one process {walls['single']:.0f} s, "
        f"Ray 1 replica {walls['ray1']:.0f} s ({walls['ray1'] / walls['single']:.2f}x), 2 replicas "
        f"{walls['ray2']:.0f} s ({walls['ray2'] / walls['single']:.2f}x); one problem: {walls['tiny_single']:.0f} s "
        f"vs {walls['tiny_ray']:.0f} s on Ray (+{walls['tiny_ray'] - walls['tiny_single']:.0f} s overhead); "
        f"same counts in all three: {same}"
    )
    return {"walls_s": walls, "same_counts": same, "backend": args.ray_backend, "n": args.n}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "parts",
        nargs="*",
        default=["storage", "hf-batch"],
        choices=["storage", "hf-batch", "vllm-overhead", "vllm-memory", "ray"],
    )
    p.add_argument("--model")
    p.add_argument(
        "--n", type=int, default=16, help="problems (storage: answers) for storage / vllm-overhead"
    )
    p.add_argument("--batch", type=int, default=16, help="requests for hf-batch")
    p.add_argument("--gen-tokens", type=int, default=48)
    p.add_argument("--rollout-tokens", type=int, default=40)
    p.add_argument("--teacher-tokens", type=int, default=160)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, help="torch threads for the transformers parts (default: torch's)")
    p.add_argument("--ray-backend", default="transformers", choices=["transformers", "vllm"], help="for ray")
    p.add_argument("--repo", help="vllm-memory: the checkout whose ssb-curate runs (default: this one)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        write_easy(tmp / "easy.jsonl", n=max(args.n, 40), seed=0)
        for part in args.parts:
            results[part] = {
                "storage": storage,
                "hf-batch": hf_batch,
                "vllm-overhead": vllm_overhead,
                "vllm-memory": vllm_memory,
                "ray": ray_scaling,
            }[part](args, tmp)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
