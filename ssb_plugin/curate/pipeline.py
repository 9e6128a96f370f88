"""The curation run: problems -> chunks (each through `chunk.Curator`) -> shards + manifest.

Chunks are fixed slices of the source order (`chunk_size` problems), numbered globally, so a
chunk's content never depends on `--shard`, `--limit` of later rows, or on what ran before a
crash. Every request carries a seed derived from (seed, problem id, role, index): a problem's
records are the same whatever batch it lands in. Each finished chunk is one atomic shard plus a
progress file; a rerun skips finished chunks.
"""

from __future__ import annotations

import time
from collections import defaultdict

from ssb_plugin import __version__
from ssb_plugin.curate.backends import make_backend, vllm_available
from ssb_plugin.curate.chunk import Curator, target_spec
from ssb_plugin.curate.config import ConfigError, CurateConfig
from ssb_plugin.curate.fingerprint import fingerprints
from ssb_plugin.curate.problems import load_problems
from ssb_plugin.curate.tally import tally
from ssb_plugin.curate.writer import OutputDir
from ssb_plugin.prompts import TEACHER_TEMPLATE
from ssb_plugin.record import Manifest, Outcome, StoredTarget, TargetKind, tokenizer_fingerprint


def resolve(cfg: CurateConfig) -> CurateConfig:
    """Fill in 'auto' backend and the default model (before the settings are recorded)."""
    if cfg.backend == "auto":
        cfg.backend = "vllm" if vllm_available() else "transformers"
    elif cfg.backend == "vllm" and not vllm_available():
        raise ConfigError(
            "backend: 'vllm' requested but vllm is not importable here; use --backend transformers"
        )
    if cfg.model is None:
        from ssb_plugin.embedded import default_model

        cfg.model = default_model()
    return cfg


def check_model_config(cfg: CurateConfig) -> None:
    """k <= vocabulary and a chat template, read from the config/tokenizer files (no weights)."""
    from transformers import AutoConfig, AutoTokenizer

    try:
        mcfg = AutoConfig.from_pretrained(cfg.model_path(), revision=cfg.revision)
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"model: cannot read the config of {cfg.model!r}: {e}") from e
    vocab = getattr(mcfg, "vocab_size", None) or getattr(
        getattr(mcfg, "text_config", None), "vocab_size", None
    )
    if vocab is not None and cfg.stored_topk > vocab:
        raise ConfigError(f"stored_topk: {cfg.stored_topk} exceeds the vocabulary of {cfg.model!r} ({vocab})")
    tok = AutoTokenizer.from_pretrained(cfg.model, revision=cfg.revision)
    if not getattr(tok, "chat_template", None):
        raise ConfigError(f"model: {cfg.model!r} has no chat template; SSB prompts are chats")


def reached_max_kept(cfg: CurateConfig, done: dict) -> bool:
    """--max-kept N: stop (whole chunks, in plan order) once this shard has kept N records."""
    kept = sum(info["counts"].get(Outcome.KEPT, 0) for info in done.values())
    return cfg.max_kept is not None and kept >= cfg.max_kept


def chunk_plan(items: list, cfg: CurateConfig) -> list[tuple[int, list]]:
    """(global chunk index, items) for this shard: chunk c belongs to shard c mod N."""
    i, n = cfg.shard_spec()
    size = cfg.chunk_size
    chunks = [(c, items[s : s + size]) for c, s in enumerate(range(0, len(items), size))]
    return [(c, part) for c, part in chunks if c % n == i]


def build_manifest(
    cfg: CurateConfig, tokenizer, backend_info: dict, done: dict, plan, extra_timings, prints: dict
) -> Manifest:
    counts, timings, stats = tally(done.values())
    timings.update(extra_timings)
    # the settings land where their declaration says (CurateConfig `manifest=`); the rest is run facts
    m = cfg.manifest_settings()
    m["model"] = str(m["model"])
    m["prompts"]["teacher_template"] = TEACHER_TEMPLATE
    m["sampling"]["rollout"]["top_p"] = 1.0
    m["sampling"]["teacher"].update(n=1, top_p=1.0)
    target = m.pop("target")  # the target.* settings, completed by what the scoring pass records
    if cfg.stored_target:
        target.update(target_spec(cfg).manifest().to_dict())
    else:  # a set for `ssb_teacher: online` only: training in stored mode refuses it (stored_topk 0)
        target.update(kind=TargetKind.NONE)
        m["stored_topk"] = 0
    m["extra"].update(
        backend_info=backend_info,
        stats=dict(stats),
        chunks_done=sorted(done),
        chunks_total=len(plan),
        complete=all(c in done for c, _ in plan) or reached_max_kept(cfg, done),
        kept_cap_reached=reached_max_kept(cfg, done),
        settings=cfg.result_settings(),
        fingerprints=prints,
    )
    return Manifest(
        **m,
        target=StoredTarget.from_dict(target),
        tokenizer=tokenizer_fingerprint(tokenizer),
        counts=counts,
        timings={k: round(v, 3) for k, v in timings.items()},
        version=__version__,
    )


def _open_backend(cfg: CurateConfig, backend, needed: bool, extra: defaultdict[str, float]):
    """(backend, tokenizer, backend info): the model loads only when chunks are left to run."""
    if backend is None and needed:
        from ssb_plugin.grading import warmup

        warmup()  # start the grader's worker while the model loads
        t = time.perf_counter()
        backend = make_backend(cfg, cfg.model_path())
        extra["model_load_s"] += time.perf_counter() - t
    if backend is not None:
        return backend, backend.tokenizer, backend.info()
    from transformers import AutoTokenizer  # everything already done: the manifest needs the tokenizer

    return None, AutoTokenizer.from_pretrained(cfg.model, revision=cfg.revision), {"backend": cfg.backend}


def curate(cfg: CurateConfig, backend=None, on_progress=None) -> Manifest:
    """Run (or resume) curation into cfg.out; returns the final manifest."""
    wall = time.perf_counter()
    resolve(cfg)
    cfg.validate()
    items = load_problems(cfg)  # data errors surface before any weights load
    if backend is None:
        check_model_config(cfg)
    plan = chunk_plan(items, cfg)
    out = OutputDir(cfg.out)
    prints = fingerprints(items, cfg.model_path(), cfg.revision)
    out.prepare({**cfg.result_settings(), "shard": cfg.shard, **prints}, overwrite=cfg.overwrite)
    done = out.done_chunks()
    todo = [] if reached_max_kept(cfg, done) else [(c, part) for c, part in plan if c not in done]
    if not todo and (finished := out.finished_manifest()) is not None:
        return finished  # a complete set is never re-stamped by a rerun
    extra: defaultdict[str, float] = defaultdict(float)  # run timings outside the chunks
    own_backend = backend is None
    backend, tokenizer, info = _open_backend(cfg, backend, bool(todo), extra)

    def write_manifest() -> Manifest:
        manifest = build_manifest(cfg, tokenizer, info, done, plan, extra, prints)
        out.write_manifest(manifest)
        return manifest

    try:
        if todo:
            _run_chunks(cfg, Curator(cfg, backend), todo, plan, done, out, write_manifest, on_progress)
    finally:  # an engine this run started is shut down however the run ends (vLLM holds GPU memory)
        if own_backend and backend is not None:
            backend.close()
    extra["wall_s_last_invocation"] = time.perf_counter() - wall
    return write_manifest()


def _run_chunks(cfg, curator, todo, plan, done, out, write_manifest, on_progress) -> None:
    """Curate the chunks left to do; each finished chunk is written (shard, progress, manifest)."""
    from tqdm.auto import tqdm

    bar = tqdm(
        total=sum(len(part) for _, part in plan),
        initial=sum(len(part) for c, part in plan if c in done),
        desc="curate",
        unit="problem",
        disable=not cfg.progress,
    )

    def postfix():
        kept = sum(d["counts"].get(Outcome.KEPT, 0) for d in done.values())
        dropped = sum(v for d in done.values() for k, v in d["counts"].items() if k != Outcome.KEPT)
        bar.set_postfix(kept=kept, dropped=dropped)

    postfix()
    try:
        for c, part in todo:
            if reached_max_kept(cfg, done):
                break
            res = curator.run_chunk(part)
            t = time.perf_counter()
            info_c = {"counts": dict(res.counts), "timings": dict(res.timings), "stats": dict(res.stats)}
            info_c["outcomes"] = res.outcomes
            out.write_chunk(c, res.rows, info_c)
            info_c["timings"]["write_s"] = time.perf_counter() - t
            done[c] = info_c
            write_manifest()
            bar.update(len(part))
            postfix()
            if on_progress:
                on_progress(c, res)
    finally:
        bar.close()
