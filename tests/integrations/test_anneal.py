"""Annealing in NWSSampler (sampler and filter mode) and in the Hugging Face NWSTrainer: the
final share of the run keeps every candidate with weight 1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, IterableDataset

from nws_trainer.integrations import NWSSampler

N, DIM = 120, 8


class Table(Dataset):
    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(N, DIM, generator=g)
        self.y = (self.x[:, 0] > 0).long()

    def __len__(self) -> int:
        return N

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "y": self.y[i]}


class Stream(IterableDataset):
    def __init__(self, table: Table) -> None:
        self.table = table

    def __iter__(self):
        for i in range(N):
            yield {"idx": i, **self.table[i]}


def _run(nws: NWSSampler, loader: Any, epochs: int) -> list[np.ndarray]:
    torch.manual_seed(0)
    model = torch.nn.Linear(DIM, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    weights = []
    for _ in range(epochs):
        for batch in loader:
            loss = nws.loss(F.cross_entropy(model(batch["x"]), batch["y"], reduction="none"))
            opt.zero_grad()
            loss.backward()
            opt.step()
            weights.append(np.asarray(nws.current.weights))
    return weights


def test_sampler_mode_anneals_the_last_share_of_its_epochs(endpoint: str) -> None:
    emb = np.random.default_rng(0).standard_normal((N, DIM)).astype(np.float32)
    with NWSSampler(
        emb, batch_size=10, ratio=0.4, seed=1, warmup=20, endpoint=endpoint, anneal=0.25, epochs=4
    ) as nws:
        assert nws.total_steps == 4 * nws.steps_per_epoch == 20
        weights = _run(nws, nws.loader(Table()), 4)
    assert len(weights) == 20
    assert any((w != 1).any() for w in weights[2:15])  # sampled with 1/p weights before
    # batches 15..19 are the last quarter; 15 may finish rows drawn before it
    for w in weights[16:]:
        assert w.shape == (10,) and (w == 1).all()


def test_filter_mode_anneals_by_total_steps(endpoint: str) -> None:
    emb = np.random.default_rng(0).standard_normal((N, DIM)).astype(np.float32)
    with NWSSampler(
        emb,
        batch_size=10,
        ratio=0.4,
        seed=1,
        warmup=20,
        endpoint=endpoint,
        index_field="idx",
        anneal=0.25,
        total_steps=24,
    ) as nws:
        weights = _run(nws, nws.loader(Stream(Table())), 2)
    assert len(weights) == 24
    assert any(w.size < 10 for w in weights[2:18])  # candidate batches cut down before
    for w in weights[18:]:  # the last quarter: every candidate of the batch, weight 1
        assert w.shape == (10,) and (w == 1).all()


def test_anneal_needs_the_runs_length(endpoint: str) -> None:
    emb = np.random.default_rng(0).standard_normal((N, DIM)).astype(np.float32)
    with pytest.raises(ValueError, match="anneal"):
        NWSSampler(emb, batch_size=10, endpoint=endpoint, anneal=1.0)
    nws = NWSSampler(emb, batch_size=10, endpoint=endpoint, warmup=0, anneal=0.5)
    with nws, pytest.raises(ValueError, match="epochs or total_steps"):
        next(iter(DataLoader(Table(), batch_sampler=nws.batch_sampler())))


@pytest.mark.slow
def test_hf_trainer_tells_the_sampler_its_length_and_anneals(
    examples_dir: Path, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    from transformers import TrainerCallback, TrainingArguments

    from example_setup import parse_args, setup
    from nws_trainer.integrations.hf import NWSTrainer

    model, train_set, collate, emb = setup(
        parse_args(["--model", str(tiny_bert_dir), "--train-size", "96", "--max-length", "32"])
    )
    args = TrainingArguments(
        output_dir=str(tmp_path / "hf"),
        per_device_train_batch_size=16,
        max_steps=8,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
    )
    nws = NWSSampler(emb, batch_size=16, ratio=0.5, seed=0, steps_per_epoch=4, anneal=0.375)
    weights: list[np.ndarray] = []

    class Record(TrainerCallback):
        def on_step_end(self, *a: Any, **k: Any) -> None:
            weights.append(np.asarray(nws.current.weights))

    trainer = NWSTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        data_collator=collate,
        nws=nws,
        callbacks=[Record()],
    )
    try:
        trainer.train()
    finally:
        nws.close()
    assert nws.total_steps == 8 and len(weights) == 8
    assert any((w != 1).any() for w in weights[:5])  # importance weights before
    for w in weights[6:]:  # batches 5..7 are the last 3/8; 5 may finish earlier draws
        assert w.shape == (16,) and (w == 1).all()
