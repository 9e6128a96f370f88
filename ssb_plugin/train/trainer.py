"""SSBTrainer: Axolotl's trainer with the SSB distillation loss (ssb_plugin.train.forward) as compute_loss.

- No (B, S, V) logits: the loss runs inside the lm_head's forward (ssb_plugin.train.sharded, where
  FSDP/ZeRO-3 have its parameters gathered); the final (post-norm) hidden states at the answer
  positions are gathered to [N, H] and the lm_head is applied chunk by chunk in fp32
  (ssb_plugin.train.loss).
- The summed loss is divided by `num_items_in_batch` (answer tokens over all gradient-accumulation
  micro-batches, and over ranks with average_tokens_across_devices), so accumulation and data
  parallelism do not change it. HF counts `labels[..., 1:] != -100`, exactly the positions scored here.
- `ssb_teacher: online` swaps the stored target for a live teacher pass (ssb_plugin.train.online):
  the same forward, normalisation and logs, exact full-vocabulary KL.
- KD and CE are logged separately (`ssb_kd` = T^2 * mean KL, `ssb_ce` = mean CE per answer token),
  with the distillation diagnostics (`ssb_diagnostics`, on by default; `diagnostic_logs`).
"""

from __future__ import annotations

import math

import torch
from axolotl.core.trainers.base import AxolotlTrainer
from transformers import TrainerCallback
from transformers.modeling_outputs import CausalLMOutputWithPast

from ssb_plugin.record import TeacherMode
from ssb_plugin.train.args import SSBArgs, loss_options
from ssb_plugin.train.batch_keys import IDS, SSB_COLUMNS, TARGET_KEYS
from ssb_plugin.train.forward import TARGET_MAKERS, distill_forward
from ssb_plugin.train.online import online_target, peft_model
from ssb_plugin.train.options import LossOptions

__all__ = ["SSBTrainer"]


class SSBTrainer(AxolotlTrainer):
    """AxolotlTrainer whose loss is the SSB distillation loss against the stored or the online teacher."""

    # compute_loss divides by num_items_in_batch itself: HF must not divide by the GA steps again.
    loss_is_scaled_for_ga = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Makes HF count num_items_in_batch over the whole optimizer step (AxolotlTrainer may reset it).
        self.model_accepts_loss_kwargs = True
        self._ssb_acc = {"train": [0.0, 0.0, 0], "eval": [0.0, 0.0, 0]}
        self._ssb_diag: dict[str, dict] = {"train": {}, "eval": {}}
        self._ssb_rollout = {"train": [0, 0, 0], "eval": [0, 0, 0]}  # rows, tokens, ended at EOS
        self._ssb_ema = None  # the EMA teacher, once the first step made it
        self.add_callback(_EmaUpdate(self))

    @property
    def ssb_options(self) -> SSBArgs:
        """The loss options, typed, from the config (defaults as declared in ssb_plugin.train.args)."""
        if getattr(self, "_ssb_options", None) is None:
            self._ssb_options = loss_options(self.axolotl_cfg or {})
        return self._ssb_options

    @property
    def ssb_loss(self) -> LossOptions:
        """The kernel's options, built once from `ssb_options`."""
        if getattr(self, "_ssb_loss", None) is None:
            self._ssb_loss = self.ssb_options.loss()
        return self._ssb_loss

    def _set_signature_columns_if_needed(self):
        # Keep the teacher columns through HF's unused-column removal (eval, unpacked training).
        super()._set_signature_columns_if_needed()
        if self._signature_columns is not None:
            for col in SSB_COLUMNS:
                if col not in self._signature_columns:
                    self._signature_columns.append(col)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        teacher = TeacherMode(self.ssb_options.ssb_teacher)
        if teacher == TeacherMode.STORED and IDS not in inputs:
            raise KeyError(f"SSBTrainer needs {TARGET_KEYS} in the batch; got {sorted(inputs)}")
        options = self.ssb_loss
        key = "train" if model.training else "eval"
        on_policy = self.ssb_options.ssb_rollouts == "student" and self._on_policy_step(model.training)
        if on_policy:
            inputs, sampled = self._student_rollouts(model, inputs)
            self._ssb_rollout[key] = [
                a + b for a, b in zip(self._ssb_rollout[key], sampled.values(), strict=True)
            ]
        stats = self._ssb_diag[key] if self.ssb_options.ssb_diagnostics else None
        loss_sum, kd_sum, ce_sum, n_local, outputs = distill_forward(
            model, inputs, options, self._target_maker(model, teacher), stats
        )
        if on_policy:
            # The sampled answers' lengths are known only once sampled, so HF's num_items_in_batch (the
            # curated answers' tokens) does not apply: each micro-batch's mean over its own sampled
            # tokens, averaged over the accumulation steps (DDP averages the ranks' gradients).
            ga = self.args.gradient_accumulation_steps if model.training else 1
            num_items_in_batch = None
            denom = max(n_local, 1) * ga
        else:
            denom = num_items_in_batch if num_items_in_batch is not None else n_local
        if torch.is_tensor(denom):
            denom = denom.to(loss_sum.device).clamp_min(1)
        else:
            denom = max(int(denom), 1)
        loss = loss_sum / denom
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            # num_items_in_batch is global across ranks; DDP averages gradients: undo that average.
            scale = self.accelerator.num_processes
            pc = getattr(self.accelerator, "parallelism_config", None)
            if pc is not None:
                scale //= pc.tp_size
            loss = loss * (scale if self.args.n_gpu <= 1 else self.args.n_gpu)

        acc = self._ssb_acc[key]
        acc[0] = acc[0] + kd_sum.detach() * options.temperature**2  # tensors: no device sync per step
        acc[1] = acc[1] + ce_sum.detach()
        acc[2] += n_local
        if return_outputs:
            # No logits exist: outputs.logits is the loss's [B, 1, 3] stand-in (train/sharded.py).
            return loss, CausalLMOutputWithPast(loss=loss.detach(), logits=outputs.logits)
        return loss

    def _on_policy_step(self, training: bool) -> bool:
        """`ssb_rollout_fraction` lambda: this optimizer step on the student's samples? Whole optimizer
        steps (every accumulation micro-batch, every rank: global_step is shared), spread evenly."""
        share = float(self.ssb_options.ssb_rollout_fraction)
        if not training or share >= 1:
            return True
        step = self.state.global_step
        return math.floor((step + 1) * share) > math.floor(step * share)

    def _target_maker(self, model, teacher: TeacherMode):
        """The teacher's target maker; with `ssb_online_teacher: ema`, the online one bound to the
        average (made from the adapter as it is at the first step, updated by `_EmaUpdate`)."""
        if teacher != TeacherMode.ONLINE or self.ssb_options.ssb_online_teacher != "ema":
            return TARGET_MAKERS[teacher]
        if self._ssb_ema is None:
            from ssb_plugin.train.ema import EmaTeacher

            self._ssb_ema = EmaTeacher(model, self.ssb_options.ssb_ema_decay)
        ema = self._ssb_ema
        return lambda m, inputs, mask, options: online_target(m, inputs, mask, options, ema)

    def _student_rollouts(self, model, inputs: dict) -> tuple[dict, dict]:
        """`ssb_rollouts: student`: the batch rebuilt on the student's own samples (ssb_plugin.train.rollouts)."""
        from ssb_plugin.train.rollouts import on_policy_batch

        # Axolotl passes the tokenizer as processing_class; without one, the model's generation config
        tok = self.processing_class
        gen = getattr(peft_model(model), "generation_config", None)
        eos = getattr(gen, "eos_token_id", None)
        eos = eos if eos is not None else getattr(tok, "eos_token_id", None)
        if eos is None:
            raise ValueError("ssb_rollouts: student needs an EOS token id (generation_config or tokenizer)")
        pad = getattr(tok, "pad_token_id", None)
        pad = pad if pad is not None else getattr(gen, "pad_token_id", None)
        pad = pad if pad is not None else (eos[0] if isinstance(eos, list) else eos)
        opts = self.ssb_options
        sample = self._server_sample(model, eos) if opts.ssb_rollout_engine == "vllm_server" else None
        return on_policy_batch(
            model, inputs, max_new_tokens=opts.ssb_rollout_max_tokens, temperature=opts.ssb_rollout_temperature,
            pad_id=int(pad), eos_id=eos, sample=sample,
        )  # fmt: skip

    def _server_sample(self, model, eos):
        """`ssb_rollout_engine: vllm_server`: the server brought to this step's adapter, and a sampler
        whose seeds follow (seed, step, rank, call) so a rerun samples the same."""
        from ssb_plugin.train.vllm_server import VllmServerSampler, request_seed

        opts = self.ssb_options
        if getattr(self, "_ssb_server", None) is None:
            where = opts.ssb_vllm_adapter_dir or f"{self.args.output_dir}/ssb_rollout_adapter"
            self._ssb_server = VllmServerSampler(opts.ssb_vllm_server_url, where, opts.ssb_vllm_timeout)
            self._ssb_server_calls = 0
        server, step = self._ssb_server, self.state.global_step
        server.sync(model, step, self.is_world_process_zero())
        self._ssb_server_calls += 1
        seed = request_seed(self.args.seed, step, self.args.process_index, self._ssb_server_calls)
        return lambda prompts: server.sample(
            prompts, max_new_tokens=opts.ssb_rollout_max_tokens, temperature=opts.ssb_rollout_temperature,
            eos_id=eos, seed=seed,
        )  # fmt: skip

    def log(self, logs, start_time=None):
        key = "train" if "loss" in logs else "eval"
        kd, ce, n = self._ssb_acc[key]
        if n:
            prefix = "" if key == "train" else "eval_"
            # Unrounded, like HF's loss: near the teacher the KD term is ~1e-5 and a fixed
            # number of decimals would cut its digits (and its match with `loss`).
            logs[f"{prefix}ssb_kd"] = float(kd) / n
            logs[f"{prefix}ssb_ce"] = float(ce) / n
            logs[f"{prefix}ssb_answer_tokens"] = n
            logs.update({prefix + k: v for k, v in diagnostic_logs(self._ssb_diag[key]).items()})
            rows, tokens, ended = self._ssb_rollout[key]
            if rows:
                logs[f"{prefix}ssb_rollout_tokens"] = tokens / rows  # mean sampled answer length
                logs[f"{prefix}ssb_rollout_eos"] = ended / rows  # share that ended before the token limit
        self._ssb_rollout[key] = [0, 0, 0]
        self._ssb_acc[key] = [0.0, 0.0, 0]
        self._ssb_diag[key] = {}
        return super().log(logs, start_time)


def diagnostic_logs(stats: dict) -> dict[str, float]:
    """The logged diagnostics (per answer token of this process's micro-batches since the last log)
    from the kernel's sums (ssb_plugin.train.loss.DIAGNOSTICS): what verl's on-policy distillation
    logs, for the stored and the online teacher alike (docs/training.md, "Diagnostics")."""
    n = stats.get("rows", 0)
    if not n or "kl_max" not in stats:
        return {}
    teacher = float(stats["teacher_topk_mass"]) / n
    return {
        "ssb_teacher_topk_mass": teacher,
        "ssb_teacher_tail_mass": 1.0 - teacher,
        "ssb_student_topk_mass": float(stats["student_topk_mass"]) / n,
        "ssb_topk_overlap": float(stats["topk_overlap"]) / n,
        "ssb_kl_mean": float(stats["kl_sum"]) / n,  # nats per answer token, at T (ssb_kd without T^2)
        "ssb_kl_max": float(stats["kl_max"]),
    }


class _EmaUpdate(TrainerCallback):
    """After every optimizer step: the EMA teacher's average takes the new adapter weights."""

    def __init__(self, trainer: SSBTrainer):
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        if self.trainer._ssb_ema is not None:
            self.trainer._ssb_ema.update()
