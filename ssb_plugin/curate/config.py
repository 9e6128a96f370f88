"""Curation settings: declared once here, read from a YAML/JSON file and/or flags, validated up front.

Each setting is one dataclass field made by `setting(...)`: its default, help text, allowed values,
whether it changes the records (`result=True`: a resumed or merged run must agree on it) and where
the manifest records it. The `ssb-curate` flags (`cli.py`), `RESULT_KEYS` and the manifest's
settings blocks (`run.build_manifest`) are all derived from these fields; add a setting here
and nowhere else.

Everything a run depends on is checked here, before any model weights load, so a typo costs
seconds, not an engine start.
"""

from __future__ import annotations

import json
import re
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ssb_plugin.prompts import SYSTEM_PROMPT

_SHARD_RE = re.compile(r"^(\d+)/(\d+)$")

# The stored-target defaults, declared here once (the settings below, TargetSpec and the manifest
# read them). 32 + 92: 1000 bytes per answer token, the best LoRA-gradient cosine of the <= 1 KB
# variants measured (benchmarks/objective.py; docs/training.md, "The objective").
DEFAULT_STORED_TOPK = 32
DEFAULT_TAIL_SAMPLES = 92
DEFAULT_TARGET_TEMPERATURES = (1.0, 2.0)


def setting(
    default: Any = None,
    help: str = "",  # noqa: A002 - the name argparse and TRL's field metadata use
    *,
    result: bool = False,
    choices: tuple[str, ...] | None = None,
    manifest: str | tuple[str, ...] = (),
    factory: Any = None,
) -> Any:
    """One curation setting. `manifest`: dotted path(s) in manifest.json that record its value."""
    metadata = {
        "help": help,
        "result": result,
        "choices": choices,
        "manifest": (manifest,) if isinstance(manifest, str) else tuple(manifest),
    }
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


class ConfigError(ValueError):
    """A bad setting; the message names the key and what is wrong with it."""


@dataclass
class CurateConfig:
    out: str = setting("", "output directory (resumed if it exists)")
    # model
    model: str | None = setting(
        None,
        "model id or local directory (default: the embedded SmolLM2-135M-Instruct)",
        result=True,
        manifest="model",
    )
    revision: str | None = setting(None, "model revision", result=True, manifest="revision")
    backend: str = setting(
        "auto",
        "generation engine (auto: vllm when importable)",
        result=True,
        choices=("auto", "vllm", "transformers"),
        manifest="backend",
    )
    dtype: str = setting(
        "auto",
        "model dtype (auto: fp32 on CPU)",
        result=True,
        choices=("auto", "float32", "bfloat16", "float16"),
    )
    # data: a hub dataset id or a local .jsonl/.json/.parquet file
    data: str = setting(
        "openai/gsm8k", "hub dataset id or local .jsonl/.parquet", result=True, manifest="source.data"
    )
    data_config: str | None = setting(
        "main", "hub dataset config", result=True, manifest="source.data_config"
    )
    split: str = setting("train", "hub dataset split", result=True, manifest="source.split")
    question_field: str = setting(
        "question", "question column", result=True, manifest="source.question_field"
    )
    answer_field: str = setting("answer", "gold column", result=True, manifest="source.answer_field")
    id_field: str | None = setting(
        None, "id column (default: <source>:<row index>)", result=True, manifest="source.id_field"
    )
    gold_format: str = setting(
        "auto",
        "how the gold answer is written: gsm8k = after ####",
        result=True,
        choices=("auto", "gsm8k", "boxed", "plain"),
        manifest="source.gold_format",
    )
    limit: int | None = setting(None, "use the first N source rows", result=True, manifest="source.limit")
    shard: str = setting(
        "0/1",
        "i/N: this machine's part of the problem list (chunks c with c mod N == i)",
        manifest="source.shard",
    )
    # rollouts (paper: K=4, temperature 0.8, top-k 50; 8192 tokens, GSM8K answers need ~400)
    num_rollouts: int = setting(
        4, "K rollouts per problem (paper 4)", result=True, manifest="sampling.rollout.n"
    )
    rollout_temperature: float = setting(
        0.8, "rollout sampling temperature (paper 0.8)", result=True, manifest="sampling.rollout.temperature"
    )
    rollout_top_k: int = setting(
        50, "rollout top-k filter, 0 = off (paper 50)", result=True, manifest="sampling.rollout.top_k"
    )
    rollout_max_tokens: int = setting(
        8192, "max new tokens per rollout (paper 8192)", result=True, manifest="sampling.rollout.max_tokens"
    )
    # teacher (paper: temperature 0.4, top-k 50)
    teacher_temperature: float = setting(
        0.4, "teacher sampling temperature (paper 0.4)", result=True, manifest="sampling.teacher.temperature"
    )
    teacher_top_k: int = setting(
        50, "teacher top-k filter, 0 = off (paper 50)", result=True, manifest="sampling.teacher.top_k"
    )
    teacher_max_tokens: int = setting(
        8192,
        "max new tokens of the teacher answer, longer: dropped as too_long (paper 8192)",
        result=True,
        manifest="sampling.teacher.max_tokens",
    )
    teacher_attempts: int = setting(
        1,
        "teacher answers sampled per problem; the first one that finishes, is right and does not leak "
        "is kept (paper 1; a small teacher that rambles past its budget keeps more problems with 2-4)",
        result=True,
        manifest="sampling.teacher.n",
    )
    # the stored teacher target (ssb_plugin.curate.targets; docs/training.md, "The objective")
    stored_topk: int = setting(
        DEFAULT_STORED_TOPK,
        "teacher log-probs stored per answer token: the top ones (the sampling filters are *_top_k)",
        result=True,
        manifest=("stored_topk", "target.stored_topk"),
    )
    tail_samples: int = setting(
        DEFAULT_TAIL_SAMPLES,
        "teacher tail ids sampled per answer token (they carry the probability outside the top ones)",
        result=True,
        manifest="target.tail_samples",
    )
    target_temperatures: list[float] = setting(
        help="temperatures whose exact log-normaliser is stored: training runs at one of them",
        result=True,
        manifest="target.temperatures",
        factory=lambda: list(DEFAULT_TARGET_TEMPERATURES),
    )
    stored_target: bool = setting(
        True,
        "store the teacher target (the fields above; one scoring pass); --no-stored-target: a set for "
        "training with `ssb_teacher: online` only, whose teacher is recomputed each step (no log-probs)",
        result=True,
        manifest="target.stored",
    )
    max_kept: int | None = setting(
        None,
        "stop once this many records are kept (the paper: 256); whole chunks, so it may overshoot by one chunk",
        result=True,
        manifest="extra.max_kept",
    )
    seed: int = setting(
        0, "global seed; per-request seeds derive from it and the problem id", result=True, manifest="seed"
    )
    # grading
    answer_fallback: bool = setting(
        False,
        "accept the last number when no boxed/phrased answer is found",
        result=True,
        manifest="extra.answer_fallback",
    )
    grade_timeout: float = setting(
        2.0, "seconds per answer comparison", result=True, manifest="extra.grade_timeout"
    )
    leak_filter: bool = setting(
        True,
        "drop teacher answers that mention the attempts/students",
        result=True,
        manifest="extra.leak_filter",
    )
    system_prompt: str = setting(
        SYSTEM_PROMPT, "override the tutor system prompt", result=True, manifest="prompts.system"
    )
    # execution
    chunk_size: int = setting(64, "problems per checkpoint shard", result=True, manifest="source.chunk_size")
    batch_size: int = setting(64, "transformers: sequences per generate() call", result=True)
    device: str = setting("auto", "transformers: auto | cpu | cuda | cuda:1 ...")
    threads: int | None = setting(
        None, "transformers on CPU: torch threads (on a busy 2-core box 1 is much faster than 2)"
    )
    tensor_parallel_size: int = setting(1, "vLLM tensor parallel size")
    data_parallel_size: int = setting(1, "vLLM data parallel size")
    max_model_len: int | None = setting(
        None, "vLLM max_model_len (prompts that do not fit count as too_long)"
    )
    gpu_memory_utilization: float | None = setting(
        None, "vLLM memory fraction (on CPU: of host memory; default there 0.3)"
    )
    enforce_eager: bool | None = setting(None, "vLLM enforce_eager (default: on for CPU)")
    vllm_kwargs: dict[str, Any] = setting(
        help="extra vLLM LLM() arguments as JSON, e.g. '{\"swap_space\": 4}'", factory=dict
    )
    ray: str | None = setting(
        None,
        "run the model stages on Ray Data: 'local' starts a cluster in this process, 'auto' joins the one "
        "on this machine or at RAY_ADDRESS, or an address (ray://head:10001); see docs/scale-out.md",
    )
    ray_replicas: int = setting(1, "--ray: engines per model stage, each on --tensor-parallel-size GPUs")
    overwrite: bool = setting(False, "wipe an existing output directory instead of resuming")
    progress: bool = setting(True, "progress bars")
    push_to_hub: str | None = setting(None, "upload the finished set to this hub dataset repo")
    hub_private: bool = setting(True, "create the hub repo private")

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

    def model_path(self) -> str:
        """The model to load: `model`, once `run.resolve` has filled in the default."""
        if self.model is None:
            raise ConfigError("model: not resolved yet (ssb_plugin.curate.run.resolve fills in the default)")
        return self.model

    def is_local_data(self) -> bool:
        return Path(self.data).suffix.lower() in (".jsonl", ".json", ".parquet") or Path(self.data).exists()

    def validate(self) -> None:
        """Check every setting that can be checked without the model; raise ConfigError naming the key."""

        def need(cond: bool, key: str, msg: str) -> None:
            if not cond:
                raise ConfigError(f"{key}: {msg} (got {getattr(self, key)!r})")

        need(bool(self.out), "out", "an output directory is required (--out)")
        need(not Path(self.out).is_file(), "out", "is an existing file, expected a directory")
        for f in fields(self):
            if f.metadata["choices"]:
                choices = f.metadata["choices"]
                need(getattr(self, f.name) in choices, f.name, f"must be one of {choices}")
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
        for key in (
            "rollout_max_tokens",
            "teacher_max_tokens",
            "teacher_attempts",
            "chunk_size",
            "batch_size",
            "stored_topk",
        ):
            need(int(getattr(self, key)) >= 1, key, "must be >= 1")
        self._validate_target(need)
        need(self.threads is None or int(self.threads) >= 1, "threads", "must be >= 1")
        need(int(self.ray_replicas) >= 1, "ray_replicas", "must be >= 1")
        for key in ("tensor_parallel_size", "data_parallel_size"):
            need(int(getattr(self, key)) >= 1, key, "must be >= 1")
        need(self.max_model_len is None or int(self.max_model_len) >= 16, "max_model_len", "must be >= 16")
        need(
            self.gpu_memory_utilization is None or 0 < float(self.gpu_memory_utilization) <= 1,
            "gpu_memory_utilization",
            "must be in (0, 1]",
        )
        need(
            0 < float(self.grade_timeout) < float("inf"),
            "grade_timeout",
            "must be a positive finite number of seconds",
        )
        need(isinstance(self.vllm_kwargs, dict), "vllm_kwargs", "must be a mapping")
        need(bool(self.system_prompt and self.system_prompt.strip()), "system_prompt", "must not be empty")
        if self.model is not None and (self.model.startswith(("/", ".", "~")) or Path(self.model).exists()):
            need(Path(self.model).expanduser().is_dir(), "model", "local model directory does not exist")
            need(
                (Path(self.model).expanduser() / "config.json").is_file(),
                "model",
                "local model directory has no config.json",
            )

    def _validate_target(self, need) -> None:
        """The stored-target settings and --max-kept; the temperatures end up sorted and unique."""
        need(int(self.tail_samples) >= 0, "tail_samples", "must be >= 0")
        need(
            bool(self.target_temperatures) and all(float(t) > 0 for t in self.target_temperatures),
            "target_temperatures",
            "must be a non-empty list of temperatures > 0",
        )
        self.target_temperatures = sorted({float(t) for t in self.target_temperatures})
        need(self.max_kept is None or int(self.max_kept) >= 1, "max_kept", "must be >= 1")

    def result_settings(self) -> dict[str, Any]:
        """The settings that determine the records (compared on resume and merge)."""
        d = asdict(self)
        return {k: d[k] for k in RESULT_KEYS}

    def manifest_settings(self) -> dict[str, Any]:
        """The settings as manifest.json records them: each value at its field's `manifest` path(s)."""
        tree: dict[str, Any] = {}
        for f in fields(self):
            for path in f.metadata["manifest"]:
                *parents, leaf = path.split(".")
                node = tree
                for p in parents:
                    node = node.setdefault(p, {})
                node[leaf] = getattr(self, f.name)
        return tree


# Settings that change which records a run produces; a resumed or merged run must agree on them.
RESULT_KEYS = tuple(f.name for f in fields(CurateConfig) if f.metadata["result"])


def with_defaults(recorded: dict[str, Any]) -> dict[str, Any]:
    """Result settings a run recorded before a later setting existed, that setting read as its
    default (the records were made without it, which is what the default does): resume and merge
    compare these."""
    defaults = {
        f.name: f.default if f.default_factory is MISSING else f.default_factory()
        for f in fields(CurateConfig)
        if f.metadata["result"]
    }
    return {**{k: v for k, v in defaults.items() if k not in recorded}, **recorded}
