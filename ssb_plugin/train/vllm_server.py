"""On-policy rollouts served by a running vLLM server (`ssb_rollout_engine: vllm_server`).

The trainer keeps the weights; a vLLM OpenAI server on the same base model generates. After each
optimizer step the main process writes the current adapter (PEFT's `save_pretrained`) under
`ssb_vllm_adapter_dir` and has the server reload it in place (`POST /v1/load_lora_adapter`,
`load_inplace`), so every rank's samples come from the weights being trained; the samples
themselves are one batched `POST /v1/completions` per micro-batch, token ids in and out
(`return_token_ids`), each request with its own seed. The server needs `--enable-lora`,
`--max-lora-rank` >= the adapter's rank and `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`; trainer and
server must see the same filesystem path (one node, or a shared volume). docs/training.md,
"On-policy rollouts".
"""

from __future__ import annotations

import hashlib
import json
import shutil
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from ssb_plugin.train.online import peft_model

ADAPTER_NAME = "ssb-student"  # the served adapter's name: the one the completions ask for


def request_seed(seed: int, step: int, rank: int, call: int) -> int:
    """A micro-batch's sampling seed from (run seed, optimizer step, rank, call number)."""
    digest = hashlib.sha256(f"{seed}\x00{step}\x00{rank}\x00{call}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


class ServerError(RuntimeError):
    """The vLLM server refused or could not be reached; the message says which call and why."""


def _post(url: str, payload: dict, timeout: float) -> dict:
    req = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read().decode()
    except urllib.error.HTTPError as e:
        raise ServerError(f"{url}: HTTP {e.code}: {e.read().decode()[:2000]}") from e
    except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
        raise ServerError(f"{url}: no answer from the vLLM server ({e})") from e
    return json.loads(body) if body.strip().startswith(("{", "[")) else {"text": body}


class VllmServerSampler:
    """Samples the student's answers on a vLLM server that serves the current adapter."""

    def __init__(self, url: str, adapter_dir: str | Path, timeout: float = 600.0):
        self.url = url.rstrip("/")
        self.adapter_dir = Path(adapter_dir)
        self.timeout = timeout
        self.synced_step: int | None = None
        self._written: Path | None = None

    def _check_dir(self) -> None:
        """The adapter directory is this sampler's: refused if it holds anything it did not write."""
        if self.adapter_dir.exists() and any(
            not p.name.startswith("step-") for p in self.adapter_dir.iterdir()
        ):
            raise ServerError(
                f"ssb_vllm_adapter_dir: {self.adapter_dir} holds files this run did not write; point it "
                f"at an empty or new directory (it keeps the adapter the vLLM server loads)"
            )

    def sync(self, model: torch.nn.Module, step: int, is_main: bool) -> None:
        """The server serves the adapter as it is at optimizer step `step` (once per step; the main
        process writes and loads it, the other ranks wait at a barrier)."""
        if self.synced_step == step:
            return
        if is_main:
            if self._written is None:
                self._check_dir()
            target = self.adapter_dir / f"step-{step}"
            if target.exists():  # a step redone after a resume: this sampler wrote it
                shutil.rmtree(target)
            peft_model(model).save_pretrained(str(target))  # type: ignore[operator]  # PEFT's, via Module.__getattr__
            payload = {"lora_name": ADAPTER_NAME, "lora_path": str(target.resolve())}
            try:
                _post(f"{self.url}/v1/load_lora_adapter", {**payload, "load_inplace": True}, self.timeout)
            except ServerError as e:
                raise ServerError(
                    f"{e}\n(the server needs --enable-lora, --max-lora-rank >= the adapter's rank and "
                    f"VLLM_ALLOW_RUNTIME_LORA_UPDATING=True, on the trainer's base model, and must read {target})"
                ) from e
            if self._written is not None and self._written != target:
                shutil.rmtree(self._written, ignore_errors=True)  # the previous step's, written above
            self._written = target
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()
        self.synced_step = step

    def sample(
        self, prompts: list[list[int]], *, max_new_tokens: int, temperature: float, eos_id: int | list[int],
        seed: int,
    ) -> list[list[int]]:  # fmt: skip
        """Each prompt's sampled answer token ids, up to and with its EOS (as the HF path returns them).
        One request per prompt, sent at once (the server batches them): a request's seed covers all
        its prompts alike, so each prompt gets its own (seed + row)."""
        eos = eos_id if isinstance(eos_id, list) else [eos_id]

        def one(row: int) -> list[int]:
            payload = {
                "model": ADAPTER_NAME,
                "prompt": prompts[row],
                "max_tokens": max_new_tokens,
                "temperature": temperature,
                "top_p": 1.0,
                "top_k": 0,
                "n": 1,
                "seed": (seed + row) & 0x7FFFFFFF,
                "stop_token_ids": eos,
                "skip_special_tokens": False,
                "return_token_ids": True,
            }
            out = _post(f"{self.url}/v1/completions", payload, self.timeout)
            choices = out.get("choices") or [{}]
            ids = choices[0].get("token_ids")
            if ids is None:
                raise ServerError(f"{self.url}/v1/completions: no token_ids in the answer: {str(out)[:500]}")
            end = next((i + 1 for i, t in enumerate(ids) if t in eos), len(ids))
            return list(ids[:end])

        with ThreadPoolExecutor(max_workers=min(32, len(prompts))) as pool:
            return list(pool.map(one, range(len(prompts))))
