"""The Hugging Face Trainer integration on the tiny random BERT."""

from __future__ import annotations

import contextlib
import functools
import io
import math
from pathlib import Path
from typing import Any

import pytest
import torch

pytestmark = pytest.mark.slow


def test_nws_trainer_takes_a_fixed_number_of_steps_with_a_correct_schedule(
    examples_dir: Path, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    import hf_trainer

    args = ["--model", str(tiny_bert_dir), "--train-size", "96", "--lr", "1e-3", "--epochs", "2"]
    with contextlib.redirect_stdout(io.StringIO()):
        trainer = hf_trainer.main([*args, "--output", str(tmp_path / "hf")])
    nws = trainer.nws
    steps = 2 * math.ceil(96 * 0.5 / 16)  # planned from the ratio, not from acceptance
    assert trainer.state.global_step == trainer.state.max_steps == steps
    lrs = [row["learning_rate"] for row in trainer.state.log_history if "learning_rate" in row]
    assert len(lrs) == steps
    # the linear schedule decays to zero over exactly the planned steps
    expected = [1e-3 * (1 - s / steps) for s in range(steps)]
    assert lrs == pytest.approx(expected, rel=1e-6)
    # selection happened (after the warm-up) and every trained example reached the sketch
    assert nws.stats["accepted"] < nws.stats["candidates"]
    assert nws.stats["batches"] == steps
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    assert all(math.isfinite(float(x)) for x in losses)
    # every training log row carries the acceptance rate so far (Trainer.log, not on_log)
    rates = [row.get("nws_acceptance_rate") for row in trainer.state.log_history if "loss" in row]
    assert len(rates) == steps and None not in rates
    assert rates[-1] == nws.stats["accepted"] / nws.stats["candidates"] < 1.0
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


# ----------------------------------------------------------------------------- resume


def _hf_run(
    tiny_bert_dir: Path,
    output: Path,
    steps: int,
    *,
    accumulation: int,
    steps_per_epoch: int,
    resume: Path | None = None,
    endpoint: str | None = None,
    ignore_data_skip: bool = False,
) -> tuple[Any, list[list[int]]]:
    """Fine-tune the tiny BERT with NWSTrainer for ``steps`` optimizer steps, saving every
    ``steps // 2``; a new model, sampler and sketch (on ``endpoint``, or on an embedded server
    of its own) every call. Returns the trainer and the example indices of every micro-batch
    trained in this call."""
    from transformers import TrainerCallback, TrainingArguments

    from example_setup import parse_args, setup
    from nws_trainer.integrations import NWSSampler
    from nws_trainer.integrations.hf import NWSTrainer

    model, train_set, collate, emb = setup(
        parse_args(
            [
                "--model",
                str(tiny_bert_dir),
                "--train-size",
                "96",
                "--max-length",
                "32",
                "--seed",
                "3",
            ]
        )
    )
    args = TrainingArguments(
        output_dir=str(output),
        per_device_train_batch_size=16,
        gradient_accumulation_steps=accumulation,
        max_steps=steps,
        learning_rate=1e-3,
        lr_scheduler_type="linear",
        seed=3,
        logging_steps=1,
        save_strategy="steps",
        save_steps=steps // 2,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        ignore_data_skip=ignore_data_skip,
    )
    nws = NWSSampler(
        emb, batch_size=16, ratio=0.5, seed=3, steps_per_epoch=steps_per_epoch, endpoint=endpoint
    )
    trained: list[list[int]] = []

    class Record(TrainerCallback):
        def on_substep_end(self, *args: Any, **kwargs: Any) -> None:
            trained.append(nws.current.indices.tolist())

        on_step_end = on_substep_end

    trainer = NWSTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        data_collator=collate,
        nws=nws,
        callbacks=[Record()],
    )
    try:
        trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
    finally:
        nws.close()
    return trainer, trained


@pytest.mark.parametrize(("accumulation", "per_epoch", "steps"), [(1, 4, 6), (2, 5, 4)])
def test_a_resumed_nws_trainer_continues_as_the_uninterrupted_one(
    examples_dir: Path,
    tiny_bert_dir: Path,
    tmp_path: Path,
    endpoint: str,
    accumulation: int,
    per_epoch: int,
    steps: int,
) -> None:
    # The checkpoint (step steps / 2) falls mid-epoch, and the resumed run crosses into the next
    # epoch. Accumulation 1: 4 batches per epoch, saved after batch 3. Accumulation 2: 5 batches
    # per epoch are 3 optimizer steps (2 + 2 + 1 batches), saved after step 2 (4 batches), so
    # the resumed epoch's last step has a single micro-batch. The sketch's warm-up is the first
    # 2 batches: selection after.
    half = steps // 2
    run = functools.partial(
        _hf_run, tiny_bert_dir, steps=steps, accumulation=accumulation, steps_per_epoch=per_epoch
    )
    straight, ids = run(tmp_path / "a", endpoint=endpoint)
    assert straight.state.global_step == steps
    checkpoint = tmp_path / "a" / f"checkpoint-{half}"
    assert (checkpoint / "nws_state.pt").is_file()

    # fresh model, sampler and sketch server: the sketch comes back from nws_state.pt
    resumed, resumed_ids = run(tmp_path / "b", resume=checkpoint)
    assert resumed.state.global_step == steps
    batches_before = len(ids) - len(resumed_ids)
    assert batches_before == torch.load(checkpoint / "nws_state.pt")["stats"]["batches"]
    assert resumed_ids == ids[batches_before:]  # the same examples, in the same order
    assert resumed.nws.stats == straight.nws.stats

    # the Trainer's bookkeeping after its (placeholder) skip: schedule, epoch fraction, loss
    def history(trainer: Any) -> list[dict[str, Any]]:
        return [row for row in trainer.state.log_history if "loss" in row and row["step"] > half]

    tail, resumed_tail = history(straight), history(resumed)
    assert (
        [r["step"] for r in resumed_tail]
        == [r["step"] for r in tail]
        == list(range(half + 1, steps + 1))
    )
    for got, want in zip(resumed_tail, tail, strict=True):
        assert got["epoch"] == pytest.approx(want["epoch"], abs=1e-12)
        assert got["learning_rate"] == pytest.approx(want["learning_rate"], rel=1e-12)
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-4)
        assert got["nws_acceptance_rate"] == want["nws_acceptance_rate"]
    # Same examples, RNG (dropout), optimizer and schedule: the same float32 operations in the
    # same order on the same machine, so the parameters agree to float32 rounding (in practice
    # bit for bit); the tolerance leaves room for a reduction order that varies between runs.
    final = straight.model.state_dict()
    for name, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, final[name], rtol=1e-5, atol=1e-6)
    if accumulation == 1:  # mid-epoch without the Trainer's skip: refused before training
        with pytest.raises(ValueError, match="ignore_data_skip"):
            run(tmp_path / "c", resume=checkpoint, endpoint=endpoint, ignore_data_skip=True)
