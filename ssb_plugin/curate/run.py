"""A curation run's bookkeeping, whoever does the model work (curate.pipeline in this process,
curate.on_ray in Ray actors): settings resolved and checked, the chunk plan, the output directory
claimed, and each chunk's end written (a pending file, or its shard, progress file and a fresh
manifest). Chunks are fixed slices of the source order (`chunk_size` problems), numbered globally,
so a chunk's content never depends on `--shard`, `--limit` of later rows, or on what ran before a
crash.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from ssb_plugin import __version__
from ssb_plugin.curate.backends import vllm_available
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
    m["sampling"]["teacher"]["top_p"] = 1.0
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


def two_phase(cfg: CurateConfig, backend_cls) -> bool:
    """Generate everything, then score: the backend has no scoring model of its own (vLLM)."""
    return cfg.stored_target and not hasattr(backend_cls, "scoring_model")


def open_run(cfg: CurateConfig, *, check_model: bool = True) -> ChunkRun:
    """Settings, input and output directory checked and claimed; nothing loaded yet."""
    resolve(cfg)
    cfg.validate()
    items = load_problems(cfg)  # data errors surface before any weights load
    if check_model:
        check_model_config(cfg)
    out = OutputDir(cfg.out)
    prints = fingerprints(items, cfg.model_path(), cfg.revision)
    out.prepare({**cfg.result_settings(), "shard": cfg.shard, **prints}, overwrite=cfg.overwrite)
    return ChunkRun(cfg, out, chunk_plan(items, cfg), out.done_chunks(), prints)


class ChunkRun:
    """One invocation's chunks: what is left, and each chunk's end (a pending file, or its shard,
    progress file and a fresh manifest). The single-process loops are methods; curate.on_ray
    drives the same per-chunk steps from its Ray Data stages."""

    def __init__(self, cfg: CurateConfig, out: OutputDir, plan, done: dict, prints: dict):
        self.cfg, self.out, self.plan, self.done, self.prints = cfg, out, plan, done, prints
        self.todo = [] if reached_max_kept(cfg, done) else [(c, part) for c, part in plan if c not in done]
        self.pending = set(out.pending_chunks())
        self.extra: defaultdict[str, float] = defaultdict(float)  # run timings outside the chunks
        self.tokenizer: Any = None  # the manifest records its fingerprint
        self.info: dict[str, Any] = {"backend": cfg.backend}
        self.on_progress = None
        self._pending_kept = sum(self.read_pending(c).counts.get(Outcome.KEPT, 0) for c in self.pending)

    def to_generate(self) -> list:
        return [(c, part) for c, part in self.todo if c not in self.pending]

    def to_score(self) -> list:
        return [(c, part) for c, part in self.todo if c in self.pending]

    def manifest(self) -> Manifest:
        return build_manifest(
            self.cfg, self.tokenizer, self.info, self.done, self.plan, self.extra, self.prints
        )

    def finish(self, wall_start: float) -> Manifest:
        self.extra["wall_s_last_invocation"] = time.perf_counter() - wall_start
        manifest = self.manifest()
        self.out.write_manifest(manifest)
        return manifest

    def bar(self, desc: str, chunks):
        from tqdm.auto import tqdm

        return tqdm(total=sum(len(part) for _, part in chunks), desc=desc, unit="problem",
                    disable=not self.cfg.progress)  # fmt: skip

    def _kept(self) -> int:
        return sum(d["counts"].get(Outcome.KEPT, 0) for d in self.done.values())

    def cap_reached(self) -> bool:
        """--max-kept reached by the finished chunks."""
        return reached_max_kept(self.cfg, self.done)

    def cap_reached_with_pending(self) -> bool:
        """--max-kept reached counting the generated chunks: generate no more."""
        cap = self.cfg.max_kept
        return cap is not None and self._kept() + self._pending_kept >= cap

    def finish_chunk(self, c: int, res: ChunkResult, bar) -> None:
        """A scored chunk: its shard and progress file, then a manifest that counts it."""
        t = time.perf_counter()
        info = res.info()
        self.out.write_chunk(c, res.rows, info)
        self.out.drop_pending(c)
        info["timings"]["write_s"] = time.perf_counter() - t
        self.done[c] = info
        self.out.write_manifest(self.manifest())
        bar.update(sum(res.counts.values()))
        dropped = sum(v for d in self.done.values() for k, v in d["counts"].items() if k != Outcome.KEPT)
        bar.set_postfix(kept=self._kept(), dropped=dropped)
        if self.on_progress:
            self.on_progress(c, res)

    def keep_pending(self, c: int, res: ChunkResult, bar) -> None:
        """A generated chunk waiting for its target pass."""
        self.out.write_pending(c, res.to_json())
        self.pending.add(c)
        self._pending_kept += res.counts.get(Outcome.KEPT, 0)
        bar.update(sum(res.counts.values()))

    def read_pending(self, c: int) -> ChunkResult:
        return ChunkResult.from_json(self.out.read_pending(c))

    def generate_and_score(self, curator: Curator) -> None:
        """One chunk at a time with the backend's own model."""
        with self.bar("curate", self.todo) as bar:
            for c, part in self.todo:
                if self.cap_reached():
                    break
                self.finish_chunk(c, curator.run_chunk(part), bar)

    def generate_all(self, curator: Curator | None) -> None:
        """Phase 1: every chunk not yet generated, kept as a pending file (no target pass)."""
        left = self.to_generate()
        with self.bar("generate", left) as bar:
            for c, part in left:
                if self.cap_reached_with_pending():
                    break
                assert curator is not None  # a backend is opened whenever a chunk is left to generate
                self.keep_pending(c, curator.generate_chunk(part), bar)

    def score_pending(self) -> None:
        """Phase 2: the pending chunks in plan order, scored by a transformers copy loaded once."""
        scorer = LazyScorer(self.cfg, self.extra)
        ready = self.to_score()
        with self.bar("score", ready) as bar:
            for c, _ in ready:
                if self.cap_reached():
                    break
                res = self.read_pending(c)
                add_targets(self.cfg, res, scorer)
                self.finish_chunk(c, res, bar)


class LazyScorer:
    """The transformers copy that scores a backend's chunks when it has no model of its own; loaded
    on the first call (a run with nothing to score never loads it)."""

    def __init__(self, cfg: CurateConfig, extra: defaultdict[str, float] | None = None):
        self.cfg, self.extra, self.model = cfg, extra, None

    def __call__(self):
        if self.model is None:
            from ssb_plugin.curate.backends.hf import load_scoring_model

            t = time.perf_counter()
            self.model = load_scoring_model(self.cfg, self.cfg.model_path())
            if self.extra is not None:
                self.extra["scorer_load_s"] += time.perf_counter() - t
        return self.model
