"""SSBPlugin's config keys: top-level `ssb_*` YAML keys merged into Axolotl's config model.

Axolotl drops undeclared top-level keys, so every option the plugin reads is declared here.
Kept free of torch/axolotl imports: Axolotl imports this while building its config classes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from ssb_plugin.record import TeacherMode
from ssb_plugin.train.options import DEFAULT_LOSS, Divergence, LossOptions
from ssb_plugin.train.scaleout import strategy_problems

DATASET_TYPE = "ssb_plugin.dataset"


class SSBArgs(BaseModel):
    """Options of the SSB distillation loss (docs/design.md, "The loss")."""

    ssb_temperature: float = Field(
        default=DEFAULT_LOSS.temperature,
        description="Distillation temperature T (teacher and student softened by T; loss x T^2).",
    )
    ssb_kd_weight: float = Field(
        default=DEFAULT_LOSS.kd_weight, description="Weight of the forward-KL term (x T^2)."
    )
    ssb_ce_weight: float = Field(
        default=DEFAULT_LOSS.ce_weight,
        description="Weight of cross-entropy on the teacher's answer tokens (paper: 0).",
    )
    ssb_chunk_size: int = Field(
        default=DEFAULT_LOSS.chunk_size,
        description="Answer positions per lm_head chunk: bounds the loss's extra memory to ~3 x chunk x vocab fp32.",
    )
    ssb_topk: int | None = Field(
        default=None,
        description="Removed (setting it is an error): truncating the stored top-k would bias the faithful target.",
    )
    ssb_teacher: Literal["stored", "online"] = Field(
        default=TeacherMode.STORED.value,
        description="Teacher distribution: `stored` (the curated set's log-probs) or `online` (each step, the "
        "base model with the LoRA adapter disabled scores the hinted teacher prompt + response; exact "
        "full-vocabulary KL; needs an adapter; docs/training.md, 'Online teacher').",
    )
    ssb_online_teacher: Literal["base", "ema"] = Field(
        default="base",
        description="With ssb_teacher: online, which weights teach: `base` (the adapter off) or `ema` (an "
        "exponential moving average of the adapter, ssb_ema_decay; one more adapter-sized copy in memory).",
    )
    ssb_ema_decay: float = Field(
        default=0.99, description="ssb_online_teacher: ema: the average's decay per optimizer step."
    )
    ssb_divergence: Divergence = Field(
        default=DEFAULT_LOSS.divergence,
        description="What the loss matches: forward KL(teacher || student) (the paper's), reverse KL(student || "
        "teacher), or the generalised JSD with ssb_jsd_beta; reverse and jsd need a live teacher "
        "(ssb_teacher: online).",
    )
    ssb_jsd_beta: float = Field(
        default=DEFAULT_LOSS.jsd_beta,
        description="beta of ssb_divergence: jsd, beta KL(p || m) + (1 - beta) KL(q || m), m = beta p + (1 - beta) q.",
    )
    ssb_pointwise_clip: float | None = Field(
        default=DEFAULT_LOSS.pointwise_clip,
        description="Cap on each vocabulary entry's contribution to the divergence before the vocabulary "
        "sum (OPSD's per-token clip, which it reports stabilises on-policy training; the paper uses 0.05); a "
        "capped entry gives no gradient. Needs a live teacher (ssb_teacher: online). Unset: off.",
    )
    ssb_rollouts: Literal["teacher", "student"] = Field(
        default="teacher",
        description="Whose text the loss is taken on: `teacher` (the curated teacher answer) or `student` "
        "(on-policy: each step the student, adapter on, samples an answer to the bare question and the "
        "live teacher scores it; needs ssb_teacher: online and sample_packing: false; docs/training.md, "
        "'On-policy rollouts').",
    )
    ssb_rollout_fraction: float = Field(
        default=1.0,
        description="ssb_rollouts: student: the share lambda of optimizer steps taken on the student's samples "
        "(spread evenly: step s is on-policy when floor((s + 1) lambda) > floor(s lambda)); the other steps "
        "train on the curated teacher answer with the same live teacher (TRL GKD's lmbda). Evaluation is "
        "on-policy. 1: every step.",
    )
    ssb_rollout_engine: Literal["hf", "vllm_server"] = Field(
        default="hf",
        description="ssb_rollouts: student: who samples. `hf`: HF generate in the training process; "
        "`vllm_server`: a running vLLM OpenAI server on the same base model (--enable-lora, "
        "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True), reloaded with the current adapter after every optimizer step.",
    )
    ssb_vllm_server_url: str = Field(
        default="http://localhost:8000", description="ssb_rollout_engine: vllm_server: the server's base URL."
    )
    ssb_vllm_adapter_dir: str | None = Field(
        default=None,
        description="ssb_rollout_engine: vllm_server: where the adapter the server loads is written, a path "
        "the server reads too (default: <output_dir>/ssb_rollout_adapter; refused if it holds other files).",
    )
    ssb_vllm_timeout: float = Field(
        default=600.0, description="ssb_rollout_engine: vllm_server: seconds one server call may take."
    )
    ssb_rollout_max_tokens: int = Field(
        default=128, description="ssb_rollouts: student: most new tokens per sampled answer."
    )
    ssb_rollout_temperature: float = Field(
        default=1.0,
        description="ssb_rollouts: student: the sampling temperature (1: the student's own distribution).",
    )
    ssb_diagnostics: bool = Field(
        default=True,
        description="Log the distillation diagnostics per logged step (the teacher's top-k and tail mass at T, "
        "the student's mass on the teacher's top-k, the top-k overlap, the per-token KL's mean and max; "
        "docs/training.md, 'Diagnostics').",
    )
    ssb_check_tokenizer: bool = Field(
        default=True,
        description="Refuse a training tokenizer/chat template whose hash differs from the curated manifest's.",
    )

    @model_validator(mode="after")
    def _check_ssb(self):
        problems = []
        if not self.ssb_temperature > 0:
            problems.append(f"ssb_temperature must be > 0 (got {self.ssb_temperature})")
        for key in ("ssb_kd_weight", "ssb_ce_weight"):
            if getattr(self, key) < 0:
                problems.append(f"{key} must be >= 0 (got {getattr(self, key)})")
        if self.ssb_kd_weight == 0 and self.ssb_ce_weight == 0:
            problems.append("ssb_kd_weight and ssb_ce_weight are both 0: the loss would be identically zero")
        if self.ssb_topk is not None:
            problems.append(
                "ssb_topk was removed: the loss uses every stored teacher entry (top-k plus sampled tail); "
                "to store fewer, re-curate with `ssb-curate --stored-topk N`"
            )
        if self.ssb_chunk_size < 1:
            problems.append(f"ssb_chunk_size must be >= 1 (got {self.ssb_chunk_size})")
        if not 0 < self.ssb_jsd_beta < 1:
            problems.append(f"ssb_jsd_beta must be in (0, 1) (got {self.ssb_jsd_beta})")
        problems += self._rollout_problems()
        problems += self._online_problems()
        # In the merged Axolotl config the dataset list is visible too: every training row must
        # carry teacher targets, or the SSB loss has nothing to match.
        datasets = getattr(self, "datasets", None)
        if datasets:
            for i, ds in enumerate(datasets):
                ds_type = ds.get("type") if isinstance(ds, dict) else getattr(ds, "type", None)
                if ds_type != DATASET_TYPE:
                    problems.append(
                        f"datasets[{i}] has type {ds_type!r}: with plugins [ssb_plugin.SSBPlugin] every training "
                        f"dataset must be `type: {DATASET_TYPE}` (a curated set from ssb-curate)"
                    )
        problems += strategy_problems(self)  # parallel strategies the loss is not proven on
        if problems:
            raise ValueError("SSBPlugin config: " + "; ".join(problems))
        return self

    def loss(self) -> LossOptions:
        """The kernel's typed options (ssb_plugin.train.options), from the validated keys."""
        return LossOptions(
            temperature=self.ssb_temperature,
            kd_weight=self.ssb_kd_weight,
            ce_weight=self.ssb_ce_weight,
            chunk_size=self.ssb_chunk_size,
            divergence=self.ssb_divergence,
            jsd_beta=self.ssb_jsd_beta,
            pointwise_clip=self.ssb_pointwise_clip,
        )

    def _rollout_problems(self) -> list[str]:
        live = self.ssb_teacher == TeacherMode.ONLINE
        problems = []
        if self.ssb_online_teacher == "ema":
            if not live:
                problems.append("ssb_online_teacher: ema is a live teacher: set ssb_teacher: online")
            if not 0 <= self.ssb_ema_decay <= 1:
                problems.append(f"ssb_ema_decay must be in [0, 1] (got {self.ssb_ema_decay})")
            sharded = [k for k in ("fsdp", "fsdp_config", "deepspeed") if getattr(self, k, None)]
            if sharded:
                problems.append(
                    f"ssb_online_teacher: ema swaps whole adapter tensors in place, which sharded parameters "
                    f"({', '.join(sharded)}) do not hold: use DDP or one process"
                )
        if self.ssb_divergence != "forward" and not live:
            problems.append(
                f"ssb_divergence: {self.ssb_divergence} needs the teacher's whole distribution: set "
                "ssb_teacher: online (a stored target carries only part of it)"
            )
        if self.ssb_pointwise_clip is not None and not live:
            problems.append(
                "ssb_pointwise_clip needs the teacher's whole distribution: set ssb_teacher: online (a stored "
                "target carries only part of it)"
            )
        if self.ssb_pointwise_clip is not None and not self.ssb_pointwise_clip > 0:
            problems.append(f"ssb_pointwise_clip must be > 0 (got {self.ssb_pointwise_clip})")
        if self.ssb_rollout_engine == "vllm_server":
            if self.ssb_rollouts != "student":
                problems.append(
                    "ssb_rollout_engine: vllm_server samples on-policy rollouts: set ssb_rollouts: student"
                )
            sharded = [k for k in ("fsdp", "fsdp_config", "deepspeed") if getattr(self, k, None)]
            if sharded:
                problems.append(
                    f"ssb_rollout_engine: vllm_server writes the whole adapter each step, which sharded parameters "
                    f"({', '.join(sharded)}) do not hold in one process: use DDP or one process"
                )
            if not self.ssb_vllm_server_url.startswith(("http://", "https://")):
                problems.append(
                    f"ssb_vllm_server_url must be an http(s) URL (got {self.ssb_vllm_server_url!r})"
                )
        if self.ssb_rollout_fraction != 1 and self.ssb_rollouts != "student":
            problems.append("ssb_rollout_fraction is the share of on-policy steps: set ssb_rollouts: student")
        if self.ssb_rollouts == "student":
            if not live:
                problems.append(
                    "ssb_rollouts: student needs a live teacher to score the student's samples: set ssb_teacher: online"
                )
            if getattr(self, "sample_packing", False):
                problems.append(
                    "ssb_rollouts: student samples new answers each step, so the rows cannot be packed ahead: "
                    "set sample_packing: false"
                )
            if self.ssb_ce_weight:
                problems.append(
                    "ssb_rollouts: student with ssb_ce_weight > 0 would train on the student's own samples as "
                    "labels: set ssb_ce_weight: 0"
                )
            if not 0 < self.ssb_rollout_fraction <= 1:
                problems.append(f"ssb_rollout_fraction must be in (0, 1] (got {self.ssb_rollout_fraction})")
            if self.ssb_rollout_max_tokens < 1 or not self.ssb_rollout_temperature > 0:
                problems.append("ssb_rollout_max_tokens must be >= 1 and ssb_rollout_temperature > 0")
        return problems

    def _online_problems(self) -> list[str]:
        # In the merged Axolotl config `adapter` is visible: the teacher is the base model, so there must be one.
        if self.ssb_teacher != TeacherMode.ONLINE or "adapter" not in type(self).model_fields:
            return []
        if getattr(self, "adapter", None) in ("lora", "qlora"):
            return []
        return [
            "ssb_teacher: online needs `adapter: lora` or `qlora` (the teacher is the base model with the "
            "adapter disabled; full fine-tuning would make the teacher move with the student)"
        ]


def loss_options(cfg) -> SSBArgs:
    """The typed view of a config's `ssb_*` options (unset keys take the defaults declared above).
    `cfg` is Axolotl's merged config (a dict-like DictDefault) or any object with the attributes."""
    values = {}
    for name in SSBArgs.model_fields:
        value = cfg.get(name) if hasattr(cfg, "get") else getattr(cfg, name, None)
        if value is not None:
            values[name] = value
    return SSBArgs(**values)
