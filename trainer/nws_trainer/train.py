"""The training loop behind ``nws-train``: one loop, five strategies, two batching modes.

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
to the sketch without waiting for it to be applied.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, cast

import numpy as np
import torch
from tqdm.auto import tqdm

from nws_client import DeadlineExceeded, Unavailable
from nws_core.keep_ratio import AutoRatio
from nws_core.sketch import SketchConfig
from nws_trainer import anneal
from nws_trainer.backends import InProcessBackend, SketchBackend
from nws_trainer.config import SKETCHED, TABLED, TRAINER_SIDE, ConfigError, TrainConfig
from nws_trainer.diagnostics import Window, coefficient_of_variation, spearman
from nws_trainer.evaluate import evaluate, forward_no_grad, forward_rows
from nws_trainer.loader import CandidateStream, collate, make_loader
from nws_trainer.loss import per_example_loss, residual_norm, weighted_loss
from nws_trainer.models import load_classifier
from nws_trainer.plots import plot_curves
from nws_trainer.prepare import Prepared, StaticEmbeddings, environment, prepare, static_embeddings
from nws_trainer.selection import (
    InfoBatchSelector,
    KeepAll,
    LossTable,
    LossTableSelector,
    RS2Selector,
    Selector,
    SketchSelector,
    TrainBatch,
    UniformSelector,
    chunk_seed,
    from_sample,
    make_batcher,
    normalize_rows,
    select_by_scores,
)

Log = Callable[[str], None]
BackendFactory = Callable[[SketchConfig, int], tuple[SketchBackend, str | None]]
"""(sketch config, warm-up observations) -> (backend, endpoint shown in logs)."""


@dataclass
class RunResult:
    """What a finished run wrote and measured."""

    output: Path
    summary: dict[str, Any]
    metrics: list[dict[str, Any]] = field(default_factory=list)
    trained_rows: dict[int, list[int]] = field(default_factory=dict)
    """Epoch -> training rows in the order they were trained (for checks and studies)."""


class Clock:
    """Training wall-clock that can be paused (evaluation is excluded)."""

    def __init__(self) -> None:
        self._elapsed = 0.0
        self._since: float | None = None

    def start(self) -> None:
        if self._since is None:
            self._since = time.perf_counter()

    def stop(self) -> None:
        if self._since is not None:
            self._elapsed += time.perf_counter() - self._since
            self._since = None

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        running = self._since is not None
        self.stop()
        try:
            yield
        finally:
            if running:
                self.start()

    @property
    def seconds(self) -> float:
        extra = 0.0 if self._since is None else time.perf_counter() - self._since
        return self._elapsed + extra


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {name!r}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available")
    return device


def budget_steps(cfg: TrainConfig, n_train: int) -> int | None:
    """The run's step budget (``budget_steps``, or ``budget_share`` of full's steps), if any."""
    if cfg.budget_steps is not None:
        return cfg.budget_steps
    if cfg.budget_share is not None:
        full = math.ceil(n_train / cfg.batch_size) * cfg.epochs
        return max(1, round(cfg.budget_share * full))
    return None


UNBOUNDED_PASSES = 10**6
"""Candidate passes under a step budget: the stream is lazy, the budget is what stops it."""


def candidate_epochs(cfg: TrainConfig, n_train: int) -> int:
    """Passes the candidate stream may make: ``epochs``, or unbounded under a step budget."""
    return cfg.epochs if budget_steps(cfg, n_train) is None else UNBOUNDED_PASSES


def planned_steps(cfg: TrainConfig, n_train: int) -> int:
    """Expected optimizer steps (for progress bars and the linear learning-rate schedule)."""
    budget = budget_steps(cfg, n_train)
    if budget is not None:
        return budget if cfg.max_steps is None else min(budget, cfg.max_steps)
    b = cfg.batch_size
    chunks = math.ceil(n_train / b)
    if cfg.strategy in ("full", "infobatch") or cfg.batching == "shrink" or cfg.sampling == "prune":
        total = chunks * cfg.epochs  # infobatch, prune: an upper bound (pruning is data-dependent)
    else:
        warm = min(cfg.warmup_steps * b, n_train) if cfg.strategy in SKETCHED else 0
        full = n_train * cfg.epochs * cfg.anneal  # the annealed last share keeps every candidate
        # auto: an upper bound (it keeps every candidate while sampling would not pay)
        kept = warm + max(n_train * cfg.epochs - full - warm, 0) * cfg.fixed_ratio() + full
        total = math.ceil(kept / b)
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    return max(total, 1)


def inprocess_factory(config: SketchConfig, warmup: int) -> tuple[SketchBackend, str | None]:
    """Sketch in this process (tests): no server, no worker processes."""
    return InProcessBackend(config, warmup), None


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
            LossTable(len(prep.train)) if cfg.strategy in TABLED else None
        )
        self.rule = cfg.sampling_policy()
        # the embedding pass's tokens (unpadded: the pass batches rows of similar length)
        self._embedding_tokens = int(prep.train_tokens.lengths().sum())
        self._observed = 0
        self._forgot = cfg.warmup_forget >= 1.0
        self._live: dict[int, np.ndarray] = {}
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
    def _open_backend(self, dim: int, center: np.ndarray | None) -> None:
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
        if center is not None:
            self.backend.set_center(center)
            self._centered = True

    def _selector(self) -> Selector:
        cfg = self.cfg
        if cfg.strategy == "uniform":
            return UniformSelector(cfg.fixed_ratio())
        if cfg.strategy == "rs2":
            return RS2Selector(len(self.prep.train), cfg.fixed_ratio(), cfg.seed)
        if cfg.strategy == "nws":
            assert self.backend is not None and self.embeddings is not None
            prune_rate = cfg.prune_rate if cfg.sampling == "prune" else None
            return SketchSelector(
                self.backend.spec(),
                self.embeddings.table,
                cfg.ratio,
                cfg.p_min,
                self.rule,
                prune_rate,
                AutoRatio(cfg.ratio_min, cfg.auto_threshold) if cfg.auto else None,
            )
        if cfg.strategy == "loss-table":
            assert self.table is not None
            warmup = cfg.warmup_steps * cfg.batch_size
            return LossTableSelector(self.table, cfg.fixed_ratio(), cfg.p_min, warmup, self.rule)
        if cfg.strategy == "infobatch":
            assert self.table is not None
            epochs = cfg.epochs
            if self.budget is not None:  # the passes the budget is expected to take
                epochs = max(
                    1, math.ceil(self.budget / math.ceil(len(self.prep.train) / cfg.batch_size))
                )
            return InfoBatchSelector(self.table, cfg.infobatch_prune, cfg.infobatch_anneal, epochs)
        return KeepAll()  # full, and the candidate chunks of the trainer-side strategies

    def _setup_sketch(self) -> None:
        """Open the sketch (first, so a bad endpoint fails fast), then the static embeddings."""
        cfg = self.cfg
        self._open_backend(self.hidden_size, None)
        self.log(f"nws-train: sketch on {self.endpoint or 'this process'}")
        if cfg.strategy != "nws":
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
        self._describe()
        try:
            if cfg.strategy in SKETCHED:
                self._setup_sketch()
            stopped_by = self._train(out)
            sketch_stats = self.backend.stats() if self.backend is not None else None
        finally:
            if self.backend is not None:
                self.backend.close()
        summary = self._summary(stopped_by, sketch_stats)
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
            self._selector(),
            "shrink" if cfg.strategy in TRAINER_SIDE else cfg.batching,
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
                    self._evaluate(metrics)
                loader = make_loader(stream, cfg.num_workers)
                batches: Iterator[TrainBatch] = iter(loader)
                if cfg.strategy in TRAINER_SIDE:
                    batches = self._select_in_trainer(batches)
                self.clock.start()
                stopped_by = self._loop(batches, metrics)
                self.clock.stop()
                del batches, loader  # shuts loader workers down
                if self.backend is not None:
                    start = time.perf_counter()
                    self.backend.flush()
                    self.totals["update"] += time.perf_counter() - start
                if not self.rows or self.rows[-1]["step"] != self.step:
                    self._evaluate(metrics)
            finally:
                self._bar.close()
                self._bar = None
        return stopped_by

    def _describe(self) -> None:
        cfg, prep = self.cfg, self.prep
        sampled = (
            f", ratio {cfg.ratio}"
            + (f" (at least {cfg.ratio_min})" if cfg.auto else "")
            + f", p_min {cfg.p_min}, {cfg.batching} batching"
            if cfg.strategy != "full"
            else ""
        )
        split = (
            " (test split: auto, 20 % of the rows up to 2,000; --test-size to choose)"
            if cfg.test_size is None and cfg.test_data is None
            else ""
        )
        budget = f", a budget of exactly {self.budget} steps" if self.budget is not None else ""
        self.log(
            f"nws-train: strategy {cfg.strategy}{sampled}; {len(prep.train)} train / "
            f"{len(prep.test)} test examples{split}, labels {prep.label_names}; model "
            f"{prep.model_dir} on {self.device}; batch {cfg.batch_size}, lr {cfg.lr}, "
            f"~{self.total_steps} steps{budget}"
        )

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
                self._evaluate(metrics)
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
        if cfg.strategy == "full" or cfg.batching == "shrink" or self.budget is not None:
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
        if self.cfg.strategy == "nws":
            assert self.embeddings is not None
            x = self.embeddings.table.rows(batch.indices)
        else:
            x = np.stack([self._live.pop(int(i)) for i in batch.indices])
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

    def _select_in_trainer(self, candidates: Iterator[TrainBatch]) -> Iterator[TrainBatch]:
        """nws-live / selective-backprop: forward each candidate chunk, select, re-batch."""
        cfg = self.cfg
        batcher = make_batcher(cfg.batching, cfg.batch_size)
        epoch = 0
        live = cfg.strategy == "nws-live"
        for counter, cand in enumerate(candidates):
            if cand.epoch != epoch:
                for batch in batcher.finish():
                    yield self._collate(batch, epoch)
                batcher = make_batcher(cfg.batching, cfg.batch_size)
                epoch = cand.epoch
            start = time.perf_counter()
            assert cand.inputs is not None
            f = forward_no_grad(self.model, cand.inputs, cand.labels, self.device, pooled=live)
            self.forwarded += len(cand)
            self.nograd_examples += len(cand)
            self.nograd_tokens += int(cand.inputs["input_ids"].numel())
            self.totals["select_forward"] += time.perf_counter() - start
            seed = chunk_seed(cfg.seed, cand.epoch, counter)
            if live:
                assert self.backend is not None and f.pooled is not None
                x = normalize_rows(f.pooled)
                if not self._centered:
                    self.backend.set_center(x.mean(axis=0))
                    self._centered = True
                result = self.backend.sample(x, cfg.fixed_ratio(), cfg.p_min, seed, self.rule)
                for i, row in zip(cand.indices[result.accepted], x[result.accepted], strict=True):
                    self._live[int(i)] = row
                chunk = from_sample(cand.indices, result, time.perf_counter() - start)
            else:
                chunk = select_by_scores(
                    cand.indices, f.losses, cfg.fixed_ratio(), cfg.p_min, seed, self.rule
                )
                chunk.seconds = time.perf_counter() - start
            for batch in batcher.add(chunk):
                yield self._collate(batch, epoch)
        for batch in batcher.finish():
            yield self._collate(batch, epoch)

    def _collate(self, batch: TrainBatch, epoch: int) -> TrainBatch:
        batch.epoch = epoch
        return collate(batch, self.prep.train_tokens, self.train_labels)

    # ------------------------------------------------------------------------------ evaluation
    def _evaluate(self, metrics: TextIO) -> None:
        cfg = self.cfg
        with self.clock.paused():
            start = time.perf_counter()
            acc, loss = evaluate(
                self.model,
                self.prep.test_tokens,
                self.test_labels,
                cfg.eval_batch_size,
                self.device,
            )
            probe = self._probe()
            eval_seconds = time.perf_counter() - start
        self.totals["eval"] += eval_seconds
        emb_seconds = self.embeddings.compute_seconds if self.embeddings is not None else 0.0
        row: dict[str, Any] = {
            "step": self.step,
            "epoch": self.epoch,
            "train_seconds": self.clock.seconds,
            "wall_seconds": self.clock.seconds + emb_seconds,
            "eval_seconds": eval_seconds,
            "examples_forwarded": self.forwarded,
            "examples_backpropagated": self.backpropagated,
            "candidates_seen": self.candidates,
            "ledger": self.ledger(),
            "test_accuracy": acc,
            "test_loss": loss,
            "lr": self.scheduler.get_last_lr()[0],
            **self.window.row(),
            **probe,
        }
        self.rows.append(row)
        metrics.write(json.dumps(row) + "\n")
        metrics.flush()
        parts = [
            f"step {self.step:5d}",
            f"{row['train_seconds']:7.1f} s",
            f"acc {acc:.4f}",
            f"loss {loss:.4f}",
        ]
        if row["acceptance_rate"] is not None and cfg.strategy != "full":
            parts.append(f"accept {row['acceptance_rate']:.2f}")
        if row["spearman_trained"] is not None:
            parts.append(f"rho(est,loss) {row['spearman_trained']:.2f}")
        if row.get("probe_spearman") is not None:
            parts.append(f"rho(probe) {row['probe_spearman']:.2f}")
        self.log("  " + " | ".join(parts))

    def _probe(self) -> dict[str, Any]:
        """Spearman between the sketch's estimates and the current model's true losses."""
        empty: dict[str, Any] = {
            "probe_spearman": None,
            "probe_estimate_cv": None,
            "probe_loss_cv": None,
            "probe_prior_hit_rate": None,
            "sketch_observations": None,
        }
        if self.table is not None and self.prep.probe.size:
            return self._probe_table()
        if self.backend is None or self.prep.probe.size == 0:
            return empty
        live = self.cfg.strategy == "nws-live"
        f = forward_rows(
            self.model,
            self.prep.train_tokens,
            self.train_labels,
            self.prep.probe,
            self.cfg.eval_batch_size,
            self.device,
            pooled=live,
        )
        if live:
            assert f.pooled is not None
            x = normalize_rows(f.pooled)
            if not self._centered:
                self.backend.set_center(x.mean(axis=0))
                self._centered = True
        else:
            assert self.embeddings is not None
            x = self.embeddings.table.rows(self.prep.probe)
        try:
            self.backend.flush()
            scores = self.backend.score(x)
            stats = self.backend.stats()
        except (Unavailable, DeadlineExceeded) as exc:
            if self.cfg.sketch_on_unavailable == "raise":
                raise
            self.log(f"nws-train: probe skipped, the sketch server is unreachable: {exc}")
            return empty
        truth = f.feedback(self.cfg.feedback)
        return _probe_row(scores.estimates, truth, scores.prior_used, stats.get("observations"))

    def _probe_table(self) -> dict[str, Any]:
        """The O(N) table's version of :meth:`_probe`: its latest losses against true ones."""
        assert self.table is not None
        f = forward_rows(
            self.model,
            self.prep.train_tokens,
            self.train_labels,
            self.prep.probe,
            self.cfg.eval_batch_size,
            self.device,
        )
        scores, unseen = self.table.scores(self.prep.probe)
        return _probe_row(scores, f.losses, unseen, self.table.observations)

    # ------------------------------------------------------------------------------ ledger
    def ledger(self) -> dict[str, Any]:
        """The compute this run has spent so far, counted (not timed) where it can be: what the
        benchmarks price at per-unit costs calibrated on the machine (compute-normalised time).
        Evaluation and the probe are diagnostics and not counted; the embedding pass is."""
        emb = self.embeddings
        t = self.totals
        return {
            "steps": self.step,
            "grad_examples": self.backpropagated,
            "grad_tokens": self.grad_tokens,
            "nograd_examples": self.nograd_examples,
            "nograd_tokens": self.nograd_tokens,
            # counted as tokens above, so not again here
            "select_seconds": max(0.0, t["select"] - t["select_forward"]),
            "update_seconds": t["update"],
            "embedding_source": None if emb is None else self.cfg.embedding_source,
            "embedding_examples": 0 if emb is None else len(self.prep.train),
            "embedding_tokens": 0 if emb is None else self._embedding_tokens,
            "embedding_seconds": 0.0 if emb is None else emb.compute_seconds,
        }

    # ------------------------------------------------------------------------------ summary
    def _summary(self, stopped_by: str, sketch_stats: dict[str, Any] | None) -> dict[str, Any]:
        cfg, prep = self.cfg, self.prep
        last = self.rows[-1]
        emb = self.embeddings
        train_seconds = self.clock.seconds
        t = self.totals
        return {
            "strategy": cfg.strategy,
            "batching": cfg.batching,
            "seed": cfg.seed,
            "stopped_by": stopped_by,
            "steps": self.step,
            "epochs_started": self.epoch + 1,
            "final": {"test_accuracy": last["test_accuracy"], "test_loss": last["test_loss"]},
            "best_test_accuracy": max(r["test_accuracy"] for r in self.rows),
            "train_seconds": train_seconds,
            "wall_seconds": last["wall_seconds"],
            "eval_seconds": t["eval"],
            "embedding": None
            if emb is None
            else {
                "seconds": emb.seconds,
                "compute_seconds": emb.compute_seconds,
                "cache_hit": emb.cache_hit,
                "fingerprint": emb.fingerprint,
                "path": str(emb.path),
            },
            "examples_forwarded": self.forwarded,
            "examples_backpropagated": self.backpropagated,
            "candidates_seen": self.candidates,
            "ledger": self.ledger(),
            "acceptance_rate": self.accepted / self.candidates if self.candidates else None,
            "fallback_candidates": self.fallback_candidates,
            "timing": {
                "step_seconds": t["step"],
                "loader_wait_seconds": t["loader"],
                "select_seconds": t["select"],
                "update_seconds": t["update"],
                "seconds_per_step": train_seconds / self.step if self.step else None,
                "sampling_overhead": (t["select"] + t["update"]) / train_seconds
                if train_seconds > 0 and cfg.strategy != "full"
                else None,
            },
            "sketch": sketch_stats,
            "sketch_endpoint": self.endpoint,
            "train_examples": len(prep.train),
            "test_examples": len(prep.test),
            "probe_examples": int(prep.probe.size),
            "label_names": prep.label_names,
            "model": str(prep.model_dir),
            "config": cfg.to_dict(),
            "environment": environment(),
        }


def _probe_row(
    estimates: np.ndarray, losses: np.ndarray, prior_used: np.ndarray, observations: Any
) -> dict[str, Any]:
    """The probe columns of a metrics row: estimates (or table scores) against true losses."""
    return {
        "probe_spearman": spearman(estimates, losses),
        "probe_estimate_cv": coefficient_of_variation(estimates),
        "probe_loss_cv": coefficient_of_variation(losses),
        "probe_prior_hit_rate": float(np.mean(prior_used)),
        "sketch_observations": observations,
    }


def default_backend_factory(cfg: TrainConfig) -> BackendFactory:
    """The sketch source ``nws-train`` uses for ``cfg``."""
    if cfg.sketch_backend == "inprocess":
        return inprocess_factory
    from nws_trainer.grpc_backend import grpc_factory

    return grpc_factory(cfg)


def run(
    cfg: TrainConfig,
    backend_factory: BackendFactory | None = None,
    log: Log | None = None,
) -> RunResult:
    """Validate, prepare and train; write metrics.jsonl, summary.json and curves.png."""
    prep = prepare(cfg)
    return Trainer(prep, backend_factory, log).run()


def new_sketch_name(cfg: TrainConfig) -> str:
    return cfg.sketch_name or f"nws-train-{cfg.strategy}-s{cfg.seed}-{uuid.uuid4().hex[:8]}"
