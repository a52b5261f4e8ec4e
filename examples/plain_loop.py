"""Fine-tune a text classifier: plain_loop.py is a plain PyTorch loop, nws_loop.py the same loop
with NWS sampling. Three lines differ (docs/integrations.md).

Run: python examples/plain_loop.py (or nws_loop.py) [--model DIR] [--train-size N] [--max-steps N]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from example_setup import parse_args, setup


def main(argv: Sequence[str] | None = None) -> torch.nn.Module:
    args = parse_args(argv)
    model, train_set, collate, emb = setup(args)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, collate_fn=collate)
    step = 0
    for _epoch in range(args.epochs):
        for batch in loader:
            labels = batch.pop("labels")
            logits = model(**batch).logits
            loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if args.max_steps is not None and step >= args.max_steps:
                break
    print(f"{step} steps, last loss {loss.item():.4f}")
    if args.output is not None:
        model.save_pretrained(args.output)
    return model


if __name__ == "__main__":
    main()
