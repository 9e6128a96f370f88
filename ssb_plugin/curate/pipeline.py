"""The curation run: problems -> chunks (each through `chunk.Curator`) -> shards + manifest.

A backend with full logits of its own (transformers) generates and scores each chunk in turn. One
without (vLLM) runs in two phases, so the scoring model never shares a device with a live engine:
every chunk is generated and kept as a pending file, the engine is shut down, then a transformers
copy loads and scores the pending chunks in plan order. A run killed in either phase resumes where
it stopped (pending chunks are not generated again).

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
from ssb_plugin.curate.chunk import ChunkResult, Curator, add_targets, target_spec
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
    """(backend, tokenizer, backend info): the model loads only when chunks are left to generate."""
    if backend is None and needed:
        from ssb_plugin.grading import warmup

        warmup()  # start the grader's worker while the model loads
        t = time.perf_counter()
        backend = make_backend(cfg, cfg.model_path())
        extra["model_load_s"] += time.perf_counter() - t
    if backend is not None:
        return backend, backend.tokenizer, backend.info()
    from transformers import AutoTokenizer  # nothing left to generate: the manifest needs the tokenizer

    return None, AutoTokenizer.from_pretrained(cfg.model, revision=cfg.revision), {"backend": cfg.backend}


def two_phase(cfg: CurateConfig, backend) -> bool:
    """Generate everything, then score: the backend has no scoring model of its own (vLLM)."""
    return cfg.stored_target and (backend is None or not hasattr(backend, "scoring_model"))


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
    pending = set(out.pending_chunks())
    extra: defaultdict[str, float] = defaultdict(float)  # run timings outside the chunks
    own_backend = backend is None
    backend, tokenizer, info = _open_backend(cfg, backend, any(c not in pending for c, _ in todo), extra)
    run = ChunkRun(cfg, out, plan, done, extra, on_progress,
                   lambda: out.write_manifest(build_manifest(cfg, tokenizer, info, done, plan, extra, prints)))  # fmt: skip
    try:
        if todo and two_phase(cfg, backend):
            run.generate_all(Curator(cfg, backend) if backend is not None else None, todo, pending)
            if own_backend and backend is not None:
                backend.close()  # the engine's memory is free before the scorer loads
                backend = None
            run.score_pending(todo)
        elif todo:
            run.generate_and_score(Curator(cfg, backend), todo)
    finally:  # an engine this run started is shut down however the run ends (vLLM holds GPU memory)
        if own_backend and backend is not None:
            backend.close()
    extra["wall_s_last_invocation"] = time.perf_counter() - wall
    manifest = build_manifest(cfg, tokenizer, info, done, plan, extra, prints)
    out.write_manifest(manifest)
    return manifest


class ChunkRun:
    """The chunk loops of one invocation: each finished chunk is written (shard, progress, manifest)."""

    def __init__(self, cfg, out: OutputDir, plan, done: dict, extra, on_progress, write_manifest):
        self.cfg, self.out, self.plan, self.done, self.extra = cfg, out, plan, done, extra
        self.on_progress, self.write_manifest = on_progress, write_manifest

    def _bar(self, desc: str, todo):
        from tqdm.auto import tqdm

        return tqdm(total=sum(len(part) for _, part in todo), desc=desc, unit="problem",
                    disable=not self.cfg.progress)  # fmt: skip

    def _kept(self) -> int:
        return sum(d["counts"].get(Outcome.KEPT, 0) for d in self.done.values())

    def _finish(self, c: int, res: ChunkResult, bar) -> None:
        t = time.perf_counter()
        info = res.info()
        self.out.write_chunk(c, res.rows, info)
        self.out.drop_pending(c)
        info["timings"]["write_s"] = time.perf_counter() - t
        self.done[c] = info
        self.write_manifest()
        bar.update(sum(res.counts.values()))
        dropped = sum(v for d in self.done.values() for k, v in d["counts"].items() if k != Outcome.KEPT)
        bar.set_postfix(kept=self._kept(), dropped=dropped)
        if self.on_progress:
            self.on_progress(c, res)

    def generate_and_score(self, curator: Curator, todo) -> None:
        """One chunk at a time with the backend's own model."""
        with self._bar("curate", todo) as bar:
            for c, part in todo:
                if reached_max_kept(self.cfg, self.done):
                    break
                self._finish(c, curator.run_chunk(part), bar)

    def generate_all(self, curator: Curator | None, todo, pending: set[int]) -> None:
        """Phase 1: every chunk not yet generated, kept as a pending file (no target pass)."""
        kept = self._kept() + sum(self._pending(c).counts.get(Outcome.KEPT, 0) for c in pending)
        left = [(c, part) for c, part in todo if c not in pending]
        with self._bar("generate", left) as bar:
            for c, part in left:
                if self.cfg.max_kept is not None and kept >= self.cfg.max_kept:
                    break
                assert curator is not None  # a backend is opened whenever a chunk is left to generate
                res = curator.generate_chunk(part)
                self.out.write_pending(c, res.to_json())
                pending.add(c)
                kept += res.counts.get(Outcome.KEPT, 0)
                bar.update(len(part))

    def _pending(self, c: int) -> ChunkResult:
        return ChunkResult.from_json(self.out.read_pending(c))

    def score_pending(self, todo) -> None:
        """Phase 2: the pending chunks in plan order, scored by a transformers copy loaded once."""
        scorer = None

        def scoring_model():
            nonlocal scorer
            if scorer is None:
                from ssb_plugin.curate.backends.hf import load_scoring_model

                t = time.perf_counter()
                scorer = load_scoring_model(self.cfg, self.cfg.model_path())
                self.extra["scorer_load_s"] += time.perf_counter() - t
            return scorer

        pending = set(self.out.pending_chunks())
        ready = [(c, part) for c, part in todo if c in pending]
        with self._bar("score", ready) as bar:
            for c, _ in ready:
                if reached_max_kept(self.cfg, self.done):
                    break
                res = self._pending(c)
                add_targets(self.cfg, res, scoring_model)
                self._finish(c, res, bar)
