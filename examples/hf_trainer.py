"""Fine-tune a text classifier with the Hugging Face Trainer and NWS sampling (offline).

The model is the packaged all-MiniLM-L6-v2 (or --model DIR) with a new classification head; the
data are Rotten Tomatoes snippets; the embeddings the frozen encoder's. The Trainer plans a fixed
number of optimizer steps (the sampler's steps per epoch), so its learning-rate schedule does not
depend on how many candidates the sketch accepts.

Run: python examples/hf_trainer.py [--model DIR] [--train-size N] [--max-steps N] [--output DIR]
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from typing import Any

from transformers import TrainingArguments

from example_setup import parse_args, setup
from nws_trainer.integrations import NWSSampler
from nws_trainer.integrations.hf import NWSTrainer


def main(argv: Sequence[str] | None = None) -> Any:
    args = parse_args(argv)
    model, train_set, collate, emb = setup(args)
    output = str(args.output or tempfile.mkdtemp(prefix="nws-hf-"))
    training_args = TrainingArguments(
        output_dir=output,
        per_device_train_batch_size=args.batch_size,
        num_train_epochs=args.epochs,
        max_steps=args.max_steps if args.max_steps is not None else -1,
        learning_rate=args.lr,
        lr_scheduler_type="linear",
        seed=args.seed,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
    )
    nws = NWSSampler(emb, batch_size=args.batch_size, ratio=0.5, seed=args.seed)
    trainer = NWSTrainer(
        model=model, args=training_args, train_dataset=train_set, data_collator=collate, nws=nws
    )
    result = trainer.train()
    print(f"{result.global_step} steps, training loss {result.training_loss:.4f}")
    nws.close()
    return trainer


if __name__ == "__main__":
    main()
