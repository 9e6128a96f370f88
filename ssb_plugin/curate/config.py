"""Curation settings: one dataclass, read from a YAML/JSON file and/or flags, validated up front.

Everything a run depends on is checked here, before any model weights load, so a typo costs
seconds, not an engine start.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ssb_plugin.prompts import SYSTEM_PROMPT

BACKENDS = ("auto", "vllm", "transformers")
GOLD_FORMATS = ("auto", "gsm8k", "boxed", "plain")
DTYPES = ("auto", "float32", "bfloat16", "float16")
_SHARD_RE = re.compile(r"^(\d+)/(\d+)$")

# Settings that change which records a run produces; a resumed or merged run must agree on them.
RESULT_KEYS = (
    "model",
    "revision",
    "data",
    "data_config",
    "split",
    "question_field",
    "answer_field",
    "id_field",
    "gold_format",
    "limit",
    "chunk_size",
    "batch_size",
    "backend",
    "dtype",
    "num_rollouts",
    "rollout_temperature",
    "rollout_top_k",
    "rollout_max_tokens",
    "teacher_temperature",
    "teacher_top_k",
    "teacher_max_tokens",
    "stored_topk",
    "tail_samples",
    "target_temperatures",
    "seed",
    "answer_fallback",
    "grade_timeout",
    "leak_filter",
    "system_prompt",
)


class ConfigError(ValueError):
    """A bad setting; the message names the key and what is wrong with it."""


@dataclass
class CurateConfig:
    out: str = ""
    # model (None: the embedded default, SmolLM2-135M-Instruct)
    model: str | None = None
    revision: str | None = None
    backend: str = "auto"
    dtype: str = "auto"
    # data: a hub dataset id or a local .jsonl/.json/.parquet file
    data: str = "openai/gsm8k"
    data_config: str | None = "main"
    split: str = "train"
    question_field: str = "question"
    answer_field: str = "answer"
    id_field: str | None = None
    gold_format: str = "auto"
    limit: int | None = None
    shard: str = "0/1"
    # rollouts (paper: K=4, temperature 0.8, top-k 50; 8192 tokens, GSM8K answers need ~400)
    num_rollouts: int = 4
    rollout_temperature: float = 0.8
    rollout_top_k: int = 50
    rollout_max_tokens: int = 2048
    # teacher (paper: temperature 0.4, top-k 50)
    teacher_temperature: float = 0.4
    teacher_top_k: int = 50
    teacher_max_tokens: int = 2048
    stored_topk: int = 64  # teacher log-probs stored per answer token (the top ones)
    tail_samples: int = 64  # tail ids sampled per answer token (ssb_plugin.curate.targets)
    target_temperatures: list[float] = field(default_factory=lambda: [1.0, 2.0])  # exact log-normalisers
    seed: int = 0
    # grading
    answer_fallback: bool = False
    grade_timeout: float = 2.0
    leak_filter: bool = True
    system_prompt: str = SYSTEM_PROMPT
    # execution
    chunk_size: int = 64  # problems per checkpoint shard
    batch_size: int = 64  # transformers: sequences per generate() call
    device: str = "auto"  # transformers only
    threads: int | None = None  # transformers on CPU: torch threads (1 beats 2 on a shared 2-core box)
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None  # vLLM; on CPU: fraction of host memory
    enforce_eager: bool | None = None
    vllm_kwargs: dict[str, Any] = field(default_factory=dict)
    overwrite: bool = False
    progress: bool = True
    push_to_hub: str | None = None
    hub_private: bool = True

    # ------------------------------------------------------------------------------------------
    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_file(cls, path: str | Path) -> dict[str, Any]:
        """Read a YAML or JSON config file into a dict of known keys (unknown keys are an error)."""
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        text = p.read_text()
        try:
            if p.suffix == ".json":
                data = json.loads(text)
            else:
                import yaml

                data = yaml.safe_load(text)
        except Exception as e:  # noqa: BLE001 - any parse error is a config error
            raise ConfigError(f"config file {p}: cannot parse ({e})") from e
        data = data or {}
        if not isinstance(data, dict):
            raise ConfigError(f"config file {p}: expected a mapping of settings, got {type(data).__name__}")
        data = {k.replace("-", "_"): v for k, v in data.items()}
        unknown = sorted(set(data) - set(cls.keys()))
        if unknown:
            raise ConfigError(
                f"config file {p}: unknown key(s) {unknown}; known keys: {', '.join(cls.keys())}"
            )
        return data

    @classmethod
    def build(cls, file_values: dict[str, Any] | None = None, **overrides: Any) -> CurateConfig:
        """File values, then overrides (flags) that are not None, then validation."""
        values = dict(file_values or {})
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = sorted(set(values) - set(cls.keys()))
        if unknown:
            raise ConfigError(f"unknown setting(s) {unknown}")
        cfg = cls(**values)
        cfg.validate()
        return cfg

    def shard_spec(self) -> tuple[int, int]:
        m = _SHARD_RE.match(str(self.shard).strip())
        if not m:
            raise ConfigError(f"shard: expected 'i/N' (e.g. 0/4), got {self.shard!r}")
        i, n = int(m.group(1)), int(m.group(2))
        if n < 1 or not 0 <= i < n:
            raise ConfigError(f"shard: need 0 <= i < N, got {self.shard!r}")
        return i, n

    def is_local_data(self) -> bool:
        return Path(self.data).suffix.lower() in (".jsonl", ".json", ".parquet") or Path(self.data).exists()

    def validate(self) -> None:
        """Check every setting that can be checked without the model; raise ConfigError naming the key."""

        def need(cond: bool, key: str, msg: str) -> None:
            if not cond:
                raise ConfigError(f"{key}: {msg} (got {getattr(self, key)!r})")

        need(bool(self.out), "out", "an output directory is required (--out)")
        need(not Path(self.out).is_file(), "out", "is an existing file, expected a directory")
        need(self.backend in BACKENDS, "backend", f"must be one of {BACKENDS}")
        need(self.dtype in DTYPES, "dtype", f"must be one of {DTYPES}")
        need(self.gold_format in GOLD_FORMATS, "gold_format", f"must be one of {GOLD_FORMATS}")
        need(bool(self.data), "data", "a hub dataset id or a local .jsonl/.parquet file is required")
        if self.is_local_data():
            need(Path(self.data).is_file(), "data", "local data file does not exist")
            need(
                Path(self.data).suffix.lower() in (".jsonl", ".json", ".parquet"),
                "data",
                "local data must be .jsonl, .json or .parquet",
            )
        need(bool(self.question_field), "question_field", "must be a column name")
        need(bool(self.answer_field), "answer_field", "must be a column name")
        need(self.limit is None or int(self.limit) >= 1, "limit", "must be >= 1")
        self.shard_spec()
        need(int(self.num_rollouts) >= 2, "num_rollouts", "K must be >= 2 (one correct and one wrong needed)")
        need(
            float(self.rollout_temperature) > 0, "rollout_temperature", "must be > 0 (K samples must differ)"
        )
        need(float(self.teacher_temperature) >= 0, "teacher_temperature", "must be >= 0 (0 = greedy)")
        for key in ("rollout_top_k", "teacher_top_k"):
            need(int(getattr(self, key)) >= 0, key, "must be >= 0 (0 = no top-k filter)")
        for key in ("rollout_max_tokens", "teacher_max_tokens", "chunk_size", "batch_size", "stored_topk"):
            need(int(getattr(self, key)) >= 1, key, "must be >= 1")
        need(int(self.tail_samples) >= 0, "tail_samples", "must be >= 0")
        need(
            bool(self.target_temperatures) and all(float(t) > 0 for t in self.target_temperatures),
            "target_temperatures",
            "must be a non-empty list of temperatures > 0",
        )
        self.target_temperatures = sorted({float(t) for t in self.target_temperatures})
        need(self.threads is None or int(self.threads) >= 1, "threads", "must be >= 1")
        for key in ("tensor_parallel_size", "data_parallel_size"):
            need(int(getattr(self, key)) >= 1, key, "must be >= 1")
        need(self.max_model_len is None or int(self.max_model_len) >= 16, "max_model_len", "must be >= 16")
        need(
            self.gpu_memory_utilization is None or 0 < float(self.gpu_memory_utilization) <= 1,
            "gpu_memory_utilization",
            "must be in (0, 1]",
        )
        need(float(self.grade_timeout) > 0, "grade_timeout", "must be > 0 seconds")
        need(isinstance(self.vllm_kwargs, dict), "vllm_kwargs", "must be a mapping")
        need(bool(self.system_prompt and self.system_prompt.strip()), "system_prompt", "must not be empty")
        if self.model is not None and (self.model.startswith(("/", ".", "~")) or Path(self.model).exists()):
            need(Path(self.model).expanduser().is_dir(), "model", "local model directory does not exist")
            need(
                (Path(self.model).expanduser() / "config.json").is_file(),
                "model",
                "local model directory has no config.json",
            )

    def result_settings(self) -> dict[str, Any]:
        """The settings that determine the records (compared on resume and merge)."""
        d = asdict(self)
        return {k: d[k] for k in RESULT_KEYS}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
