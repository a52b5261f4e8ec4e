"""Data-parallel fine-tuning with NWS sampling: ``torchrun --nproc_per_node 2`` (gloo on CPU).

Every rank shares one sketch server (rank 0 starts an embedded one unless --endpoint names a
shared server). Rank r scans candidate chunks r, r + W, ... of each seeded permutation; every
rank takes the same fixed number of optimizer steps per epoch whatever the sketch accepts, so
DDP never waits on a rank that ran out of batches; and each selection happens between barriers,
after every rank's updates are applied, so a run is reproducible for a seed.

Run: torchrun --nproc_per_node 2 examples/torchrun_ddp.py [--model DIR] [--train-size N]
     [--max-steps N] [--output DIR]   (writes rank{r}.json: trained example ids per step)
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from example_setup import parse_args, setup
from nws_trainer.integrations import NWSSampler


def main(argv: Sequence[str] | None = None) -> None:
    dist.init_process_group("gloo" if not torch.cuda.is_available() else "nccl")
    rank = dist.get_rank()
    torch.set_num_threads(1)
    args = parse_args(argv)
    model, train_set, collate, emb = setup(args)  # same seed: same initial weights everywhere
    ddp = DistributedDataParallel(model)
    optimizer = torch.optim.AdamW(ddp.parameters(), lr=args.lr)
    nws = NWSSampler(emb, batch_size=args.batch_size, ratio=0.5, seed=args.seed)
    loader = nws.loader(train_set, collate_fn=collate)
    trained: list[list[int]] = []
    for _epoch in range(args.epochs):
        for batch in loader:
            labels = batch.pop("labels")
            logits = ddp(**batch).logits
            loss = nws.loss(F.cross_entropy(logits, labels, reduction="none"))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            trained.append(nws.current.indices.tolist())
            if args.max_steps is not None and len(trained) >= args.max_steps:
                break
    checksum = float(sum(p.detach().double().sum() for p in model.parameters()))
    if args.output is not None:
        os.makedirs(args.output, exist_ok=True)
        with open(os.path.join(args.output, f"rank{rank}.json"), "w") as f:
            json.dump({"trained": trained, "checksum": checksum, "steps": len(trained)}, f)
    print(f"rank {rank}: {len(trained)} steps, parameter checksum {checksum:.6f}", flush=True)
    nws.close()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
