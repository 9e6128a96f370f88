"""Public names of the GRPO baseline: `python -m ssb_plugin.grpo prepare ...` and the reward
`ssb_plugin.grpo.correctness_reward` that recipes/grpo_qwen3b.yml names."""

from ssb_plugin.train.grpo import correctness_reward, main, prepare

__all__ = ["correctness_reward", "main", "prepare"]

if __name__ == "__main__":
    raise SystemExit(main())
