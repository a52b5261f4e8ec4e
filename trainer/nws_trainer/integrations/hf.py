"""NWS sampling in the Hugging Face ``Trainer``, through its public hooks only.

::

    nws = NWSSampler(embeddings, batch_size=args.per_device_train_batch_size, ratio=0.5)
    trainer = NWSTrainer(model=model, args=args, train_dataset=train_set,
                         data_collator=collate, nws=nws)
    trainer.train()                                   # or train(resume_from_checkpoint=...)

:class:`NWSTrainer` overrides documented extension points of ``transformers.Trainer``:

- ``get_train_dataloader``: the training DataLoader draws its batches from the sketch
  (:class:`~nws_trainer.integrations.torch.NWSBatchSampler`). Its length is the sampler's fixed
  ``steps_per_epoch``, so the number of optimizer steps the Trainer plans, and with it the
  learning-rate schedule, do not depend on how many candidates the sketch accepts.
- ``compute_loss(model, inputs, return_outputs, num_items_in_batch)``: the per-example loss
  (cross-entropy for classification logits, the mean over valid tokens for language-model
  logits), weighted by the importance weights (self-normalised, so a batch's loss is a per-batch
  mean: ``loss_is_scaled_for_ga = False`` lets the Trainer divide by the accumulation steps), and
  streamed to the sketch.
- ``train(resume_from_checkpoint=...)``: before the Trainer's own resume (model, optimizer,
  scheduler, RNG, ``trainer_state.json``), restores the sampler's position and the sketch from
  the checkpoint's ``nws_state.pt``.
- ``log``: adds ``nws_acceptance_rate`` to the training logs (``state.log_history`` and every
  reporting callback).

:class:`NWSCallback` (added by :class:`NWSTrainer`) saves the sampler's state, including the
sketch's exported state, as ``nws_state.pt`` in every checkpoint folder the Trainer writes.

Resume and the Trainer's batch skipping. On resume the Trainer fast-forwards the DataLoader past
the batches of the current epoch that were already trained (``accelerate.skip_first_batches``,
which wraps the batch sampler in a ``SkipBatchSampler`` and drops its first items unloaded),
restores the RNG state after fetching the first new batch, and counts the steps of the epoch
from there. The sampler, restored from ``nws_state.pt``, knows its position itself: the first
epoch the resumed run iterates starts with one empty *placeholder* per batch already trained,
which the Trainer's skip drops (no example is loaded, the sketch is not asked), and then
continues with the batches the uninterrupted run would have drawn. So the Trainer's bookkeeping
(the epoch fraction, which micro-batch closes an accumulation step, the RNG restore point) is
the one it uses for every dataset, and the selected examples are those of the uninterrupted
run. (``ignore_data_skip=True`` would buy nothing, the skip being free, and would leave the
Trainer counting the resumed epoch from its start: a mid-epoch resume with it is refused.)
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader
from transformers import Trainer, TrainerCallback, TrainerState
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, TrainOutput, get_last_checkpoint

from nws_trainer.integrations.torch import (
    IndexedDataset,
    NWSBatchSampler,
    NWSCollate,
    NWSSampler,
    per_example_loss,
)

STATE_FILE = "nws_state.pt"
ACCEPTANCE_KEY = "nws_acceptance_rate"


def state_file_name(nws: NWSSampler) -> str:
    """``nws_state.pt`` (one process) or ``nws_state.pt.rank{r}`` (``torch.distributed``)."""
    return STATE_FILE if nws.world_size == 1 else f"{STATE_FILE}.rank{nws.rank}"


class NWSCallback(TrainerCallback):
    """Saves the sampler's state with each checkpoint (``nws_state.pt``)."""

    def __init__(self, nws: NWSSampler) -> None:
        self.nws = nws

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        """Annealing needs the run's length: the Trainer's planned batches, unless given."""
        if self.nws.anneal > 0 and self.nws.total_steps is None:
            self.nws.total_steps = state.max_steps * args.gradient_accumulation_steps
        return control

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        nws_state = self.nws.state_dict()  # collective under torch.distributed
        if state.is_world_process_zero or self.nws.world_size > 1:
            os.makedirs(folder, exist_ok=True)
            target = os.path.join(folder, state_file_name(self.nws))
            torch.save(nws_state, target + ".tmp")
            os.replace(target + ".tmp", target)
        return control


class _ResumableBatchSampler(NWSBatchSampler):
    """:class:`NWSBatchSampler` whose first epoch after a resume starts with ``lead`` empty
    placeholders: the batches the Trainer skips (module docstring). They are never loaded."""

    def __init__(self, nws: NWSSampler, lead: int) -> None:
        super().__init__(nws)
        self.lead = lead

    def __iter__(self) -> Iterator[list[tuple[int, float]]]:
        todo = self.nws.begin_epoch()
        lead, self.lead = self.lead, 0
        for _ in range(lead):
            yield []
        for _ in range(todo):
            yield self.nws.next_batch()


class NWSTrainer(Trainer):
    """A ``transformers.Trainer`` that trains on the examples an NWS sketch selects.

    Takes every ``Trainer`` argument plus ``nws``, an
    :class:`~nws_trainer.integrations.torch.NWSSampler` with an embedding table over
    ``train_dataset`` (a map-style dataset of dicts). The items reach ``data_collator`` as they
    are (the NWS fields removed), and the NWS fields never reach the model.
    """

    #: compute_loss returns a per-batch (self-normalised) mean: the Trainer scales it for
    #: gradient accumulation.
    loss_is_scaled_for_ga = False

    def __init__(self, *args: Any, nws: NWSSampler, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.nws = nws
        if nws.batch_size != self.args.per_device_train_batch_size:
            raise ValueError(
                f"the sampler's batch_size ({nws.batch_size}) must equal "
                f"per_device_train_batch_size ({self.args.per_device_train_batch_size})"
            )
        self._nws_lead = 0  # placeholders the next training DataLoader starts with
        self.add_callback(NWSCallback(nws))

    def train(
        self,
        resume_from_checkpoint: str | bool | None = None,
        trial: Any = None,
        ignore_keys_for_eval: list[str] | None = None,
    ) -> TrainOutput:
        """``Trainer.train``; on resume, the sampler and the sketch come back first from the
        checkpoint's ``nws_state.pt`` (``True``: the last checkpoint in ``output_dir``)."""
        if resume_from_checkpoint is True:
            resume_from_checkpoint = get_last_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None:
                raise ValueError(
                    f"No valid checkpoint found in output directory ({self.args.output_dir})"
                )
        if isinstance(resume_from_checkpoint, (str, os.PathLike)):
            resume_from_checkpoint = os.fspath(resume_from_checkpoint)
            self._load_nws_state(resume_from_checkpoint)
        else:
            resume_from_checkpoint = None
        return super().train(
            resume_from_checkpoint=resume_from_checkpoint,
            trial=trial,
            ignore_keys_for_eval=ignore_keys_for_eval,
        )

    def _load_nws_state(self, checkpoint: str) -> None:
        path = os.path.join(checkpoint, state_file_name(self.nws))
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{path} not found: the checkpoint was not written by NWSTrainer, and without the "
                "sketch's state the resumed run would not select what the interrupted one would"
            )
        self.nws.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self._nws_lead = 0
        consumed = self.nws.position.consumed
        if self.args.ignore_data_skip and consumed:
            raise ValueError(
                "NWSTrainer cannot resume mid-epoch with ignore_data_skip=True: the sampler "
                f"continues after the {consumed} batches of its epoch already trained, "
                "but without its skip the Trainer would count the rest of the epoch from its first "
                "batch (wrong epoch fraction and, with gradient accumulation, wrong accumulation "
                "boundaries). The skip costs nothing here (skipped batches are neither loaded nor "
                "selected): leave ignore_data_skip off"
            )
        # The Trainer will skip (global_step % updates per epoch) * accumulation batches of the
        # epoch it resumes in (Trainer._init_training_state): the sampler's count must agree.
        ga = self.args.gradient_accumulation_steps
        updates_per_epoch = max(math.ceil(self.nws.steps_per_epoch / ga), 1)
        step = TrainerState.load_from_json(os.path.join(checkpoint, TRAINER_STATE_NAME)).global_step
        skipped = (step % updates_per_epoch) * ga
        if skipped != consumed:
            raise ValueError(
                f"the checkpoint's sampler has trained {consumed} batches of its epoch "
                f"but the Trainer would skip {skipped} (global step {step}, {ga} accumulation "
                f"steps, {self.nws.steps_per_epoch} batches per epoch): resume with the "
                "training arguments and steps_per_epoch of the interrupted run"
            )
        self._nws_lead = skipped

    def get_train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            raise ValueError("NWSTrainer: training requires a train_dataset")
        if not self.nws.has_table:
            raise ValueError("NWSTrainer needs an embedding table, not a callable")
        lead, self._nws_lead = self._nws_lead, 0
        return DataLoader(
            IndexedDataset(self.train_dataset),
            batch_sampler=_ResumableBatchSampler(self.nws, lead),
            collate_fn=NWSCollate(self.data_collator),
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
            # the workers' base seed comes from a generator of its own: starting (or resuming)
            # an epoch leaves the global torch RNG, and with it dropout, as it was
            generator=torch.Generator().manual_seed(self.nws.seed),
        )

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> Any:
        if not model.training:  # evaluation batches carry no NWS fields
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        info = self.nws.take(inputs)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        name = type(self.accelerator.unwrap_model(model)).__name__
        causal = name in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values()
        losses = per_example_loss(logits, labels, causal=causal)
        loss = self.nws.loss(losses, info)
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """``Trainer.log`` with the share of the candidates the sketch kept so far (training
        logs only). It must be added here: ``Trainer.log`` appends a copy of ``logs`` to
        ``state.log_history`` before the callbacks' ``on_log`` runs, so a callback that adds a
        key reaches neither the history nor the callbacks that ran before it."""
        s = self.nws.stats
        if "loss" in logs and s["candidates"]:
            logs[ACCEPTANCE_KEY] = s["accepted"] / s["candidates"]
        super().log(logs, start_time)
