"""Build a small curated set (parquet shard + manifest.json) in the exact ssb_plugin.record schema.

Stand-in for `ssb-curate` output in the training tests: the teacher (the model itself, on the hinted
prompt of ssb_plugin.prompts) samples a response with transformers; the stored target (top-k, exact
log-normalisers, sampled tail) comes from curation's own teacher-forced scoring pass
(ssb_plugin.curate.targets.score_rows) over prompt + response.
"""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

from ssb_plugin.prompts import student_messages, teacher_messages
from ssb_plugin.record import Manifest, chat_prompt_ids, features, tokenizer_fingerprint

SHARD = "data/train-00000-of-00001.parquet"


def _problems(n: int, seed: int) -> list[tuple[str, str, str, str]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        q = f"What is {a} + {b}?"
        out.append((f"fixture-{seed}-{i}", q, str(a + b), str(a + b + 1)))
    return out


def build_curated_set(
    model_dir: str | Path,
    out: str | Path,
    *,
    n: int = 4,
    k: int = 8,
    max_new_tokens: int = 16,
    seed: int = 0,
    vary_lengths: bool = True,
    tail: int = 8,
) -> Path:
    """Write `n` curated rows for `model_dir` into `out`; k=None stores the full vocabulary (k = V),
    `tail` ids sampled from the teacher's tail per answer token."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a shared small CPU box, OMP spin-waiting makes 2 threads ~10x slower
    try:
        return _build(
            model_dir,
            Path(out),
            n=n,
            k=k,
            max_new_tokens=max_new_tokens,
            seed=seed,
            vary_lengths=vary_lengths,
            tail=tail,
        )
    finally:
        torch.set_num_threads(threads)


def _build(model_dir, out: Path, *, n, k, max_new_tokens, seed, vary_lengths, tail) -> Path:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ssb_plugin.curate.targets import TargetSpec, score_rows

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    eot = tok.eos_token_id  # the end-of-turn token of the chat template (<|im_end|> here)
    width = model.config.vocab_size if k is None else k
    spec = TargetSpec(stored_topk=width, tail_samples=tail)
    rows = []
    for i, (rid, q, gold, wrong) in enumerate(_problems(n, seed)):
        student = student_messages(q)
        teacher = teacher_messages(
            q, f"{q} The sum is \\boxed{{{gold}}}.", f"{q} The sum is \\boxed{{{wrong}}}."
        )
        t_prompt = chat_prompt_ids(tok, teacher)
        torch.manual_seed(seed * 1000 + i)
        with torch.no_grad():
            gen = model.generate(
                torch.tensor([t_prompt]),
                attention_mask=torch.ones(1, len(t_prompt), dtype=torch.long),
                max_new_tokens=max_new_tokens,
                do_sample=True,
                temperature=0.8,
                top_k=50,
                pad_token_id=tok.pad_token_id,
            )
        resp = gen[0, len(t_prompt) :].tolist()
        if eot in resp:
            resp = resp[: resp.index(eot)]
        if vary_lengths:  # unequal answer lengths: what makes token-count normalisation matter
            resp = resp[: max(1, max_new_tokens - 5 * (i % 4))]
        resp = resp + [eot]  # response_ids always end with the end-of-turn token
        (target,) = score_rows(model, [(t_prompt, resp)], spec, seeds=[seed * 1000 + i])
        rows.append(
            {
                "id": rid,
                "question": q,
                "gold": gold,
                "student_messages": student,
                "teacher_messages": teacher,
                "response_text": tok.decode(resp),
                "response_ids": resp,
                **target,
                "rollouts": [
                    {"text": teacher[1]["content"], "answer": gold, "correct": True, "finish_reason": "stop"},
                    {"text": "wrong", "answer": wrong, "correct": False, "finish_reason": "stop"},
                ],
                "correct_index": 0,
                "wrong_index": 1,
                "wrong_answer": wrong,
                "wrong_count": 1,
            }
        )
    manifest = Manifest(
        model=str(model_dir),
        tokenizer=tokenizer_fingerprint(tok),
        sampling={"teacher": {"temperature": 0.8, "top_k": 50, "max_new_tokens": max_new_tokens}},
        seed=seed,
        stored_topk=width,
        target=spec.manifest(),
        counts={"kept": n},
        backend="tests.support.curated_fixture (transformers)",
    )
    try:  # the curation CLI's own writer: same shard names, parquet encoding, dataset card
        from ssb_plugin.curate.writer import OutputDir
    except ImportError:
        OutputDir = None
    if OutputDir is not None:
        od = OutputDir(out)
        od.prepare(
            {"fixture": "tests.support.curated_fixture", "n": n, "k": width, "tail": tail, "seed": seed}
        )
        od.write_chunk(0, rows, {"kept": n})
        od.write_manifest(manifest)
    else:
        (out / "data").mkdir(parents=True, exist_ok=True)
        plain = [{key: v.tolist() if hasattr(v, "tolist") else v for key, v in r.items()} for r in rows]
        Dataset.from_list(plain, features=features()).to_parquet(str(out / SHARD))
        manifest.save(out)
    return out


@contextlib.contextmanager
def one_thread():
    """Run torch single-threaded for a while (shared small CPU boxes: see build_curated_set)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def cached_curated_set(model_dir: str | Path, root: str | Path, **kw) -> Path:
    """build_curated_set into root/<params>, once per root (atomic: concurrent builders are safe)."""
    import tempfile

    from ssb_plugin.atomic import publish_dir

    name = Path(model_dir).name + "-" + "-".join(f"{k}{v}" for k, v in sorted(kw.items()))
    out = Path(root) / name

    def complete(d: Path) -> bool:
        return (d / "manifest.json").exists()

    if complete(out):
        return out
    Path(root).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=name + ".", dir=root))
    build_curated_set(model_dir, tmp, **kw)
    return publish_dir(tmp, out, complete)


def peaked_model_dir(src: str | Path, root: str | Path, scale: float = 8.0) -> Path:
    """A copy of `src` with every weight scaled up: a random model's near-uniform next-token
    distributions become peaked and position-specific, so a misalignment of one position is visible."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = Path(root) / f"{Path(src).name}-peaked{scale}"
    if (out / "config.json").exists():
        return out
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.mul_(scale)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(src).save_pretrained(out)
    return out
