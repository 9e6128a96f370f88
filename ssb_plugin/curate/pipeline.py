"""The curation loop: chunks of problems -> rollouts -> selection -> teacher -> records -> shard.

Chunks are fixed slices of the source order (`chunk_size` problems), numbered globally, so a
chunk's content never depends on `--shard`, `--limit` of later rows, or on what ran before a
crash. Every request carries a seed derived from (seed, problem id, role, index): a problem's
records are the same whatever batch it lands in. Each finished chunk is one atomic shard plus a
progress file; a rerun skips finished chunks.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ssb_plugin import __version__
from ssb_plugin.curate.backends import Generation, Request, derive_seed, make_backend, vllm_available
from ssb_plugin.curate.config import ConfigError, CurateConfig
from ssb_plugin.curate.problems import BadRow, Problem, load_problems
from ssb_plugin.curate.select import Rollout, choose, teacher_outcome
from ssb_plugin.curate.targets import TargetSpec, score_rows
from ssb_plugin.curate.writer import OutputDir
from ssb_plugin.prompts import TEACHER_TEMPLATE, leaks_hint, student_messages, teacher_messages
from ssb_plugin.record import OUTCOMES, Manifest, chat_prompt_ids, tokenizer_fingerprint


@dataclass
class ChunkResult:
    rows: list[dict[str, Any]]
    counts: Counter = field(default_factory=Counter)
    timings: Counter = field(default_factory=Counter)
    stats: Counter = field(default_factory=Counter)
    outcomes: dict[str, str] = field(default_factory=dict)  # problem id -> outcome (audit trail)

    def mark(self, problem_id: str, outcome: str) -> None:
        """Record a problem's outcome: counted and kept in the audit trail together."""
        self.counts[outcome] += 1
        self.outcomes[problem_id] = outcome


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
        mcfg = AutoConfig.from_pretrained(cfg.model, revision=cfg.revision)
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


def target_spec(cfg: CurateConfig) -> TargetSpec:
    return TargetSpec(cfg.stored_topk, cfg.tail_samples, tuple(float(t) for t in cfg.target_temperatures))


class Curator:
    """Runs chunks through one backend; the backend can be shared (tests, benchmarks)."""

    def __init__(self, cfg: CurateConfig, backend):
        from ssb_plugin.grading import grade, is_equivalent

        self.cfg = cfg
        self.is_equivalent = is_equivalent
        self.backend = backend
        self.tok = backend.tokenizer
        self.grade = grade
        self.max_len = getattr(backend, "max_model_len", None)

    def _decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=True)

    def same_answer(self, a: str, b: str) -> bool:
        """The grader's equivalence ("18" and "18.0" agree): how wrong answers are grouped."""
        return a == b or self.is_equivalent(a, b, timeout=self.cfg.grade_timeout)

    def _grade(self, text: str, gold: str):
        return self.grade(text, gold, timeout=self.cfg.grade_timeout, fallback=self.cfg.answer_fallback)

    def _budget(self, prompt_len: int, max_tokens: int) -> int | None:
        """Tokens left for the answer, or None when the prompt alone does not fit the context."""
        if not self.max_len:
            return max_tokens
        left = self.max_len - prompt_len
        return min(max_tokens, left) if left >= 1 else None

    def run_chunk(self, items: list[Problem | BadRow]) -> ChunkResult:
        cfg, res = self.cfg, ChunkResult(rows=[])
        t = time.perf_counter()
        todo = []  # (problem, student messages, prompt ids, max tokens)
        for it in items:
            if isinstance(it, BadRow):
                res.mark(it.id, "bad_input")
                continue
            msgs = student_messages(it.question, cfg.system_prompt)
            ids = chat_prompt_ids(self.tok, msgs)
            budget = self._budget(len(ids), cfg.rollout_max_tokens)
            if budget is None:
                res.mark(it.id, "too_long")
                continue
            todo.append((it, msgs, ids, budget))
        K = cfg.num_rollouts
        requests = [
            Request(
                tuple(ids),
                cfg.rollout_temperature,
                cfg.rollout_top_k,
                budget,
                derive_seed(cfg.seed, p.id, "rollout", j),
            )
            for p, _, ids, budget in todo
            for j in range(K)
        ]
        res.timings["prepare_s"] += time.perf_counter() - t
        t = time.perf_counter()
        gens = self.backend.generate(requests, desc="rollouts") if requests else []
        res.timings["rollout_generate_s"] += time.perf_counter() - t

        t = time.perf_counter()
        teacher_jobs = []  # (problem, student msgs, teacher msgs, teacher ids, rollouts, choice, budget)
        for n, (p, msgs, _, _) in enumerate(todo):
            rollouts = []
            for g in gens[n * K : (n + 1) * K]:
                text = self._decode(g.token_ids)
                r = self._grade(text, p.gold)
                rollouts.append(Rollout(text, r.extracted, r.correct, g.finish_reason, r.reason))
                res.stats["rollouts"] += 1
                res.stats["rollout_tokens"] += len(g.token_ids)
                res.stats["rollouts_correct"] += int(r.correct)
                res.stats["rollouts_no_answer"] += int(r.extracted is None)
                res.stats["grader_timeouts"] += int(r.reason in ("timeout", "error"))
            outcome, choice = choose(rollouts, same_answer=self.same_answer)
            if outcome:
                res.mark(p.id, outcome)
                continue
            tmsgs = teacher_messages(
                p.question,
                rollouts[choice.correct_index].text,
                rollouts[choice.wrong_index].text,
                cfg.system_prompt,
            )
            tids = chat_prompt_ids(self.tok, tmsgs)
            budget = self._budget(len(tids), cfg.teacher_max_tokens)
            if budget is None:
                res.mark(p.id, "too_long")
                continue
            teacher_jobs.append((p, msgs, tmsgs, tids, rollouts, choice, budget))
        res.timings["grading_s"] += time.perf_counter() - t

        requests = [
            Request(
                tuple(tids),
                cfg.teacher_temperature,
                cfg.teacher_top_k,
                budget,
                derive_seed(cfg.seed, p.id, "teacher"),
            )
            for p, _, _, tids, _, _, budget in teacher_jobs
        ]
        t = time.perf_counter()
        tgens: list[Generation] = self.backend.generate(requests, desc="teacher") if requests else []
        res.timings["teacher_generate_s"] += time.perf_counter() - t

        t = time.perf_counter()
        scoring = []  # (prompt ids, response ids) of the kept records, in row order
        for (p, msgs, tmsgs, tids, rollouts, choice, _), g in zip(teacher_jobs, tgens, strict=True):
            text = self._decode(g.token_ids)
            res.stats["teacher_tokens"] += len(g.token_ids)
            graded = self._grade(text, p.gold) if g.finish_reason == "stop" else None
            outcome = teacher_outcome(
                g.finish_reason,
                bool(graded and graded.correct),
                cfg.leak_filter and leaks_hint(text, p.question),
            )
            res.mark(p.id, outcome)
            if outcome != "kept":
                continue
            res.stats["kept_tokens"] += len(g.token_ids)
            scoring.append((tids, g.token_ids))
            res.rows.append(
                {
                    "id": p.id,
                    "question": p.question,
                    "gold": p.gold,
                    "student_messages": msgs,
                    "teacher_messages": tmsgs,
                    "response_text": text,
                    "response_ids": g.token_ids,
                    "rollouts": [r.as_record() for r in rollouts],
                    "correct_index": choice.correct_index,
                    "wrong_index": choice.wrong_index,
                    "wrong_answer": choice.wrong_answer,
                    "wrong_count": choice.wrong_count,
                }
            )
        res.timings["grading_s"] += time.perf_counter() - t
        t = time.perf_counter()
        self._add_targets(res.rows, scoring)
        res.timings["target_scoring_s"] += time.perf_counter() - t
        return res

    def _add_targets(self, rows: list[dict[str, Any]], jobs: list) -> None:
        """The stored teacher target of each kept row, from one teacher-forced pass over its ids."""
        if not rows:
            return
        seeds = [derive_seed(self.cfg.seed, row["id"], "target-tail") for row in rows]
        fields = score_rows(self.backend.scoring_model(), jobs, target_spec(self.cfg), seeds=seeds)
        for row, f in zip(rows, fields, strict=True):
            row.update(f)


def reached_max_kept(cfg: CurateConfig, done: dict) -> bool:
    """--max-kept N: stop (whole chunks, in plan order) once this shard has kept N records."""
    kept = sum(info["counts"].get("kept", 0) for info in done.values())
    return cfg.max_kept is not None and kept >= cfg.max_kept


def chunk_plan(items: list, cfg: CurateConfig) -> list[tuple[int, list]]:
    """(global chunk index, items) for this shard: chunk c belongs to shard c mod N."""
    i, n = cfg.shard_spec()
    size = cfg.chunk_size
    chunks = [(c, items[s : s + size]) for c, s in enumerate(range(0, len(items), size))]
    return [(c, part) for c, part in chunks if c % n == i]


def build_manifest(
    cfg: CurateConfig, tokenizer, backend_info: dict, done: dict, plan, extra_timings
) -> Manifest:
    counts = dict.fromkeys(OUTCOMES, 0)
    timings: Counter = Counter()
    stats: Counter = Counter()
    for info in done.values():
        for k, v in info["counts"].items():
            counts[k] = counts.get(k, 0) + v
        timings.update(info["timings"])
        stats.update(info["stats"])
    timings.update(extra_timings)
    # the settings land where their declaration says (CurateConfig `manifest=`); the rest is run facts
    m = cfg.manifest_settings()
    m["model"] = str(m["model"])
    m["prompts"]["teacher_template"] = TEACHER_TEMPLATE
    m["sampling"]["rollout"]["top_p"] = 1.0
    m["sampling"]["teacher"].update(n=1, top_p=1.0)
    m["target"].update(target_spec(cfg).manifest())
    m["extra"].update(
        backend_info=backend_info,
        stats=dict(stats),
        chunks_done=sorted(done),
        chunks_total=len(plan),
        complete=all(c in done for c, _ in plan) or reached_max_kept(cfg, done),
        kept_cap_reached=reached_max_kept(cfg, done),
        settings=cfg.result_settings(),
    )
    return Manifest(
        **m,
        tokenizer=tokenizer_fingerprint(tokenizer),
        counts=counts,
        timings={k: round(v, 3) for k, v in timings.items()},
        version=__version__,
    )


def curate(cfg: CurateConfig, backend=None, on_progress=None) -> Manifest:
    """Run (or resume) curation into cfg.out; returns the final manifest."""
    from tqdm.auto import tqdm

    wall = time.perf_counter()
    resolve(cfg)
    cfg.validate()
    items = load_problems(cfg)  # data errors surface before any weights load
    if backend is None:
        check_model_config(cfg)
    plan = chunk_plan(items, cfg)
    out = OutputDir(cfg.out)
    out.prepare({**cfg.result_settings(), "shard": cfg.shard}, overwrite=cfg.overwrite)
    done = out.done_chunks()
    todo = [] if reached_max_kept(cfg, done) else [(c, part) for c, part in plan if c not in done]
    extra: Counter = Counter()
    own_backend = backend is None
    if backend is None and todo:
        from ssb_plugin.grading import warmup

        warmup()  # start the grader's worker while the model loads
        t = time.perf_counter()
        backend = make_backend(cfg, cfg.model)
        extra["model_load_s"] += time.perf_counter() - t
    if backend is not None:
        tokenizer, info = backend.tokenizer, backend.info()
    else:  # everything already done: the manifest only needs the tokenizer
        from transformers import AutoTokenizer

        tokenizer, info = (
            AutoTokenizer.from_pretrained(cfg.model, revision=cfg.revision),
            {"backend": cfg.backend},
        )
    curator = Curator(cfg, backend) if todo else None
    total = sum(len(part) for _, part in plan)
    bar = tqdm(
        total=total,
        initial=sum(len(part) for c, part in plan if c in done),
        desc="curate",
        unit="problem",
        disable=not cfg.progress,
    )

    def postfix():
        kept = sum(d["counts"].get("kept", 0) for d in done.values())
        dropped = sum(v for d in done.values() for k, v in d["counts"].items() if k != "kept")
        bar.set_postfix(kept=kept, dropped=dropped)

    postfix()
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
        out.write_manifest(build_manifest(cfg, tokenizer, info, done, plan, extra))
        bar.update(len(part))
        postfix()
        if on_progress:
            on_progress(c, res)
    bar.close()
    extra["wall_s_last_invocation"] = time.perf_counter() - wall
    manifest = build_manifest(cfg, tokenizer, info, done, plan, extra)
    out.write_manifest(manifest)
    if own_backend and backend is not None:
        backend.close()
    return manifest
