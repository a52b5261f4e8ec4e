"""The training loop behind ``nws-train``: one loop, eight strategies, two batching modes.

Where selection happens:

- ``full``, ``uniform``, ``nws``: in the loader (in worker processes with ``num_workers > 0``).
  ``nws`` workers send each candidate chunk's static embeddings to the sketch server and keep
  what it samples; rejected examples cost no forward pass at all.
- ``nws-live``, ``selective-backprop``: in the trainer, after a no-gradient forward pass of the
  current model over every candidate chunk (``nws-live`` scores its mean-pooled output with the
  sketch, ``selective-backprop`` uses the true loss); only the kept examples are trained, so these
  save the backward pass of the rejected ones but pay their forward.

Every step trains on a :class:`~nws_trainer.selection.TrainBatch` with the importance-weighted
loss of :mod:`nws_trainer.loss`, then hands (embedding, per-example loss) of the trained examples
to the sketch without waiting for it to be applied. What differs between strategies is asked of
a :class:`~nws_trainer.strategies.Strategy`; the budget (:mod:`nws_trainer.budget`), the probe
(:mod:`nws_trainer.probe`) and the ledger and summary (:mod:`nws_trainer.accounting`) live beside.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, cast

import numpy as np
import torch
from tqdm.auto import tqdm

from nws_core.sketch import SketchConfig
from nws_trainer import accounting, anneal
from nws_trainer.anchors import LossTable
from nws_trainer.backends import SketchBackend
from nws_trainer.budget import budget_steps, candidate_epochs, planned_steps
from nws_trainer.clock import Clock
from nws_trainer.config import ConfigError, TrainConfig
from nws_trainer.diagnostics import Window
from nws_trainer.evaluations import record_evaluation
from nws_trainer.loader import CandidateStream, make_loader
from nws_trainer.loss import per_example_loss, residual_norm, weighted_loss
from nws_trainer.models import load_classifier, resolve_device
from nws_trainer.plots import plot_curves
from nws_trainer.prepare import Prepared, StaticEmbeddings, prepare, static_embeddings
from nws_trainer.selection import TrainBatch, normalize_rows
from nws_trainer.sources import BackendFactory, default_backend_factory
from nws_trainer.strategies import select_in_trainer, strategy_for

Log = Callable[[str], None]


@dataclass
class RunResult:
    """What a finished run wrote and measured."""

    output: Path
    summary: dict[str, Any]
    metrics: list[dict[str, Any]] = field(default_factory=list)
    trained_rows: dict[int, list[int]] = field(default_factory=dict)
    """Epoch -> training rows in the order they were trained (for checks and studies)."""


class Trainer:
    """One run: build from a :class:`Prepared`, then :meth:`run`."""

    def __init__(
        self,
        prep: Prepared,
        backend_factory: BackendFactory | None = None,
        log: Log | None = None,
    ) -> None:
        self.prep = prep
        self.cfg = cfg = prep.config
        self.strategy = strategy_for(cfg)
        self.device = resolve_device(cfg.device)
        self._factory = backend_factory
        self._log = log
        torch.manual_seed(cfg.seed)
        model = load_classifier(prep.model_dir, len(prep.label_names))
        self.hidden_size = int(model.config.hidden_size)
        self.model = cast(torch.nn.Module, model)
        self.model.to(self.device)
        self.model.train()
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        self.total_steps = planned_steps(cfg, len(prep.train))
        self.budget = budget_steps(cfg, len(prep.train))
        self.epochs = candidate_epochs(cfg, len(prep.train))
        self.anneal = anneal.for_run(cfg.anneal, self.budget)
        self.train_labels = prep.train.labels
        self.test_labels = prep.test.labels
        self.clock = Clock()
        self.window = Window()
        self.step = 0
        self.epoch = 0
        self.forwarded = 0
        self.backpropagated = 0
        self.grad_tokens = 0  # padded tokens of the trained batches (forward + backward)
        self.nograd_examples = 0  # selection forwards of the trainer-side strategies
        self.nograd_tokens = 0
        self.candidates = 0
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, self._lr_factor if cfg.lr_schedule == "linear" else (lambda s: 1.0)
        )
        self.accepted = 0
        self.fallback_candidates = 0  # selected while the sketch server was unreachable
        self.totals = {
            "step": 0.0,
            "loader": 0.0,
            "select": 0.0,
            "select_forward": 0.0,  # the part of "select" that trainer-side forwards took
            "update": 0.0,
            "eval": 0.0,
        }
        self.rows: list[dict[str, Any]] = []
        self.trained_rows: dict[int, list[int]] = {}
        self.backend: SketchBackend | None = None
        self.endpoint: str | None = None
        self.embeddings: StaticEmbeddings | None = None
        self.table: LossTable | None = (
            LossTable(len(prep.train)) if self.strategy.uses_table else None
        )
        self.rule = cfg.sampling_policy()
        # the embedding pass's tokens (unpadded: the pass batches rows of similar length)
        self.embedding_tokens = int(prep.train_tokens.lengths().sum())
        self._observed = 0
        self._forgot = cfg.warmup_forget >= 1.0
        #: nws-live: the live embeddings of accepted rows, until their loss is streamed back
        self.live_rows: dict[int, np.ndarray] = {}
        self._centered = False
        self._bar: Any = None

    # ------------------------------------------------------------------------------ logging
    def log(self, message: str) -> None:
        if self._log is not None:
            self._log(message)
        elif self._bar is not None:
            self._bar.write(message)
        else:
            print(message, flush=True)

    # ------------------------------------------------------------------------------ set-up
    def _open_backend(self, dim: int) -> None:
        cfg = self.cfg
        sketch = SketchConfig(
            dim=dim,
            rows=cfg.sketch_rows,
            bits=cfg.sketch_bits,
            seed=cfg.seed,
            decay=cfg.sketch_decay,
        )
        warmup = cfg.warmup_steps * cfg.batch_size
        factory = self._factory or default_backend_factory(cfg)
        self.backend, self.endpoint = factory(sketch, warmup)

    def center_once(self, x: np.ndarray) -> np.ndarray:
        """Center the sketch on the first rows it sees (nws-live: once, while it is empty)."""
        if not self._centered:
            assert self.backend is not None
            self.backend.set_center(x.mean(axis=0))
            self._centered = True
        return x

    def _setup_sketch(self) -> None:
        """Open the sketch (first, so a bad endpoint fails fast), then the static embeddings."""
        cfg = self.cfg
        self._open_backend(self.hidden_size)
        self.log(f"nws-train: sketch on {self.endpoint or 'this process'}")
        if not self.strategy.needs_static_embeddings:
            return
        source = {"encoder": "frozen encoder", "tokens": "mean input token embedding"}
        self.log(
            f"nws-train: static embeddings of the training set ({source[cfg.embedding_source]}) ..."
        )
        self.embeddings = emb = static_embeddings(self.prep)
        how = (
            f"cache hit ({emb.compute_seconds:.1f} s when computed)"
            if emb.cache_hit
            else f"computed in {emb.seconds:.1f} s"
        )
        self.log(f"nws-train: embeddings {tuple(emb.table.array.shape)} {how}: {emb.path}")
        if emb.table.dim != self.hidden_size:
            raise ConfigError(
                f"embeddings are [n, {emb.table.dim}] but the model's hidden size is "
                f"{self.hidden_size}"
            )
        assert self.backend is not None
        self.backend.set_center(normalize_rows(np.asarray(emb.table.array)).mean(axis=0))
        self._centered = True

    # ------------------------------------------------------------------------------ run
    def run(self) -> RunResult:
        """Train, evaluate, and write metrics.jsonl, summary.json and curves.png."""
        cfg = self.cfg
        out = cfg.output
        out.mkdir(parents=True, exist_ok=True)
        self.log(accounting.describe(self))
        try:
            if self.strategy.uses_sketch:
                self._setup_sketch()
            stopped_by = self._train(out)
            sketch_stats = self.backend.stats() if self.backend is not None else None
        finally:
            if self.backend is not None:
                self.backend.close()
        summary = accounting.summary(self, stopped_by, sketch_stats)
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        plot_curves(
            {cfg.strategy: self.rows},
            out / "curves.png",
            title=f"nws-train {cfg.strategy} ({cfg.batching})",
        )
        final = summary["final"]
        self.log(
            f"nws-train: done: {self.step} steps, {summary['train_seconds']:.1f} s training, "
            f"test accuracy {final['test_accuracy']:.4f}, loss {final['test_loss']:.4f}; "
            f"wrote {out / 'metrics.jsonl'}, summary.json, curves.png"
        )
        return RunResult(out, summary, self.rows, self.trained_rows)

    def _train(self, out: Path) -> str:
        """The evaluation and training loop; returns what stopped it."""
        cfg = self.cfg
        stream = CandidateStream(
            self.prep.train_tokens,
            self.train_labels,
            self.strategy.selector(self),
            self.strategy.loader_batching(),
            cfg.batch_size,
            self.epochs,
            cfg.seed,
            self.anneal,
        )
        with (out / "metrics.jsonl").open("w") as metrics:
            self._bar = tqdm(
                total=self.total_steps,
                desc=cfg.strategy,
                unit="step",
                disable=not cfg.progress,
                dynamic_ncols=True,
                leave=False,
            )
            try:
                if cfg.eval_at_start:
                    record_evaluation(self, metrics)
                loader = make_loader(stream, cfg.num_workers)
                batches: Iterator[TrainBatch] = iter(loader)
                if self.strategy.selects_in_trainer:
                    batches = select_in_trainer(self, batches)
                self.clock.start()
                stopped_by = self._loop(batches, metrics)
                self.clock.stop()
                del batches, loader  # shuts loader workers down
                if self.backend is not None:
                    start = time.perf_counter()
                    self.backend.flush()
                    self.totals["update"] += time.perf_counter() - start
                if not self.rows or self.rows[-1]["step"] != self.step:
                    record_evaluation(self, metrics)
            finally:
                self._bar.close()
                self._bar = None
        return stopped_by

    def _loop(self, batches: Iterator[TrainBatch], metrics: TextIO) -> str:
        cfg = self.cfg
        while True:
            start = time.perf_counter()
            try:
                batch = next(batches)
            except StopIteration:
                return "epochs"
            waited = time.perf_counter() - start
            self.window.loader_seconds += waited
            self.totals["loader"] += waited
            self.epoch = batch.epoch
            self.train_step(batch)
            if self.anneal is not None:
                self.anneal.steps_done(self.step)
            self._bar.update(1)
            if self.step % cfg.eval_every == 0:
                record_evaluation(self, metrics)
            if cfg.max_steps is not None and self.step >= cfg.max_steps:
                return "max_steps"
            if self.budget is not None and self.step >= self.budget:
                return "budget_steps"
            if cfg.time_budget is not None and self.clock.seconds >= cfg.time_budget:
                return "time_budget"

    def _lr_factor(self, steps_done: int) -> float:
        """Linear schedule: 1 - progress, where progress is the share of the planned steps done
        (``full`` and ``shrink``: one step per candidate chunk, known in advance) or, in ``fill``
        mode, the share of the candidate stream consumed (the number of steps depends on how
        many candidates are kept: warm-up, the acceptance rate, infobatch's pruning), capped by
        ``max_steps``. Either way the rate reaches 0 exactly when the run's data ends."""
        cfg = self.cfg
        if self.strategy.steps_known or cfg.batching == "shrink" or self.budget is not None:
            progress = steps_done / self.total_steps
        else:
            progress = self.candidates / max(len(self.prep.train) * cfg.epochs, 1)
            if cfg.max_steps is not None:
                progress = max(progress, steps_done / cfg.max_steps)
        return max(0.0, 1.0 - progress)

    # ------------------------------------------------------------------------------ steps
    def train_step(self, batch: TrainBatch) -> float:
        """One optimizer step on a collated batch with its importance weights; the loss."""
        assert batch.inputs is not None
        start = time.perf_counter()
        inputs = {k: v.to(self.device) for k, v in batch.inputs.items()}
        labels = batch.labels.to(self.device)
        weights = torch.from_numpy(batch.weights).to(self.device)
        out = self.model(**inputs)
        losses = per_example_loss(out.logits.float(), labels)
        loss = weighted_loss(losses, weights, batch.normalizer)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
        self.optimizer.step()
        trained_losses = losses.detach().double().cpu().numpy()
        observed = trained_losses  # what the sketch learns (--feedback)
        if self.cfg.feedback == "grad-norm":
            observed = residual_norm(out.logits.detach().float(), labels).double().cpu().numpy()
        elapsed = time.perf_counter() - start
        self.window.step_seconds += elapsed
        self.totals["step"] += elapsed
        self.step += 1
        self.forwarded += len(batch)
        self.backpropagated += len(batch)
        self.grad_tokens += int(batch.inputs["input_ids"].numel())
        self.candidates += batch.stats.candidates
        self.accepted += batch.stats.accepted
        self.fallback_candidates += batch.stats.fallback_candidates
        self.scheduler.step()  # after the counters: the linear schedule reads them
        self.totals["select"] += batch.stats.select_seconds
        self._update_sketch(batch, observed)
        self.window.record_batch(
            batch.weights, batch.estimates, trained_losses, batch.stats, batch.warmup, observed
        )
        self.trained_rows.setdefault(batch.epoch, []).extend(int(i) for i in batch.indices)
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{loss.item():.3f}", epoch=batch.epoch, refresh=False)
        return float(loss.item())

    def _update_sketch(self, batch: TrainBatch, losses: np.ndarray) -> None:
        if self.table is not None:
            self.table.update(batch.indices, losses)
            return
        if self.backend is None:
            return
        x = self.strategy.update_rows(self, batch.indices)
        start = time.perf_counter()
        self.backend.update(x, losses)
        self._observed += len(losses)
        if not self._forgot and self._observed >= self.cfg.warmup_steps * self.cfg.batch_size:
            # Warm-up is over: shrink what the warm-up losses (of a model that has since
            # changed) weigh against the losses to come.
            self.backend.flush()
            self.backend.decay(self.cfg.warmup_forget)
            self._forgot = True
        elapsed = time.perf_counter() - start
        self.window.update_seconds += elapsed
        self.totals["update"] += elapsed


def run(
    cfg: TrainConfig,
    backend_factory: BackendFactory | None = None,
    log: Log | None = None,
) -> RunResult:
    """Validate, prepare and train; write metrics.jsonl, summary.json and curves.png."""
    prep = prepare(cfg)
    return Trainer(prep, backend_factory, log).run()
