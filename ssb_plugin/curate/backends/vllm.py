"""vLLM backend: token-id prompts in, token ids + raw top-k log-probs out, per-request seeds.

- `logprobs_mode="raw_logprobs"`: the returned log-probs are the model's temperature-1
  distribution, not the temperature/top-k processed one (set explicitly; it is also vLLM's default).
- `flat_logprobs=True`: per position vLLM returns [sampled token, rank 1..k] as flat lists, read
  straight into numpy without building a dict per position.
- `detokenize=False`: text is decoded once by the pipeline (same path as the transformers backend).
- On CPU, per-request seeds need `enable_chunked_prefill=False` (the CPU generator crashes on a
  chunked prefill), and `gpu_memory_utilization` is the share of host memory to reserve.
"""

from __future__ import annotations

import contextlib

import numpy as np

from ssb_plugin.curate.backends.contract import Generation, Request
from ssb_plugin.curate.backends.die_with_parent import engine_children_die_with_us


class VLLMBackend:
    name = "vllm"

    def __init__(self, cfg, model: str):
        from vllm import LLM
        from vllm.platforms import current_platform

        self.is_cpu = current_platform.is_cpu()
        self.cfg, self.model = cfg, model
        self.progress = bool(cfg.progress)
        kwargs = dict(
            model=model,
            revision=cfg.revision,
            dtype={"auto": "auto"}.get(cfg.dtype, cfg.dtype),
            tensor_parallel_size=int(cfg.tensor_parallel_size),
            seed=int(cfg.seed),
            logprobs_mode="raw_logprobs",
        )
        if cfg.dtype == "auto" and self.is_cpu:
            kwargs["dtype"] = "float32"  # bf16 on CPU is slow and breaks the fp32 identity check
        if int(cfg.data_parallel_size) > 1:
            kwargs["data_parallel_size"] = int(cfg.data_parallel_size)
        if cfg.max_model_len:
            kwargs["max_model_len"] = int(cfg.max_model_len)
        if cfg.gpu_memory_utilization is not None:
            kwargs["gpu_memory_utilization"] = float(cfg.gpu_memory_utilization)
        elif self.is_cpu:
            kwargs["gpu_memory_utilization"] = 0.3  # host memory on CPU: the default 0.92 refuses to start
        if cfg.enforce_eager is not None:
            kwargs["enforce_eager"] = bool(cfg.enforce_eager)
        elif self.is_cpu:
            kwargs["enforce_eager"] = True
        if self.is_cpu:
            kwargs["enable_chunked_prefill"] = False
        kwargs.update(cfg.vllm_kwargs or {})
        self.engine_kwargs = {k: v for k, v in kwargs.items() if k != "model"}
        with engine_children_die_with_us():  # no EngineCore left behind by a kill -9
            self.llm = LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = self.llm.llm_engine.model_config.max_model_len
        eos = set()
        gen_cfg = self.llm.llm_engine.model_config.try_get_generation_config() or {}
        extra = gen_cfg.get("eos_token_id")
        for t in extra if isinstance(extra, list) else [extra] if extra is not None else []:
            eos.add(int(t))
        if self.tokenizer.eos_token_id is not None:
            eos.add(int(self.tokenizer.eos_token_id))
        self.eos_token_ids = sorted(eos)

    def info(self) -> dict:
        import vllm

        return {
            "backend": self.name,
            "vllm": vllm.__version__,
            "engine": {k: v for k, v in self.engine_kwargs.items() if isinstance(v, (int, float, str, bool))},
        }

    def sampling_params(self, r: Request):
        from vllm import SamplingParams

        return SamplingParams(
            n=1,
            temperature=r.temperature,
            top_k=r.top_k if r.top_k > 0 else 0,
            top_p=1.0,
            max_tokens=r.max_tokens,
            seed=r.seed,
            logprobs=r.logprobs or None,
            flat_logprobs=True,
            detokenize=False,
        )

    def generate(self, requests: list[Request], desc: str = "generate") -> list[Generation]:
        prompts = [{"prompt_token_ids": list(r.prompt_ids)} for r in requests]
        outs = self.llm.generate(prompts, [self.sampling_params(r) for r in requests], use_tqdm=self.progress)
        return [self._convert(r, o.outputs[0]) for r, o in zip(requests, outs, strict=True)]

    def _convert(self, r: Request, c) -> Generation:
        ids = list(c.token_ids)
        finish = "stop" if c.finish_reason == "stop" else "length"
        if finish == "stop" and (not ids or ids[-1] not in self.eos_token_ids):
            # stopped on something other than an EOS token (cannot happen without stop strings)
            finish = "length"
        gen = Generation(token_ids=ids, finish_reason=finish)
        if r.logprobs:
            flat = c.logprobs
            width = r.logprobs + 1  # [sampled, rank 1..k] per position
            n = len(ids)
            if len(flat) != n or len(flat.token_ids) != n * width:
                raise RuntimeError(
                    f"vLLM returned {len(flat.token_ids)} log-prob entries for {n} tokens, expected "
                    f"{n * width} (k={r.logprobs} + the sampled token per position)"
                )
            tok = np.asarray(flat.token_ids, dtype=np.int32).reshape(n, width)[:, 1:]
            lp = np.asarray(flat.logprobs, dtype=np.float32).reshape(n, width)[:, 1:]
            gen.topk_ids = np.ascontiguousarray(tok)
            gen.topk_logprobs = np.ascontiguousarray(lp)
        return gen

    def close(self) -> None:
        """Shut the engine down now (its processes and memory), not whenever the garbage collector
        gets to it: the pipeline loads the scoring model next (it has no full logits of its own, so
        there is no `scoring_model()` here; see curate.pipeline)."""
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            import gc

            with contextlib.suppress(Exception):  # already gone is as good as shut down
                llm.llm_engine.engine_core.shutdown()
            del llm
            gc.collect()
