"""transformers backend: batched, left-padded `generate` with per-request seeded sampling.

One logits processor does two jobs at every step, on the float32 logits `generate` hands it before
any other processing: it records the raw (temperature-1) top-k log-probs, and it samples each row
with that row's own torch.Generator (temperature, top-k), returning a one-hot score so greedy
`generate` takes exactly that token. So sampling is per-request seeded (a row's tokens do not
depend on its batch neighbours' random draws) and the top-k comes from the pass that sampled it.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ssb_plugin.curate.backends.contract import Generation, Request


def _resolve_device(name: str) -> str:
    import torch

    if name != "auto":
        return name
    return "cuda" if torch.cuda.is_available() else "cpu"


def _resolve_dtype(name: str, device: str):
    import torch

    if name == "auto":
        # CPU: fp32 (bf16 matmuls are slow there and the identity check wants fp32); GPU: the checkpoint's.
        return torch.float32 if device == "cpu" else "auto"
    return getattr(torch, name)


def load_scoring_model(cfg, model: str):
    """A transformers copy of `model` for the target pass of a backend that has no full logits."""
    from transformers import AutoModelForCausalLM

    device = _resolve_device(cfg.device)
    scorer = AutoModelForCausalLM.from_pretrained(
        model, revision=cfg.revision, dtype=_resolve_dtype(cfg.dtype, device)
    )
    return scorer.to(device).eval()  # type: ignore[arg-type]  # transformers' decorated to() hides its signature


class _SeededSampler:
    """Logits processor: record raw top-k, then sample each row with its own generator."""

    def __init__(self, requests: list[Request], device: str):
        import torch

        self.temperature = requests[0].temperature
        self.top_k = requests[0].top_k
        self.k = requests[0].logprobs
        self.generators = [torch.Generator(device=device).manual_seed(r.seed) for r in requests]
        self.topk_ids: list = []
        self.topk_logprobs: list = []

    def __call__(self, input_ids, scores):
        import torch

        raw = scores.float()
        if self.k:
            values, ids = torch.log_softmax(raw, dim=-1).topk(self.k, dim=-1)
            self.topk_logprobs.append(values)
            self.topk_ids.append(ids.to(torch.int32))
        if self.temperature == 0:
            chosen = raw.argmax(dim=-1)
        else:
            z = raw / self.temperature
            cand = None
            if 0 < self.top_k < z.shape[-1]:
                z, cand = z.topk(self.top_k, dim=-1)
            probs = torch.softmax(z, dim=-1)
            picks = torch.cat(
                [torch.multinomial(probs[b], 1, generator=g) for b, g in enumerate(self.generators)]
            )
            chosen = picks if cand is None else cand.gather(1, picks[:, None]).squeeze(1)
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(1, chosen[:, None], 0.0)
        return out


class TransformersBackend:
    name = "transformers"

    def __init__(self, cfg, model: str):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

        if getattr(cfg, "threads", None):
            torch.set_num_threads(int(cfg.threads))
        self.device = _resolve_device(cfg.device)
        self.dtype = _resolve_dtype(cfg.dtype, self.device)
        self.batch_size = int(cfg.batch_size)
        self.progress = bool(cfg.progress)
        self.tokenizer = AutoTokenizer.from_pretrained(model, revision=cfg.revision)
        self.model = AutoModelForCausalLM.from_pretrained(model, revision=cfg.revision, dtype=self.dtype)
        self.model.to(self.device).eval()  # type: ignore[arg-type]  # transformers' decorated to() hides its signature
        eos = self.model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            eos.add(self.tokenizer.eos_token_id)
        if not eos:
            raise ValueError(f"model {model!r}: no EOS token in its generation config or tokenizer")
        self.eos_token_ids = sorted(eos)
        pad = self.tokenizer.pad_token_id
        self.pad_token_id = pad if pad is not None else self.eos_token_ids[0]
        # A clean generation config: the checkpoint's defaults (repetition penalty, suppressed tokens...)
        # must not touch the logits before our processor sees them.
        self.model.generation_config = GenerationConfig(
            eos_token_id=self.eos_token_ids, pad_token_id=self.pad_token_id, do_sample=False
        )
        self.max_model_len = cfg.max_model_len or getattr(self.model.config, "max_position_embeddings", None)
        self._torch = torch

    def info(self) -> dict:
        import torch
        import transformers

        return {
            "backend": self.name,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "device": self.device,
            "dtype": str(self.model.dtype),
            "batch_size": self.batch_size,
            "threads": torch.get_num_threads(),
        }

    def generate(self, requests: list[Request], desc: str = "generate") -> list[Generation]:
        """Generate all requests; batches group equal sampling settings, longest prompts first."""
        from tqdm.auto import tqdm

        results: list[Generation | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, r in enumerate(requests):
            groups[(r.temperature, r.top_k, r.max_tokens, r.logprobs)].append(i)
        batches = []
        for idx in groups.values():
            idx = sorted(idx, key=lambda i: (-len(requests[i].prompt_ids), i))
            batches += [idx[s : s + self.batch_size] for s in range(0, len(idx), self.batch_size)]
        bar = tqdm(total=len(requests), desc=desc, unit="seq", leave=False, disable=not self.progress)
        for batch in batches:
            for i, gen in zip(batch, self._generate_batch([requests[i] for i in batch]), strict=True):
                results[i] = gen
            bar.update(len(batch))
        bar.close()
        return results  # type: ignore[return-value]

    def _generate_batch(self, requests: list[Request]) -> list[Generation]:
        torch = self._torch
        from transformers import LogitsProcessorList

        width = max(len(r.prompt_ids) for r in requests)
        ids = torch.full((len(requests), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(requests), width), dtype=torch.long)
        for b, r in enumerate(requests):  # left padding: every prompt ends where generation starts
            ids[b, width - len(r.prompt_ids) :] = torch.tensor(r.prompt_ids, dtype=torch.long)
            mask[b, width - len(r.prompt_ids) :] = 1
        sampler = _SeededSampler(requests, self.device)
        with torch.inference_mode():
            out = self.model.generate(  # type: ignore[misc]  # transformers types generate's self as a mixin
                input_ids=ids.to(self.device),
                attention_mask=mask.to(self.device),
                max_new_tokens=requests[0].max_tokens,
                logits_processor=LogitsProcessorList([sampler]),
            )
        new = out[:, width:].cpu().numpy()
        if sampler.k:
            all_ids = torch.stack(sampler.topk_ids, dim=1).cpu().numpy()  # (B, T, k)
            all_lps = torch.stack(sampler.topk_logprobs, dim=1).float().cpu().numpy()
        eos = set(self.eos_token_ids)
        gens = []
        for b in range(len(requests)):
            row = new[b].tolist()
            end = next((j for j, t in enumerate(row) if t in eos), None)
            n = len(row) if end is None else end + 1
            gen = Generation(token_ids=row[:n], finish_reason="length" if end is None else "stop")
            if sampler.k:
                gen.topk_ids = np.ascontiguousarray(all_ids[b, :n], dtype=np.int32)
                gen.topk_logprobs = np.ascontiguousarray(all_lps[b, :n], dtype=np.float32)
            gens.append(gen)
        return gens

    def scoring_model(self):
        """The model for the teacher-forced target pass (ssb_plugin.curate.targets): this one."""
        return self.model

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]  # the weights go; a closed backend is not used again
