"""Helper for tests/test_loss_model.py::test_ddp_matches_single_process (run under torchrun, CPU/gloo).

One SGD step of SSBTrainer (micro-batch 2 per rank, ranks = WORLD_SIZE) on a curated set; rank 0
writes the parameter update to argv[3].
"""

import os
import sys

if __name__ == "__main__":
    import torch
    from axolotl.core.training_args import AxolotlTrainingArguments
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ssb_plugin.train.collator import SSBDataCollator
    from ssb_plugin.train.dataset import SSBDatasetStrategy
    from ssb_plugin.train.trainer import SSBTrainer

    model_dir, curated, out, mb = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(model_dir)
    ds = SSBDatasetStrategy(tok, sequence_len=4096).wrap_dataset(load_dataset(curated, split="train"))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
    args = AxolotlTrainingArguments(
        output_dir=out + ".dir", per_device_train_batch_size=mb, max_steps=1, learning_rate=1.0, optim="sgd",
        lr_scheduler_type="constant", max_grad_norm=0.0, report_to=[], save_strategy="no", seed=0,
        disable_tqdm=True, average_tokens_across_devices=True,
        **({"ddp_backend": "gloo"} if int(os.environ.get("WORLD_SIZE", "1")) > 1 else {}),
    )  # fmt: skip
    trainer = SSBTrainer(model=model, args=args, train_dataset=ds, data_collator=SSBDataCollator(tok))
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    trainer.train()
    if trainer.args.process_index == 0:
        torch.save({k: v.detach() - before[k] for k, v in model.named_parameters()}, out)
