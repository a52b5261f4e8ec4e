"""The plain-PyTorch integration: three changed lines, both selection modes, resume."""

from __future__ import annotations

import contextlib
import difflib
import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, IterableDataset

from nws_trainer.integrations import NWSSampler, load_checkpoint, per_example_loss, save_checkpoint

pytestmark = pytest.mark.slow


def _code_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_the_nws_loop_differs_from_the_plain_loop_in_three_lines(examples_dir: Path) -> None:
    plain = _code_lines(examples_dir / "plain_loop.py")
    nws = _code_lines(examples_dir / "nws_loop.py")
    diff = list(difflib.unified_diff(plain, nws, lineterm="", n=0))
    removed = [line for line in diff if line.startswith("-") and not line.startswith("---")]
    added = [line for line in diff if line.startswith("+") and not line.startswith("+++")]
    assert 0 < len(added) <= 3 and len(removed) <= 3, diff
    assert any("NWSSampler" in line for line in added)
    assert any("loss(" in line and 'reduction="none"' in line for line in added)


def test_the_nws_example_loop_trains_a_tiny_bert(examples_dir: Path, tiny_bert_dir: Path) -> None:
    import nws_loop

    args = ["--model", str(tiny_bert_dir), "--train-size", "96", "--lr", "1e-3", "--epochs", "2"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        model = nws_loop.main(args)
    # the default ratio is auto: its epochs are planned over every candidate (batch 16, 2 epochs)
    steps = 2 * math.ceil(96 / 16)
    assert out.getvalue().startswith(f"{steps} steps")
    assert all(torch.isfinite(p).all() for p in model.parameters())


# ----------------------------------------------------------------------------- synthetic data

N, DIM = 120, 8


class Table(Dataset):
    """x: a feature vector; y: a class; items are dicts."""

    def __init__(self, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
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


def _train(nws: NWSSampler, loader, model, opt, steps: int, record: list) -> None:
    done = 0
    while done < steps:
        for batch in loader:
            logits = model(batch["x"])
            loss = nws.loss(F.cross_entropy(logits, batch["y"], reduction="none"))
            opt.zero_grad()
            loss.backward()
            opt.step()
            record.append(nws.current.indices.tolist())
            done += 1
            if done == steps:
                return


def test_sampler_mode_fills_fixed_full_batches(endpoint: str) -> None:
    table = Table()
    emb = np.random.default_rng(0).standard_normal((N, DIM)).astype(np.float32)
    with NWSSampler(emb, batch_size=10, ratio=0.4, seed=1, warmup=20, endpoint=endpoint) as nws:
        loader = nws.loader(table)
        assert len(loader) == nws.steps_per_epoch == math.ceil(N * 0.4 / 10)
        torch.manual_seed(0)
        model = torch.nn.Linear(DIM, 2)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        seen: list[list[int]] = []
        weights: list[np.ndarray] = []
        for _epoch in range(3):
            count = 0
            for batch in loader:
                assert set(batch) == {"x", "y"} and batch["x"].shape == (10, DIM)
                weights.append(batch.nws.weights)
                loss = nws.loss(F.cross_entropy(model(batch["x"]), batch["y"], reduction="none"))
                opt.zero_grad()
                loss.backward()
                opt.step()
                seen.append(batch.nws.indices.tolist())
                count += 1
            assert count == nws.steps_per_epoch  # whatever the sketch accepted
        assert (weights[0] == 1).all() and (weights[1] == 1).all()  # warm-up: 20 observations
        assert any((w > 1).any() for w in weights[2:])  # then importance weights 1/p
        assert nws.stats["accepted"] < nws.stats["candidates"]
        nws.client.flush()
        assert nws.client.get(nws.sketch_name).stats.observations == 10 * len(seen)


def test_filter_mode_with_an_iterable_dataset_and_with_a_callable(endpoint: str) -> None:
    table = Table()
    emb = np.random.default_rng(0).standard_normal((N, DIM)).astype(np.float32)
    nws = NWSSampler(
        emb, batch_size=12, ratio=0.5, seed=2, warmup=24, endpoint=endpoint, index_field="idx"
    )
    loader = nws.loader(Stream(table))
    batches = []
    for b in loader:  # the loss streams each batch's losses before the next selection
        assert "idx" not in b and b["x"].shape[0] == b.nws.indices.size
        np.testing.assert_allclose(b["x"].numpy(), table.x[b.nws.indices].numpy())
        assert b.nws.normalizer == 12.0
        nws.loss(torch.ones(b.nws.indices.size))
        batches.append(b)
    assert len(batches) == N // 12  # one step per candidate batch
    assert sum(b.nws.indices.size for b in batches[2:]) < 12 * (len(batches) - 2)
    nws.close()
    # embeddings from a callable on the batch (e.g. a frozen encoder's output)
    with NWSSampler(lambda b: b["x"] * 2.0, batch_size=12, ratio=0.5, endpoint=endpoint) as live:
        batches = []
        for b in live.loader(table):
            live.loss(b["y"].float())
            batches.append(b)
        assert len(batches) == N // 12
        assert sum(b.nws.indices.size for b in batches[2:]) < 12 * (len(batches) - 2)
        assert all(b.nws.embeddings is not None for b in batches)


def _weighted_batches(endpoint: str, **levers: float) -> list[tuple[list[int], np.ndarray]]:
    """Two epochs of sampler mode with a fixed per-example loss (|x_0|), so that runs differing
    only in the weighting levers see the same estimates."""
    table = Table()
    emb = np.random.default_rng(0).standard_normal((N, DIM)).astype(np.float32)
    out = []
    with NWSSampler(
        emb, batch_size=10, ratio=0.4, seed=5, warmup=20, endpoint=endpoint, **levers
    ) as nws:
        for _epoch in range(2):
            for batch in nws.loader(table):
                nws.loss(batch["x"][:, 0].abs())
                out.append((batch.nws.indices.tolist(), batch.nws.weights.copy()))
    return out


def test_temper_changes_the_weights_and_not_the_draw(endpoint: str) -> None:
    unbiased = _weighted_batches(endpoint)
    prioritised = _weighted_batches(endpoint, temper=0.0)
    assert [i for i, _ in unbiased] == [i for i, _ in prioritised]
    after_warmup = [w for _, w in unbiased[2:]]
    assert any(np.ptp(w) > 0 for w in after_warmup)  # 1/p differs between rows
    assert all((w == 1).all() for _, w in prioritised)  # (1/p) ** 0
    sharpened = _weighted_batches(endpoint, power=3.0)
    assert max(w.max() for _, w in sharpened[2:]) > max(w.max() for w in after_warmup)


@pytest.mark.parametrize(
    ("levers", "message"),
    [({"power": 0.0}, "power"), ({"temper": 1.5}, "temper"), ({"power": float("nan")}, "power")],
)
def test_bad_levers_are_refused(levers: dict[str, float], message: str) -> None:
    emb = np.zeros((4, DIM), dtype=np.float32)
    with pytest.raises(ValueError, match=message):
        NWSSampler(emb, batch_size=2, **levers)


def test_per_example_loss_for_classification_and_language_modelling() -> None:
    logits = torch.randn(3, 4)
    labels = torch.tensor([0, 3, 1])
    torch.testing.assert_close(
        per_example_loss(logits, labels), F.cross_entropy(logits, labels, reduction="none")
    )
    lm = torch.randn(2, 5, 7)
    tokens = torch.tensor([[1, 2, 3, -100, -100], [4, 5, 6, 0, 1]])
    got = per_example_loss(lm, tokens, causal=True)
    first = F.cross_entropy(lm[0, :2], tokens[0, 1:3])  # shifted, padding ignored
    second = F.cross_entropy(lm[1, :4], tokens[1, 1:])
    torch.testing.assert_close(got, torch.stack([first, second]))


# ----------------------------------------------------------------------------- resume


def _tiny_bert_run(
    tiny_bert_dir: Path, tmp_path: Path, steps: int, *, resume: Path | None, save_at: int | None
) -> tuple[list[list[int]], dict[str, torch.Tensor]]:
    """Fine-tune the tiny BERT with NWS; optionally resume from / save a checkpoint."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
    from example_setup import parse_args, setup

    args = parse_args(["--model", str(tiny_bert_dir), "--train-size", "96", "--seed", "3"])
    model, train_set, collate, emb = setup(args)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LinearLR(opt, 1.0, 0.1, total_iters=steps)
    record: list[list[int]] = []
    with NWSSampler(emb, batch_size=16, ratio=0.5, seed=3, steps_per_epoch=3) as nws:
        loader = nws.loader(train_set, collate_fn=collate)
        done = 0
        if resume is not None:
            done = load_checkpoint(resume, model=model, optimizer=opt, scheduler=sched, nws=nws)[
                "step"
            ]
        while done < steps:
            for batch in loader:
                labels = batch.pop("labels")
                losses = F.cross_entropy(model(**batch).logits, labels, reduction="none")
                loss = nws.loss(losses)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                record.append(nws.current.indices.tolist())
                done += 1
                if done == save_at:
                    save_checkpoint(
                        tmp_path / "ckpt.pt",
                        model=model,
                        optimizer=opt,
                        scheduler=sched,
                        nws=nws,
                        step=done,
                    )
                if done in (save_at, steps):
                    break
            if done == save_at:
                break
    return record, {k: v.clone() for k, v in model.state_dict().items()}


def test_a_resumed_run_continues_as_the_uninterrupted_one(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    steps = 8  # warm-up (2 steps) and selection; the checkpoint falls mid-epoch (3 per epoch)
    straight, final = _tiny_bert_run(tiny_bert_dir, tmp_path, steps, resume=None, save_at=None)
    first, _ = _tiny_bert_run(tiny_bert_dir, tmp_path, steps, resume=None, save_at=4)
    # new objects and a new sketch server: the sketch comes back from the checkpoint
    second, resumed = _tiny_bert_run(
        tiny_bert_dir, tmp_path, steps, resume=tmp_path / "ckpt.pt", save_at=None
    )
    assert first == straight[:4]
    assert second == straight[4:]
    for name, value in final.items():
        torch.testing.assert_close(resumed[name], value, rtol=1e-5, atol=1e-6)
